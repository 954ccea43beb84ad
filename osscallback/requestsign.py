# -*- test-case-name: tests.test_requestsign -*-
"""
V4 (OSS4-HMAC-SHA256) signatures of OSS API requests in the Authorization
header, as Alibaba's SDKs make them: used for HeadObject.

Pure: the time comes in as an argument.
"""

import hashlib
import hmac
from datetime import datetime, timezone
from email.utils import format_datetime
from urllib.parse import quote

from osscallback.credentials import Credentials
from osscallback.policy import V4_ALGORITHM, v4_date, v4_signing_key

UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"


def _signed(name: str) -> bool:
    return name.startswith("x-oss-") or name in ("content-type", "content-md5")


def canonical_request(
    method: str, bucket: str, key: str, headers: dict[str, str]
) -> str:
    """
    The canonical request of a request without a query: method, the
    path-style URI, the x-oss-* and content headers, and the payload hash.
    """
    uri = quote(f"/{bucket}/{key}", safe="/")
    lines = "".join(
        f"{name}:{value.strip()}\n"
        for name, value in sorted((k.lower(), v) for k, v in headers.items())
        if _signed(name)
    )
    payload = headers.get("x-oss-content-sha256", UNSIGNED_PAYLOAD)
    return f"{method}\n{uri}\n\n{lines}\n\n{payload}"


def request_signature(
    credentials: Credentials,
    region: str,
    method: str,
    bucket: str,
    key: str,
    headers: dict[str, str],
) -> str:
    """
    The hex signature of a request whose headers already carry its
    C{x-oss-date}.
    """
    date = headers["x-oss-date"]
    scope = f"{date[:8]}/{region}/oss/aliyun_v4_request"
    digest = hashlib.sha256(
        canonical_request(method, bucket, key, headers).encode("utf-8")
    ).hexdigest()
    string_to_sign = f"{V4_ALGORITHM}\n{date}\n{scope}\n{digest}"
    return hmac.new(
        v4_signing_key(credentials.access_key_secret, date[:8], region),
        string_to_sign.encode("utf-8"),
        hashlib.sha256,
    ).hexdigest()


def signed_headers(
    credentials: Credentials,
    region: str,
    method: str,
    bucket: str,
    key: str,
    now: datetime,
) -> dict[str, str]:
    """
    The headers that authenticate a body-less request for C{key}.
    """
    utc = now.astimezone(timezone.utc)
    headers = {
        "x-oss-date": v4_date(utc),
        "x-oss-content-sha256": UNSIGNED_PAYLOAD,
    }
    if credentials.security_token:
        headers["x-oss-security-token"] = credentials.security_token
    signature = request_signature(credentials, region, method, bucket, key, headers)
    headers["date"] = format_datetime(utc, usegmt=True)
    headers["authorization"] = (
        f"{V4_ALGORITHM} Credential={credentials.access_key_id}/"
        f"{headers['x-oss-date'][:8]}/{region}/oss/aliyun_v4_request,"
        f"Signature={signature}"
    )
    return headers
