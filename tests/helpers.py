"""
Shared test helpers: settings, a signed callback like OSS sends.
"""

import base64
import json
from dataclasses import replace
from typing import Any
from urllib.parse import urlencode, urlsplit

from osscallback.callback import sign_callback
from osscallback.config import Settings
from osscallback.credentials import Credentials
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
    data_dir="data",
    database="sqlite:///data/uploads.sqlite3",
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
) -> tuple[bytes, dict[bytes, list[bytes]]]:
    """
    The body and headers OSS would send to C{target} for an object with
    C{claims}, signed with the fixture key.
    """
    body = urlencode(claims).encode()
    headers = {
        b"authorization": [sign_callback(callback_private_key(), target, body)],
        b"x-oss-pub-key-url": [base64.b64encode(key_url.encode())],
        b"content-type": [b"application/x-www-form-urlencoded"],
        b"x-oss-bucket": [claims.get("bucket", "").encode()],
    }
    return body, headers
