"""
The benchmark's fallback load generator, for machines without wrk: N
HTTP/1.1 keep-alive connections over asyncio send requests back to back
for a time, and the figures come out as one JSON object with the keys
bench/run.py reads from wrk (rps, requests, p50, p90, p99 in ms, errors,
non2xx).

    python loadgen.py URL CONNECTIONS SECONDS [CALLBACKS FIRST LAST]

With CALLBACKS (the file bench/callbacks.lua reads: path, Authorization,
x-oss-pub-key-url and body per line, tab-separated) it POSTs lines FIRST to
LAST in turn, as the wrk script does; without, it GETs URL.

It is one Python process: it needs more CPU per request than wrk, and on
a machine with few cores it takes some from the server it measures.
Figures from it are comparable with each other, not with wrk's.
"""

import asyncio
import json
import sys
import time
from urllib.parse import urlsplit


def requests_from(url: str, callbacks: str | None, first: int, last: int) -> list[bytes]:
    """
    The requests to send in turn, as bytes.
    """
    target = urlsplit(url)
    host = target.netloc
    if callbacks is None:
        path = target.path + (f"?{target.query}" if target.query else "")
        return [f"GET {path or '/'} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()]
    requests = []
    with open(callbacks) as lines:
        for number, line in enumerate(lines, 1):
            if first <= number <= last:
                path, auth, key_url, body = line.rstrip("\n").split("\t")
                requests.append(
                    f"POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: {auth}\r\n"
                    f"x-oss-pub-key-url: {key_url}\r\n"
                    "Content-Type: application/x-www-form-urlencoded\r\n"
                    f"Content-Length: {len(body.encode())}\r\n\r\n{body}".encode()
                )
    return requests


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
    """
    Read one response; its status, and whether the connection stays open.
    """
    head = await reader.readuntil(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    version, status = status_line.split(" ", 2)[:2]
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip().lower()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding") == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    else:
        await reader.read()
        return int(status), False
    close = headers.get("connection") == "close" or (
        version == "HTTP/1.0" and headers.get("connection") != "keep-alive"
    )
    return int(status), not close


class Load:
    """
    The figures of one run, kept as the connections send.
    """

    def __init__(self, host: str, port: int, requests: list[bytes], deadline: float) -> None:
        self.host, self.port = host, port
        self.requests = requests
        self.deadline = deadline
        self.next = 0
        self.latencies: list[float] = []
        self.errors = 0
        self.non2xx = 0

    async def connection(self) -> None:
        """
        One client connection: request after request until the deadline,
        reconnecting when the server closes or fails it.
        """
        writer = None
        while time.monotonic() < self.deadline:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection(self.host, self.port)
                request = self.requests[self.next % len(self.requests)]
                self.next += 1
                started = time.perf_counter()
                writer.write(request)
                status, keep = await asyncio.wait_for(read_response(reader), 10)
                self.latencies.append(time.perf_counter() - started)
                if not 200 <= status < 400:
                    self.non2xx += 1
                if not keep:
                    writer.close()
                    writer = None
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
                self.errors += 1
                if writer is not None:
                    writer.close()
                    writer = None
        if writer is not None:
            writer.close()

    def figures(self, seconds: float) -> dict:
        done = sorted(self.latencies)

        def percentile(p: float) -> float:
            return done[min(len(done) - 1, int(len(done) * p))] * 1000 if done else 0.0

        return {
            "rps": len(done) / seconds,
            "requests": len(done),
            "p50": percentile(0.50), "p90": percentile(0.90), "p99": percentile(0.99),
            "errors": self.errors,
            "non2xx": self.non2xx,
        }


async def main(url: str, connections: int, seconds: float, callbacks: str | None,
               first: int, last: int) -> dict:
    target = urlsplit(url)
    started = time.monotonic()
    load = Load(target.hostname, target.port or 80, requests_from(url, callbacks, first, last),
                started + seconds)
    await asyncio.gather(*(load.connection() for _ in range(connections)))
    return load.figures(time.monotonic() - started)


if __name__ == "__main__":
    url, connections, seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    callbacks, first, last = None, 1, 0
    if len(sys.argv) > 4:
        callbacks, first, last = sys.argv[4], int(sys.argv[5]), int(sys.argv[6])
    print(json.dumps(asyncio.run(main(url, connections, seconds, callbacks, first, last))))
