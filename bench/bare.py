"""
Bare Twisted resources, the framework's own ceiling for the benchmark:
GET answers a fixed JSON body, POST reads its body and answers JSON.

    python bare.py PORT
"""

import sys

from twisted.internet import reactor
from twisted.web.resource import Resource
from twisted.web.server import Site

BODY = b'{"url":"http://bucket.example","key":"uploads/x","fields":{},"expire":0}'


class Bare(Resource):
    isLeaf = True

    def render_GET(self, request):
        request.setHeader(b"content-type", b"application/json")
        return BODY

    def render_POST(self, request):
        request.content.read()
        request.setHeader(b"content-type", b"application/json")
        return b'{"Status":"OK"}'


if __name__ == "__main__":
    reactor.listenTCP(int(sys.argv[1]), Site(Bare()), interface="127.0.0.1", backlog=1024)
    reactor.run()
