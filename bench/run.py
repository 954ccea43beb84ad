"""
The osscallback benchmark: grants and callbacks against the stand-ins and
bare Twisted, 1 and 2 workers, a cold-key burst, and memory over 100k
requests, all on loopback in one run.  Writes bench/RESULTS.md and
bench/throughput.png.

    .venv/bin/python bench/run.py [--seconds 5] [--quick]

Needs matplotlib, and wrk (Debian's package) for figures comparable with
the committed ones; without wrk, bench/loadgen.py generates the load.  See
bench/README.md.
"""

import argparse
import base64
import json
import os
import re
import secrets
import selectors
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from urllib.parse import urlencode

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

from osscallback.callback import sign_callback  # noqa: E402
from osscallback.grant import Grant, seal  # noqa: E402
from tests.fixtures import callback_private_key  # noqa: E402

PYTHON = sys.executable
TWISTD = str(Path(PYTHON).parent / "twistd")
CONCURRENCY = (1, 10, 50, 200)
BUCKET = "bench-bucket"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Process:
    """
    A server under test in a subprocess, waited for until it accepts.
    """

    def __init__(self, command: list[str], port: int, env: dict[str, str] | None = None,
                 log: Path | None = None) -> None:
        self.port = port
        self.log = open(log or os.devnull, "wb")
        self.process = subprocess.Popen(
            command, env={**os.environ, **(env or {})}, stdout=self.log,
            stderr=subprocess.STDOUT, cwd=tempfile.gettempdir(),
        )
        for _ in range(300):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"{command} did not start")

    def pids(self) -> list[int]:
        children = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True)
        return [self.process.pid, *(int(p) for p in children.stdout.split())]

    def rss_and_fds(self) -> tuple[int, int]:
        rss = fds = 0
        for pid in self.pids():
            with open(f"/proc/{pid}/status") as f:
                rss += next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
            fds += len(os.listdir(f"/proc/{pid}/fd"))
        return rss, fds

    def cpu_seconds(self) -> float:
        total = 0
        for pid in self.pids():
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime, stime
        return total / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


# wrk when it is installed, else bench/loadgen.py.
LOAD_GENERATOR = "wrk" if shutil.which("wrk") else "python"


def load(url: str, connections: int, seconds: float, script: list[str] | None = None) -> dict:
    """
    Send requests to C{url} over C{connections} connections for C{seconds}
    and read the figures: with wrk (one thread), or with bench/loadgen.py
    where wrk is absent.

    @param script: bench/callbacks.lua, the callbacks file, and the first
        and last line to send.
    """
    if LOAD_GENERATOR == "wrk":
        return wrk(url, connections, seconds, script)
    command = [PYTHON, str(HERE / "loadgen.py"), url, str(connections), str(seconds)]
    if script:
        command += script[1:]
    run = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    if run.returncode:
        raise RuntimeError(f"loadgen failed on {url}: {run.stderr}")
    return json.loads(run.stdout)


def wrk(url: str, connections: int, seconds: float, script: list[str] | None = None) -> dict:
    """
    Run wrk (one thread) and read its figures.
    """
    command = ["wrk", "-t1", f"-c{connections}", f"-d{round(seconds)}s", "--latency", "--timeout", "10s"]
    if script:
        command += ["-s", script[0], url, "--", *script[1:]]
    else:
        command.append(url)
    run = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 60)
    out = run.stdout
    if "Requests/sec" not in out:
        raise RuntimeError(f"wrk failed on {url}: {out} {run.stderr}")

    def latency(p: str) -> float:
        match = re.search(rf"^\s+{p}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        value, unit = float(match.group(1)), match.group(2)
        return value * {"us": 0.001, "ms": 1, "s": 1000}[unit]

    requests = re.search(r"(\d+) requests in", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "requests": int(requests.group(1)),
        "p50": latency("50"), "p90": latency("90"), "p99": latency("99"),
        "errors": sum(int(n) for n in errors.groups()) if errors else 0,
        "non2xx": int(bad.group(1)) if bad else 0,
    }


def callbacks_file(path: Path, count: int, secret: bytes, key_url: str) -> None:
    """
    Write C{count} distinct valid callbacks, one per fresh grant, in the
    format bench/callbacks.lua reads.
    """
    key = callback_private_key()
    key_header = base64.b64encode(key_url.encode()).decode()
    now = int(time.time())
    with open(path, "w") as f:
        for n in range(count):
            grant = Grant(f"{n:032x}", f"uploads/bench/{n}.bin", None, BUCKET, 1000, now, now + 86400)
            target = f"/callback/{seal(grant, secret)}"
            body = urlencode({"bucket": BUCKET, "object": grant.key, "size": 100,
                              "etag": "0" * 32, "mimeType": "application/octet-stream"})
            signature = sign_callback(key, target.encode(), body.encode()).decode()
            f.write(f"{target}\t{signature}\t{key_header}\t{body}\n")


class Bench:
    def __init__(self, seconds: float, quick: bool, rounds: int = 2) -> None:
        self.seconds = seconds
        self.quick = quick
        self.rounds = rounds
        self.scratch = Path(tempfile.mkdtemp(prefix="osscallback-bench-"))
        self.secret = secrets.token_hex(32).encode()
        (self.scratch / "token-secret").write_bytes(self.secret)
        (self.scratch / "token-secret").chmod(0o600)
        self.results: dict = {"throughput": {}, "rounds": rounds, "load_generator": LOAD_GENERATOR}

    def keyserver(self, delay: float = 0.0) -> Process:
        port = free_port()
        return Process([PYTHON, str(HERE / "keyserver.py"), str(port), str(delay)], port)

    def osscallback(self, key_port: int, *extra: str) -> Process:
        port = free_port()
        data = self.scratch / f"data-{port}"
        command = [
            TWISTD, "-n", "--pidfile=", "osscallback", "--port", f"tcp:{port}:interface=127.0.0.1",
            "--bucket", BUCKET, "--region", "cn-hangzhou",
            "--callback-url", f"http://127.0.0.1:{port}/callback",
            "--trust-key-url", f"http://127.0.0.1:{key_port}/",
            "--token-secret-file", str(self.scratch / "token-secret"),
            "--data-dir", str(data), "--no-confirm", "--rate-limit", "0", *extra,
        ]
        env = {"OSS_ACCESS_KEY_ID": "LTAIBENCH", "OSS_ACCESS_KEY_SECRET": "bench-secret",
               "PYTHONPATH": str(ROOT)}
        return Process(command, port, env, self.scratch / f"osscallback-{port}.log")

    def run(self, name: str, server: Process, url: str, connections: int,
            script: list[str] | None = None) -> None:
        """
        One wrk run against C{server}; the best of the rounds is kept.
        """
        before = server.cpu_seconds()
        row = load(url, connections, self.seconds, script)
        row["cpu_us"] = (server.cpu_seconds() - before) / max(1, row["requests"]) * 1e6
        print(f"  {name:30} c={connections:<4} {row['rps']:9.0f}/s p50 {row['p50']:.2f} ms "
              f"p99 {row['p99']:.2f} ms cpu {row['cpu_us']:.0f} µs/request "
              f"errors {row['errors']} non-2xx {row['non2xx']}", flush=True)
        rows = self.results["throughput"].setdefault(name, {})
        if connections not in rows or row["rps"] > rows[connections]["rps"]:
            rows[connections] = row

    def throughput(self) -> None:
        """
        Every server is started first and they take turns, level by level
        and round by round, so that a slower spell of a shared machine
        weighs on all of them alike.
        """
        keys = self.keyserver()
        key_url = f"http://127.0.0.1:{keys.port}/callback_pub_key.pem"
        lines = self.scratch / "callbacks.txt"
        per_run = int(self.seconds * 10000)  # more than a run can send: no replays
        # osscallback records each callback once: every run of it gets its own.
        callbacks_file(lines, per_run * len(CONCURRENCY) * self.rounds, self.secret, key_url)
        servers = []
        try:
            for mode in ("sample", "tuned"):
                port = free_port()
                process = Process([PYTHON, str(HERE / "standins.py"), mode, str(port), key_url, "s"], port)
                servers.append((f"grant {mode} stand-in", f"callback {mode} stand-in", process, "/policy"))
            port = free_port()
            process = Process([PYTHON, str(HERE / "bare.py"), str(port)], port)
            servers.append(("grant bare Twisted GET", "callback bare Twisted POST", process, "/policy"))
            process = self.osscallback(keys.port)
            servers.append(("grant osscallback", "callback osscallback", process,
                            "/policy?name=a.png&size=1000"))
            fresh = 1
            for connections in CONCURRENCY:
                for _ in range(self.rounds):
                    for grants, callbacks, server, path in servers:
                        base = f"http://127.0.0.1:{server.port}"
                        self.run(grants, server, base + path, connections)
                        first, last = 1, per_run
                        if callbacks == "callback osscallback":
                            first, last, fresh = fresh, fresh + per_run - 1, fresh + per_run
                        script = [str(HERE / "callbacks.lua"), str(lines), str(first), str(last)]
                        self.run(callbacks, server, base + "/", connections, script)
        finally:
            for _, _, server, _ in servers:
                server.stop()
            keys.stop()

    def workers(self) -> None:
        """
        Grants at 50 connections from one worker and from two, in turns.
        """
        keys = self.keyserver()
        servers = [(n, self.osscallback(keys.port, "--workers", str(n))) for n in (1, 2)]
        try:
            time.sleep(2)  # the second worker starts after the first listens
            for _ in range(self.rounds):
                for n, server in servers:
                    self.run(f"grant osscallback {n} worker(s)", server,
                             f"http://127.0.0.1:{server.port}/policy?name=a.png&size=1000", 50)
        finally:
            for _, server in servers:
                server.stop()
            keys.stop()

    def cold_burst(self) -> None:
        """
        50 concurrent callbacks with an empty key cache and a key server
        that takes 300 ms: how many fetches, and when the last answer comes.
        The connections are open and the requests written out before the
        clock starts; the clock stops when the last answer is read.
        """
        delay = 0.3
        keys = self.keyserver(delay)
        key_url = f"http://127.0.0.1:{keys.port}/callback_pub_key.pem"
        lines = self.scratch / "burst.txt"
        callbacks_file(lines, 50, self.secret, key_url)
        server = self.osscallback(keys.port)
        requests = []
        for line in open(lines):
            path, auth, key_header, body = line.rstrip("\n").split("\t")
            requests.append(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n"
                f"Authorization: {auth}\r\nx-oss-pub-key-url: {key_header}\r\n"
                "Content-Type: application/x-www-form-urlencoded\r\n"
                f"Content-Length: {len(body)}\r\n\r\n{body}".encode()
            )
        sockets = [socket.create_connection(("127.0.0.1", server.port)) for _ in requests]
        answers: dict[socket.socket, bytes] = {s: b"" for s in sockets}
        with selectors.DefaultSelector() as selector:
            started = time.perf_counter()
            for s, request in zip(sockets, requests):
                s.sendall(request)
                selector.register(s, selectors.EVENT_READ)
            open_count = len(sockets)
            while open_count:
                for key, _ in selector.select(timeout=10):
                    data = key.fileobj.recv(65536)
                    answers[key.fileobj] += data
                    if not data:
                        selector.unregister(key.fileobj)
                        open_count -= 1
            elapsed = time.perf_counter() - started
        for s in sockets:
            s.close()
        codes = [a.split(b" ", 2)[1] for a in answers.values() if a]
        fetches = int(urllib.request.urlopen(f"http://127.0.0.1:{keys.port}/count").read())
        self.results["cold"] = {"callbacks": len(requests), "ok": codes.count(b"200"),
                                "fetches": fetches, "fetch_seconds": delay, "last_answer": elapsed}
        print("cold burst", self.results["cold"], flush=True)
        server.stop()
        keys.stop()

    def memory(self) -> None:
        """
        RSS and open files of the server before, during and after 100k
        grants and 100k callbacks.
        """
        total = 20000 if self.quick else 100000
        keys = self.keyserver()
        key_url = f"http://127.0.0.1:{keys.port}/callback_pub_key.pem"
        lines = self.scratch / "memory.txt"
        warm = 500
        callbacks_file(lines, total + warm, self.secret, key_url)
        server = self.osscallback(keys.port, "--no-access-log")
        samples = []
        grant_url = f"http://127.0.0.1:{server.port}/policy?name=a.png&size=1000"
        callback_url = f"http://127.0.0.1:{server.port}/"
        # Both paths first, at the load to come, callbacks and their replays
        # (a second of 500 callbacks in turn): what they load and open once
        # (the ledger's connection and thread, the key cache, the HTTP
        # client) is in the first sample, and growth after it is what the
        # requests leave behind.
        load(grant_url, 50, 2)
        load(callback_url, 50, 1, [str(HERE / "callbacks.lua"), str(lines), str(total + 1), str(total + warm)])
        samples.append(("warm", *server.rss_and_fds()))
        for label, url, script in (("grants", grant_url, None),
                                   ("callbacks", callback_url, [str(HERE / "callbacks.lua"), str(lines)])):
            done = 0
            while done < total:
                if script:
                    script = [*script[:2], str(done + 1), str(total)]
                figures = load(url, 50, 3, script)
                done += figures["requests"]
                time.sleep(0.5)  # closed connections are gone
                samples.append((f"{label} ~{min(done, total) // 1000}k", *server.rss_and_fds()))
        self.results["memory"] = samples
        print("memory", samples, flush=True)
        server.stop()
        keys.stop()

    def write(self) -> None:
        (HERE / "results.json").write_text(json.dumps(self.results, indent=1))
        shutil.rmtree(self.scratch, ignore_errors=True)


def main() -> None:
    global LOAD_GENERATOR
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--quick", action="store_true", help="fewer requests, for a smoke run")
    parser.add_argument("--rounds", type=int, default=2, help="turns each server takes per level")
    parser.add_argument("--load-generator", choices=("wrk", "python"), default=LOAD_GENERATOR,
                        help="wrk where installed, else bench/loadgen.py")
    options = parser.parse_args()
    LOAD_GENERATOR = options.load_generator
    if LOAD_GENERATOR != "wrk":
        print("load from bench/loadgen.py; its figures are not comparable with wrk's"
              + ("" if shutil.which("wrk") else " (apt-get install wrk)"), flush=True)
    bench = Bench(options.seconds, options.quick, options.rounds)
    bench.throughput()
    bench.workers()
    bench.cold_burst()
    bench.memory()
    bench.write()
    subprocess.run([PYTHON, str(HERE / "report.py")], check=True)


if __name__ == "__main__":
    main()
