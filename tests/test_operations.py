"""
Operations: systemd units and socket activation, health, readiness and
metrics, JSON logs, graceful shutdown, several workers, access control and
HTTPS.  Most run the server as users run it, in a subprocess.
"""

import json
import os
import shutil
import signal
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from datetime import datetime, timedelta, timezone
from io import StringIO
from typing import Any

from twisted.internet.task import Clock
from twisted.logger import LogLevel
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest, SynchronousTestCase

from osscallback.access import RateLimiter
from osscallback.logs import JSONLines
from tests.helpers import free_port

ROOT = FilePath(__file__).parent().parent()
TWISTD = os.path.join(os.path.dirname(sys.executable), "twistd")



def fetch(url: str, headers: dict[str, str] | None = None, data: bytes | None = None,
          method: str | None = None, context: Any = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url, data=data, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()


class ServerCase(SynchronousTestCase):
    """
    Starts C{twistd -n osscallback} in a subprocess.
    """

    def serve(self, *options: str, port: int | None = None, wait: bool = True,
              command: list[str] | None = None, scheme: str = "http", context: Any = None) -> str:
        port = port or free_port()
        self.log_path = self.mktemp() + ".log"
        log = open(self.log_path, "wb")
        self.addCleanup(log.close)
        environ = {k: v for k, v in os.environ.items() if not k.startswith("OSS_")}
        environ["PYTHONPATH"] = ROOT.path
        argv = [TWISTD, "-n", "--pidfile=", "osscallback", "--local",
                "--data-dir", self.mktemp(), *options]
        if "--port" not in options:
            argv += ["--port", f"tcp:{port}:interface=127.0.0.1"]
        self.server = subprocess.Popen((command or []) + argv, env=environ, stdout=log,
                                       stderr=subprocess.STDOUT)

        def stop() -> None:
            if self.server.poll() is None:
                self.server.terminate()
                self.server.wait(15)

        self.addCleanup(stop)
        origin = f"{scheme}://127.0.0.1:{port}"
        if wait:
            for _ in range(150):
                try:
                    fetch(origin + "/healthz", context=context)
                    return origin
                except OSError:
                    time.sleep(0.1)
            raise AssertionError("the server did not start: " + open(self.log_path).read()[-2000:])
        return origin

    def data_dir_of(self) -> str:
        argv = self.server.args
        return argv[argv.index("--data-dir") + 1]

    def output(self) -> str:
        with open(self.log_path, encoding="utf-8", errors="replace") as f:
            return f.read()


class SystemdTests(ServerCase):
    """
    The systemd units.
    """

    def test_unitsVerify(self) -> None:
        """
        systemd-analyze verify accepts the units without a warning (with
        ExecStart pointing at this environment's twistd).
        """
        analyze = shutil.which("systemd-analyze")
        if analyze is None:
            raise SkipTest("needs systemd-analyze (Debian's systemd package)")
        units = ROOT.child("contrib").child("systemd")
        folder = FilePath(self.mktemp())
        folder.makedirs()
        service = units.child("osscallback.service").getContent().replace(
            b"/opt/osscallback/bin/twistd", TWISTD.encode()
        )
        folder.child("osscallback.service").setContent(service)
        units.child("osscallback.socket").copyTo(folder.child("osscallback.socket"))
        for unit in folder.children():
            unit.chmod(0o644)
        result = subprocess.run(
            [analyze, "verify", "--man=no", "osscallback.socket", "osscallback.service"],
            cwd=folder.path, capture_output=True, text=True,
        )
        self.assertEqual((result.returncode, result.stdout + result.stderr), (0, ""))
        self.assertIn(b"--port systemd:domain=INET:index=0", service)

    def test_socketActivation(self) -> None:
        """
        Started by systemd's socket activation with the unit's --port, the
        server answers on the socket it was handed.
        """
        activate = shutil.which("systemd-socket-activate")
        if activate is None:
            raise SkipTest("needs systemd-socket-activate (Debian's systemd package)")
        port = free_port()
        origin = self.serve(
            "--port", "systemd:domain=INET:index=0", port=port,
            command=[activate, "--fdname=osscallback", "-l", f"127.0.0.1:{port}"],
        )
        code, _, body = fetch(origin + "/healthz")
        self.assertEqual((code, json.loads(body)), (200, {"status": "ok"}))


class ListenTests(ServerCase):
    """
    A port that cannot be had.
    """

    def test_portInUse(self) -> None:
        """
        A port in use ends the program at once with one line saying so, and
        a non-zero status, for one worker or several.
        """
        origin = self.serve()
        port = origin.rsplit(":", 1)[1]
        for extra in ([], ["--workers", "2"]):
            result = subprocess.run(
                [TWISTD, "-n", "--pidfile=", "osscallback", "--local", "--data-dir", self.mktemp(),
                 "--port", f"tcp:{port}:interface=127.0.0.1", *extra],
                capture_output=True, text=True, timeout=30,
                env={**os.environ, "PYTHONPATH": ROOT.path},
            )
            self.assertNotEqual(result.returncode, 0)
            output = result.stdout + result.stderr  # twistd logs standard error
            self.assertIn(f"cannot listen on 127.0.0.1:{port}: Address already in use.", output)
            self.assertNotIn("Traceback", result.stdout + result.stderr)


class HealthTests(ServerCase):
    """
    /healthz, /readyz and /metrics.
    """

    def test_readyAndMetrics(self) -> None:
        """
        The server is ready; after a grant and a refused grant, the metrics
        count both, and time the requests per endpoint.
        """
        origin = self.serve()
        self.assertEqual(fetch(origin + "/readyz")[0], 200)
        fetch(origin + "/policy?name=a.txt&size=1")
        fetch(origin + "/policy?size=-1")
        code, headers, body = fetch(origin + "/metrics")
        self.assertEqual(code, 200)
        self.assertTrue(headers["Content-Type"].startswith("text/plain; version=0.0.4"))
        text = body.decode()
        self.assertIn('osscallback_grants_total{outcome="issued"} 1.0', text)
        self.assertIn('osscallback_grants_total{outcome="bad_size"} 1.0', text)
        self.assertIn('osscallback_request_seconds_count{endpoint="policy"} 2.0', text)
        for name in ("osscallback_callbacks", "osscallback_key_fetches", "osscallback_key_cache",
                     "osscallback_ledger_write_seconds", "osscallback_webhook_outbox_depth"):
            self.assertIn(name, text)

    def test_notReadyWithoutLedger(self) -> None:
        """
        When the ledger cannot be opened the server still serves /healthz
        but /readyz answers 503.
        """
        origin = self.serve("--database", "sqlite:////nonexistent/folder/x.sqlite3")
        self.assertEqual(fetch(origin + "/healthz")[0], 200)
        code, _, body = fetch(origin + "/readyz")
        self.assertEqual((code, json.loads(body)["error"]), (503, "not_ready"))


class LogTests(ServerCase):
    """
    Structured logs.
    """

    def test_jsonLines(self) -> None:
        """
        Each event becomes one JSON line with time, level, namespace,
        message and its fields.
        """
        out = StringIO()
        JSONLines(out)({
            "log_time": 0.0, "log_level": LogLevel.warn, "log_namespace": "osscallback.x",
            "log_format": "stored {key}", "key": "a/b.png", "size": 3,
        })
        (line,) = out.getvalue().splitlines()
        self.assertEqual(json.loads(line), {
            "time": "1970-01-01T00:00:00.000+00:00", "level": "warn",
            "namespace": "osscallback.x", "message": "stored a/b.png", "key": "a/b.png", "size": 3,
        })

    def test_jsonAccessLog(self) -> None:
        """
        With --log-format json the access log's lines are JSON too, and all
        of them are written by the time the server has stopped.
        """
        origin = self.serve("--log-format", "json")
        for _ in range(3):
            fetch(origin + "/policy?name=a.txt")
        self.server.terminate()
        self.server.wait(15)
        records = [json.loads(line) for line in self.output().splitlines()]
        access = [r for r in records if r["namespace"] == "osscallback.access"]
        self.assertEqual(sum("GET /policy?name=a.txt" in r["message"] for r in access), 3)

    def test_jsonServerAndNoAccessLog(self) -> None:
        """
        With --log-format json every line the server writes is JSON, and
        with --no-access-log no request is logged.
        """
        origin = self.serve("--log-format", "json", "--no-access-log")
        fetch(origin + "/policy?name=a.txt")
        self.server.terminate()
        self.server.wait(15)
        lines = self.output().splitlines()
        self.assertTrue(lines)
        records = [json.loads(line) for line in lines]
        self.assertTrue(any("LOCAL MODE" in r["message"] for r in records))
        self.assertFalse(any("GET /policy" in r["message"] for r in records))
        secret = open(os.path.join(self.data_dir_of(), "token-secret")).read().strip()
        self.assertNotIn(secret, self.output())


class ShutdownTests(ServerCase):
    """
    SIGTERM.
    """

    def test_inFlightAnswerFinishes(self) -> None:
        """
        A callback being answered when SIGTERM arrives still gets its
        answer, and the server exits 0; its token appears in no log line.
        """
        import threading

        from osscallback.emulator.bucket import callback_key
        from tests.helpers import callback_target, oss_callback

        sys.path.insert(0, ROOT.path)
        import dev

        origin = self.serve("--hook", "tests.slow_hook.hook",
                            "--callback-url", "http://127.0.0.1:9/callback")
        grant = json.loads(fetch(origin + "/policy?name=a.txt&size=5")[2])
        self.assertEqual(dev.upload(grant, b"hello")[0], 203)  # stored, not recorded
        _, target = callback_target(grant)
        key = callback_key(os.path.join(self.data_dir_of(), "oss", "callback_key.pem"))
        body, headers = oss_callback(
            target,
            {"bucket": "local-bucket", "object": grant["key"], "size": 5,
             "etag": "5D41402ABC4B2A76B9719D911017C592", "mimeType": ""},
            key_url=origin + "/oss/callback_pub_key.pem",
            private_key=key,
        )
        result: dict[str, Any] = {}

        def call_back() -> None:
            result["answer"] = fetch(
                origin + target.decode(), {k.decode(): v[0].decode() for k, v in headers.items()}, body
            )

        caller = threading.Thread(target=call_back)
        caller.start()
        time.sleep(0.5)  # the hook holds the answer for a second
        self.server.send_signal(signal.SIGTERM)
        caller.join(15)
        status, _, answer = result["answer"]
        self.assertEqual((status, json.loads(answer)), (200, {"Status": "OK", "slow": True}))
        self.assertEqual(self.server.wait(15), 0)
        token = target.decode().rsplit("/", 1)[1]
        self.assertNotIn(token, self.output())  # neither OSS's failed try nor ours logged it


class WorkerTests(ServerCase):
    """
    --workers.
    """

    def test_twoWorkersShareThePort(self) -> None:
        """
        With --workers 2 two processes answer on one port, and an upload
        granted by one is verified and recorded whichever takes it.
        """
        sys.path.insert(0, ROOT.path)
        import dev

        origin = self.serve("--workers", "2", "--no-access-log")
        started: set[str] = set()  # each process's start time tells them apart
        for _ in range(100):  # until the second worker answers too
            for line in fetch(origin + "/metrics")[2].decode().splitlines():
                if line.startswith("process_start_time_seconds"):
                    started.add(line.split()[-1])
            if len(started) == 2:
                break
            time.sleep(0.1)
        self.assertEqual(len(started), 2, started)
        for _ in range(6):
            grant = json.loads(fetch(origin + "/policy?name=a.txt&size=5")[2])
            status, answer = dev.upload(grant, b"hello")
            self.assertEqual(status, 200, answer)
        self.assertEqual(len(json.loads(fetch(origin + "/uploads")[2])["uploads"]), 6)


class AccessTests(ServerCase):
    """
    Who may ask for grants.
    """

    def test_bearerToken(self) -> None:
        """
        With an auth token, grants and lists need it (401 otherwise, with
        WWW-Authenticate); health does not.
        """
        token = self.mktemp()
        with open(token, "w") as f:
            f.write("s3cret-token-for-tests\n")
        origin = self.serve("--auth-token-file", token)
        code, headers, body = fetch(origin + "/policy")
        self.assertEqual((code, json.loads(body)["error"]), (401, "unauthorized"))
        self.assertEqual(headers["WWW-Authenticate"], 'Bearer realm="osscallback"')
        self.assertEqual(fetch(origin + "/policy", {"Authorization": "Bearer wrong"})[0], 401)
        self.assertEqual(fetch(origin + "/policy", {"Authorization": "Bearer s3cret-token-for-tests"})[0], 200)
        self.assertEqual(fetch(origin + "/uploads")[0], 401)
        self.assertEqual(fetch(origin + "/healthz")[0], 200)

    def test_userHeader(self) -> None:
        """
        With --user-header each user's grants get their own folder and
        their records name them; a request without the header is refused.
        """
        sys.path.insert(0, ROOT.path)
        import dev

        origin = self.serve("--user-header", "X-Remote-User")
        self.assertEqual(fetch(origin + "/policy")[0], 401)
        self.assertEqual(fetch(origin + "/policy", {"X-Remote-User": "../evil"})[0], 400)
        grant = json.loads(fetch(origin + "/policy?name=a.txt&size=5", {"X-Remote-User": "alice"})[2])
        self.assertTrue(grant["key"].startswith("uploads/alice/"))
        status, answer = dev.upload(grant, b"hello")
        self.assertEqual((status, json.loads(answer)["upload"]["user"]), (200, "alice"))

    def test_rateLimit(self) -> None:
        """
        Past its rate a client gets 429 with Retry-After.
        """
        origin = self.serve("--rate-limit", "3")
        codes = [fetch(origin + "/policy")[0] for _ in range(3)]
        code, headers, body = fetch(origin + "/policy")
        self.assertEqual(codes, [200, 200, 200])
        self.assertEqual((code, json.loads(body)["error"]), (429, "too_many_requests"))
        self.assertGreaterEqual(int(headers["Retry-After"]), 1)

    def test_limiterRefills(self) -> None:
        """
        The token bucket allows a burst of its rate, then one request per
        1/rate minute.
        """
        clock = Clock()
        limiter = RateLimiter(clock, 60)
        self.assertEqual([limiter.take("a") for _ in range(60)], [0.0] * 60)
        self.assertAlmostEqual(limiter.take("a"), 1.0)
        self.assertEqual(limiter.take("b"), 0.0)
        clock.advance(1)
        self.assertEqual(limiter.take("a"), 0.0)

    def test_cors(self) -> None:
        """
        Only allowed origins get CORS headers and preflight answers.
        """
        origin = self.serve("--cors-origin", "https://app.example")
        _, headers, _ = fetch(origin + "/limits", {"Origin": "https://app.example"})
        self.assertEqual(headers.get("Access-Control-Allow-Origin"), "https://app.example")
        _, headers, _ = fetch(origin + "/limits", {"Origin": "https://evil.example"})
        self.assertNotIn("Access-Control-Allow-Origin", headers)
        code, headers, _ = fetch(origin + "/policy", {"Origin": "https://app.example",
                                 "Access-Control-Request-Method": "GET"}, method="OPTIONS")
        self.assertEqual(code, 204)
        self.assertIn("GET", headers["Access-Control-Allow-Methods"])
        code, _, _ = fetch(origin + "/policy", {"Origin": "https://evil.example",
                           "Access-Control-Request-Method": "GET"}, method="OPTIONS")
        self.assertEqual(code, 403)


class HTTPSTests(ServerCase):
    """
    The ssl: endpoint.
    """

    def test_https(self) -> None:
        """
        With an ssl: port and a certificate the server answers over TLS,
        and its grants' callbacks use https with callbackSNI.
        """
        import base64
        import ipaddress

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
        now = datetime.now(timezone.utc)
        cert = (
            x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(minutes=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256())
        )
        key_path, cert_path = self.mktemp() + ".key", self.mktemp() + ".crt"
        with open(key_path, "wb") as f:
            f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
        with open(cert_path, "wb") as f:
            f.write(cert.public_bytes(serialization.Encoding.PEM))
        port = free_port()
        context = ssl.create_default_context(cafile=cert_path)
        origin = self.serve(
            "--port", f"ssl:{port}:interface=127.0.0.1:privateKey={key_path}:certKey={cert_path}",
            port=port, scheme="https", context=context,
        )
        code, _, body = fetch(origin + "/policy?name=a.txt", context=context)
        self.assertEqual(code, 200)
        callback = json.loads(base64.b64decode(json.loads(body)["fields"]["callback"]))
        self.assertTrue(callback["callbackUrl"].startswith(f"https://127.0.0.1:{port}/callback/"))
        self.assertIs(callback["callbackSNI"], True)
