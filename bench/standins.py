"""
Stand-ins for the benchmark: what Alibaba's sample app servers do, in the
Python standard library.

    python standins.py sample PORT KEY_SERVER_URL SECRET
    python standins.py tuned  PORT KEY_SERVER_URL SECRET

GET answers a V1 upload grant (HMAC-SHA1 over a base64 policy); POST
verifies an OSS callback (RSA/MD5 over path, query and body).  "sample"
behaves like the samples: HTTP/1.0, one thread per connection, the public
key fetched on every callback.  "tuned" is the best the standard library
does: HTTP/1.1 keep-alive, TCP_NODELAY, a real listen backlog, and the key
fetched once.
"""

import base64
import hashlib
import hmac
import json
import socket
import sys
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote_to_bytes

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding


def grant(secret: bytes) -> bytes:
    expiration = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + 300))
    policy = base64.b64encode(json.dumps({
        "expiration": expiration,
        "conditions": [["content-length-range", 0, 1048576000], ["starts-with", "$key", "user-dir/"]],
    }).encode())
    signature = base64.b64encode(hmac.new(secret, policy, hashlib.sha1).digest())
    return json.dumps({
        "accessid": "LTAIBENCH", "host": "http://bucket.example", "policy": policy.decode(),
        "signature": signature.decode(), "expire": int(time.time()) + 300,
        "callback": "", "dir": "user-dir/",
    }).encode()


def make_handler(mode: str, key_url: str, secret: bytes):
    cached = {}

    def public_key():
        if mode == "tuned" and "key" in cached:
            return cached["key"]
        with urllib.request.urlopen(key_url) as response:
            key = serialization.load_pem_public_key(response.read())
        cached["key"] = key
        return key

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1" if mode == "tuned" else "HTTP/1.0"

        def log_message(self, *args):  # the samples print to stderr; keep it quiet
            pass

        def answer(self, status: int, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self.answer(200, grant(secret))

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
            path, _, query = self.path.encode().partition(b"?")
            signed = unquote_to_bytes(path) + (b"?" + query if query else b"") + b"\n" + body
            try:
                public_key().verify(
                    base64.b64decode(self.headers["Authorization"]), signed,
                    padding.PKCS1v15(), hashes.MD5(),
                )
            except Exception:
                self.answer(400, b'{"Status":"verify not ok"}')
                return
            self.answer(200, b'{"Status":"OK"}')

    return Handler


class TunedServer(ThreadingHTTPServer):
    request_queue_size = 1024
    daemon_threads = True

    def server_bind(self):
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        super().server_bind()

    def get_request(self):
        connection, address = super().get_request()
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return connection, address


class SampleServer(ThreadingHTTPServer):
    daemon_threads = True


def main() -> None:
    mode, port, key_url, secret = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4].encode()
    server_class = TunedServer if mode == "tuned" else SampleServer
    server_class(("127.0.0.1", port), make_handler(mode, key_url, secret)).serve_forever()


if __name__ == "__main__":
    main()
