"""
Shared test helpers: settings, a signed callback like OSS sends.
"""

import base64
import json
import os
import secrets
import socket
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode, urlsplit

from osscallback.callback import sign_callback
from osscallback.config import Settings
from osscallback.credentials import Credentials
from osscallback.ledger import Ledger
from tests.fixtures import callback_private_key

KEY_URL = "https://keys.test/callback_pub_key.pem"

SETTINGS = Settings(
    port="tcp:0",
    local=True,
    bucket="local-bucket",
    region="local",
    endpoint=None,
    credentials=Credentials("LTAITESTKEYID", "test-secret-0123456789"),
    callback_url=None,
    upload_dir="uploads/",
    expire=300,
    max_size=1024,
    allow_types=(),
    signature_version=4,
    trust_key_urls=("https://keys.test/",),
    cors_origins=("*",),
    data_dir="data",
    database="sqlite:///data/uploads.sqlite3",
    confirm=True,
    hook=None,
    webhook_url=None,
    token_secret=b"t" * 64,
)


def settings(**changes: Any) -> Settings:
    """
    Test settings with C{changes}.
    """
    return replace(SETTINGS, **changes)


def callback_target(grant: dict[str, Any]) -> tuple[str, bytes]:
    """
    The callback URL of a grant answer, and its request target.
    """
    document = json.loads(base64.b64decode(grant["fields"]["callback"]))
    url = document["callbackUrl"]
    return url, urlsplit(url).path.encode()


def oss_callback(
    target: bytes,
    claims: dict[str, Any],
    key_url: str = KEY_URL,
    private_key: Any = None,
) -> tuple[bytes, dict[bytes, list[bytes]]]:
    """
    The body and headers OSS would send to C{target} for an object with
    C{claims}, signed with C{private_key} (the fixture key by default).
    """
    body = urlencode(claims).encode()
    signer = private_key or callback_private_key()
    headers = {
        b"authorization": [sign_callback(signer, target, body)],
        b"x-oss-pub-key-url": [base64.b64encode(key_url.encode())],
        b"content-type": [b"application/x-www-form-urlencoded"],
        b"x-oss-bucket": [claims.get("bucket", "").encode()],
    }
    return body, headers


def form_body(
    fields: list[tuple[str, str]],
    file: tuple[str, str, bytes] | None,
    after: tuple[tuple[str, str], ...] = (),
) -> tuple[bytes, bytes]:
    """
    A multipart/form-data body as a browser sends it: C{fields} in order,
    then the file part (name, content type, bytes), then C{after}.

    @return: the Content-Type header value and the body.
    """
    boundary = b"----osscallbackTestBoundary7MA4YWxkTrZu0gW"
    parts = []

    def field(name: str, value: str) -> bytes:
        return (
            b"--" + boundary + b"\r\n"
            + f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode()
            + value.encode() + b"\r\n"
        )

    parts.extend(field(name, value) for name, value in fields)
    if file is not None:
        filename, content_type, data = file
        parts.append(
            b"--" + boundary + b"\r\n"
            + f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'.encode()
            + f"Content-Type: {content_type}\r\n\r\n".encode()
            + data + b"\r\n"
        )
    parts.extend(field(name, value) for name, value in after)
    body = b"".join(parts) + b"--" + boundary + b"--\r\n"
    return b"multipart/form-data; boundary=" + boundary, body


def png(width: int, height: int) -> bytes:
    """
    The bytes of a small valid PNG image of the given size.
    """
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data))
        )

    rows = b"".join(b"\x00" + b"\xff\x00\x00" * width for _ in range(height))
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


async def open_ledger(case: Any, url: str | None = None) -> Ledger:
    """
    A migrated ledger for a test, SQLite in a fresh file unless C{url}
    says otherwise, closed when the test ends.
    """
    from twisted.internet import reactor

    ledger = Ledger.open(url or f"sqlite:///{case.mktemp()}.sqlite3", reactor)
    case.addCleanup(ledger.close)
    await ledger.migrate()
    return ledger


POSTGRESQL = os.environ.get(
    "OSSCALLBACK_TEST_POSTGRESQL", "postgresql://postgres@127.0.0.1:5432/test"
)


def postgresql_url(case: Any) -> str:
    """
    The URL of a fresh, empty schema on the test PostgreSQL server, dropped
    when the test ends.  Skips the test when the server cannot be reached,
    unless OSSCALLBACK_REQUIRE_POSTGRESQL is set (as CI does).
    """
    from twisted.trial.unittest import SkipTest

    try:
        import psycopg

        connection = psycopg.connect(POSTGRESQL, autocommit=True, connect_timeout=3)
    except Exception as e:
        if os.environ.get("OSSCALLBACK_REQUIRE_POSTGRESQL"):
            raise
        raise SkipTest(f"no PostgreSQL at {POSTGRESQL}: {e}") from None
    schema = "t_" + secrets.token_hex(8)
    connection.execute(f"CREATE SCHEMA {schema}")

    def drop() -> None:
        connection.execute(f"DROP SCHEMA {schema} CASCADE")
        connection.close()

    case.addCleanup(drop)
    separator = "&" if "?" in POSTGRESQL else "?"
    return f"{POSTGRESQL}{separator}options=-csearch_path%3D{schema}"


def free_port() -> int:
    """
    A loopback port nothing listens on just now.
    """
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
