#!/usr/bin/env python3
"""
Developer commands that need nothing but Python 3.11+:

    python3 dev.py run     run the server in local mode on http://127.0.0.1:1234/
    python3 dev.py test    run the whole test suite
    python3 dev.py smoke   install the built wheel in a fresh venv and start it
                           from outside the checkout

Each makes (or reuses) a virtual environment in .venv and installs this
checkout into it first.
"""

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

HERE = Path(__file__).resolve().parent
VENV = HERE / ".venv"


def venv(path: Path) -> Path:
    """
    Make a virtual environment at C{path} unless there is one; its bin/.
    """
    if not (path / "bin" / "python").exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    return path / "bin"


def install(bin: Path, target: str) -> None:
    subprocess.run(
        [str(bin / "pip"), "install", "--quiet", "--disable-pip-version-check", target],
        check=True,
        cwd=HERE,
    )


def run(args: list[str]) -> int:
    bin = venv(VENV)
    install(bin, ".")
    command = [str(bin / "twistd"), "-n", "--pidfile=", "osscallback",
               "--port", "tcp:1234:interface=127.0.0.1"]
    return subprocess.call(command + args, cwd=HERE)


def test(args: list[str]) -> int:
    bin = venv(VENV)
    install(bin, ".[test]")
    sdk = HERE / "tests" / "js"
    if shutil.which("npm") and not (sdk / "node_modules" / "ali-oss").is_dir():
        # Alibaba's JavaScript SDK, for the cross-check of the embedded OSS.
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--silent"], check=True, cwd=sdk)
    command = [str(bin / "python"), "-W", "error::DeprecationWarning",
               # Twisted's own static.py still builds deprecated error pages on import.
               "-W", "ignore::DeprecationWarning:twisted.web.static",
               "-m", "twisted.trial", *(args or ["tests"])]
    return subprocess.call(command, cwd=HERE)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def upload(grant: dict, data: bytes) -> tuple[int, bytes]:
    """
    POST C{data} with a grant's form fields, the file last, as a browser does.
    """
    boundary = "smoke" + os.urandom(8).hex()
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in grant["fields"].items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.png"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n"
    )
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    request = urllib.request.Request(
        grant["url"], data=body, method="POST",
        headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def smoke(args: list[str]) -> int:
    """
    Build the wheel, install it into a fresh venv, and check from a folder
    outside the checkout that twistd finds the plugin, serves the client and
    the API, and takes an upload in local mode end to end.
    """
    with tempfile.TemporaryDirectory() as scratch:
        where = Path(scratch)
        bin = venv(VENV)
        subprocess.run(
            [str(bin / "pip"), "wheel", "--quiet", "--no-deps", "--disable-pip-version-check",
             "-w", str(where / "dist"), "."],
            check=True,
            cwd=HERE,
        )
        wheel = next((where / "dist").glob("osscallback-*.whl"))
        target = venv(where / "venv")
        install(target, str(wheel))
        twistd = str(target / "twistd")
        bad = subprocess.run(
            [twistd, "-n", "--pidfile=", "osscallback", "--port", "nonsense"],
            cwd=where, capture_output=True, text=True,
        )
        output = (bad.stdout + bad.stderr).strip()
        assert bad.returncode != 0 and "Traceback" not in output, output
        assert len(output.splitlines()) == 1, output
        print("bad --port:", output)
        port = free_port()
        server = subprocess.Popen(
            [twistd, "-n", "--pidfile=", "osscallback", "--port",
             f"tcp:{port}:interface=127.0.0.1", "--data-dir", str(where / "data")],
            cwd=where,
        )
        try:
            origin = f"http://127.0.0.1:{port}"
            for _ in range(100):
                try:
                    status, body = get(origin + "/healthz")
                    break
                except OSError:
                    time.sleep(0.1)
            else:
                raise AssertionError("the installed server did not start")
            assert (status, json.loads(body)) == (200, {"status": "ok"}), body
            status, body = get(origin + "/")
            assert status == 200 and b"app.js" in body, (status, body[:200])
            status, body = get(origin + "/app.js")
            assert status == 200 and b"policy" in body, status
            status, body = get(origin + "/policy?name=a.png&size=25")
            grant = json.loads(body)
            assert status == 200 and grant["key"].endswith(".png"), body
            status, body = get(origin + "/policy?size=abc")
            assert status == 400 and json.loads(body)["error"] == "bad_size", body
            status, body = upload(grant, b"hello from the smoke test")
            assert status == 200 and json.loads(body)["Status"] == "OK", (status, body)
        finally:
            server.terminate()
            server.wait(10)
        print("smoke test passed: the installed wheel serves /, the API and a local upload")
    return 0


COMMANDS = {"run": run, "test": test, "smoke": smoke}

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    sys.exit(COMMANDS[sys.argv[1]](sys.argv[2:]))
