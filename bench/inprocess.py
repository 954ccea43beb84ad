"""
The server's own cost per request, without the kernel or a load generator:
GET requests through the real site (its request class, resources, metrics
and access log, written to memory) over an in-memory transport, in a loop.
Steadier than wrk on a shared machine, for comparing changes to the
request path.

    .venv/bin/python bench/inprocess.py [TARGET ...]

The default targets are /healthz and a grant.  Prints the best of seven
rounds of 10,000 requests, in µs per request.
"""

import io
import sys
import tempfile
import time
from pathlib import Path

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from osscallback.config import load_settings  # noqa: E402
from osscallback.ledger import Ledger  # noqa: E402
from osscallback.tap import build_site  # noqa: E402

TARGETS = ["/healthz", "/policy?name=a.png&size=1000"]


def per_request(target: str, data: str, rounds: int = 7, count: int = 10_000) -> float:
    """
    The best round's time per GET of C{target}, in µs.

    @param data: the server's data folder.
    """
    clock = MemoryReactorClock()
    clock.advance(time.time())
    # The configuration bench/run.py gives the server; GETs never open the
    # ledger.
    configuration = load_settings(
        {"bucket": "bench-bucket", "region": "cn-hangzhou", "data_dir": data,
         "callback_url": "http://127.0.0.1:1/callback", "no_confirm": True, "rate_limit": 0},
        {"OSS_ACCESS_KEY_ID": "LTAIBENCH", "OSS_ACCESS_KEY_SECRET": "bench-secret"},
    )
    site, _ = build_site(configuration, clock, None, Ledger.open(f"sqlite:///{data}/unused", clock))
    site.access_stream = io.StringIO()
    channel = site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    transport = StringTransport()
    channel.makeConnection(transport)
    request = f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: bench\r\n\r\n".encode()

    def one() -> None:
        channel.dataReceived(request)
        site.access_stream.seek(0)
        site.access_stream.truncate()
        transport.clear()

    channel.dataReceived(request)
    status = transport.value()[9:12]
    if status != b"200":
        raise SystemExit(f"{target} answered {status.decode()}")
    for _ in range(count // 5):
        one()
    best = float("inf")
    for _ in range(rounds):
        started = time.perf_counter()
        for _ in range(count):
            one()
        best = min(best, (time.perf_counter() - started) / count * 1e6)
    return best


if __name__ == "__main__":
    for target in sys.argv[1:] or TARGETS:
        with tempfile.TemporaryDirectory(prefix="osscallback-inprocess-") as data:
            print(f"{target:40} {per_request(target, data):6.1f} µs/request", flush=True)
