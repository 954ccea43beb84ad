"""
A bounded soak on loopback: the server in local mode takes a mix of grants,
uploads to the embedded OSS (each with its verified callback) and reads,
at about 80% of the capacity it shows first, for five minutes.  It prints
errors, lost or duplicated records, p99 latency per minute, and RSS and
open files per minute.

    .venv/bin/python bench/soak.py [--seconds 300]
"""

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
TWISTD = str(Path(sys.executable).parent / "twistd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def multipart(fields: dict[str, str], data: bytes) -> tuple[str, bytes]:
    boundary = "soak" + os.urandom(6).hex()
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="s.bin"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
    )
    return f"multipart/form-data; boundary={boundary}", b"".join(parts) + f"--{boundary}--\r\n".encode()


class Client:
    """
    One keep-alive connection doing upload rounds: a grant, the upload
    (with its callback), and a read of the object.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def call(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, bytes]:
        for attempt in (1, 2):
            try:
                self.connection.request(method, path, body=body, headers=headers or {})
                response = self.connection.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, OSError):
                self.connection.close()
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def round(self) -> tuple[bool, float, str]:
        started = time.perf_counter()
        data = os.urandom(2048)
        status, body = self.call("GET", f"/policy?name=s.bin&size={len(data)}")
        if status != 200:
            return False, time.perf_counter() - started, ""
        grant = json.loads(body)
        content_type, form = multipart(grant["fields"], data)
        status, body = self.call("POST", "/oss/", form, {"Content-Type": content_type})
        ok = status == 200 and json.loads(body).get("Status") == "OK"
        status, stored = self.call("GET", "/oss/" + grant["key"])
        ok = ok and status == 200 and stored == data
        return ok, time.perf_counter() - started, grant["key"]


def sample(pid: int) -> tuple[int, int]:
    rss = fds = 0
    children = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split()
    for p in [pid, *map(int, children)]:
        with open(f"/proc/{p}/status") as f:
            rss += next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
        fds += len(os.listdir(f"/proc/{p}/fd"))
    return rss, fds


def run(port: int, threads: int, seconds: float, rate: float | None) -> dict:
    """
    Upload rounds from C{threads} clients for C{seconds}, paced to C{rate}
    rounds a second if given.
    """
    results: list[tuple[float, bool, float, str]] = []
    lock = threading.Lock()
    stop = time.monotonic() + seconds
    interval = threads / rate if rate else 0.0

    def work() -> None:
        client = Client(port)
        next_at = time.monotonic()
        while time.monotonic() < stop:
            try:
                ok, elapsed, key = client.round()
            except Exception:
                ok, elapsed, key = False, 0.0, ""
            with lock:
                results.append((time.monotonic(), ok, elapsed, key))
            if interval:
                next_at += interval
                time.sleep(max(0.0, next_at - time.monotonic()))

    workers = [threading.Thread(target=work) for _ in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return {"results": results}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--threads", type=int, default=8)
    options = parser.parse_args()
    port = free_port()
    data = tempfile.mkdtemp(prefix="osscallback-soak-")
    log = open(Path(data) / "server.log", "wb")
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OSS_")}
    server = subprocess.Popen(
        [TWISTD, "-n", "--pidfile=", "osscallback", "--local", "--port",
         f"tcp:{port}:interface=127.0.0.1", "--data-dir", data, "--rate-limit", "0"],
        env={**environ, "PYTHONPATH": str(ROOT)}, stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        probe = run(port, options.threads, 15, None)["results"]
        capacity = sum(1 for r in probe if r[1]) / 15
        target = 0.8 * capacity
        print(f"capacity {capacity:.0f} upload rounds/s; soaking at {target:.0f}/s "
              f"for {options.seconds:.0f} s", flush=True)
        samples = [sample(server.pid)]
        outcome: dict = {}
        soak = threading.Thread(target=lambda: outcome.update(run(port, options.threads, options.seconds, target)))
        soak.start()
        while soak.is_alive():
            soak.join(60)
            samples.append(sample(server.pid))
        results = outcome["results"]
        start = results[0][0]
        print("minute  rounds  errors  p50 ms  p99 ms")
        minutes = int((results[-1][0] - start) // 60) + 1
        for minute in range(minutes):
            chunk = [r for r in results if minute * 60 <= r[0] - start < (minute + 1) * 60]
            latencies = sorted(r[2] * 1000 for r in chunk if r[1])
            if not latencies:
                continue
            p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
            print(f"{minute + 1:6}  {len(chunk):6}  {sum(1 for r in chunk if not r[1]):6}  "
                  f"{statistics.median(latencies):6.1f}  {p99:6.1f}")
        good = {r[3] for r in results if r[1]} | {r[3] for r in probe if r[1]}
        client = Client(port)
        recorded: list[str] = []
        cursor = ""
        while True:
            _, body = client.call("GET", f"/uploads?limit=500{cursor}")
            page = json.loads(body)
            recorded += [u["key"] for u in page["uploads"]]
            if not page["next"]:
                break
            cursor = f"&cursor={page['next']}"
        errors = sum(1 for r in results if not r[1])
        print(f"rounds {len(results)}, errors {errors}")
        print(f"records {len(recorded)}, distinct {len(set(recorded))}, "
              f"lost {len(good - set(recorded))}, duplicated {len(recorded) - len(set(recorded))}")
        print("RSS kB and open files, once a minute:", samples)
        rss = [s[0] for s in samples[1:]]
        print(f"RSS change after warm-up: {(rss[-1] / rss[0] - 1) * 100:+.1f}%")
    finally:
        server.terminate()
        server.wait(15)


if __name__ == "__main__":
    main()
