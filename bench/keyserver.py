"""
The callback public key server for the benchmark: serves the test fixture's
public key, counts the fetches at /count, and can be slow (?delay).

    python keyserver.py PORT DELAY_SECONDS
"""

import sys
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

KEY = (Path(__file__).resolve().parent.parent / "tests" / "fixtures" / "callback_pub_key.pem").read_bytes()


class Keys(Resource):
    isLeaf = True

    def __init__(self, delay: float) -> None:
        super().__init__()
        self.delay = delay
        self.fetches = 0

    def render_GET(self, request):
        if request.path == b"/count":
            return str(self.fetches).encode()
        self.fetches += 1
        if not self.delay:
            return KEY

        def answer():
            request.write(KEY)
            request.finish()

        deferLater(reactor, self.delay, answer)
        return NOT_DONE_YET


if __name__ == "__main__":
    reactor.listenTCP(int(sys.argv[1]), Site(Keys(float(sys.argv[2]))), interface="127.0.0.1")
    reactor.run()
