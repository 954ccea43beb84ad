# -*- test-case-name: tests.test_records -*-
"""
Checking the V4 Authorization header of a read (GetObject, HeadObject) as
OSS does.  Reads without one are anonymous, as on a public-read bucket.

Pure: the time comes in as an argument.
"""

import hmac
import re
from datetime import datetime, timedelta, timezone

from osscallback.emulator.errors import OSSError, access_denied
from osscallback.emulator.postpolicy import BucketAccess
from osscallback.policy import V4_ALGORITHM
from osscallback.requestsign import request_signature

_AUTHORIZATION = re.compile(
    rf"^{V4_ALGORITHM} Credential=([^/,]+)/(\d{{8}})/([^/,]+)/oss/aliyun_v4_request"
    r"(?:,AdditionalHeaders=[^,]*)?,Signature=([0-9a-f]{64})$"
)


def check_read(
    access: BucketAccess, method: str, key: str, headers: dict[str, str], now: datetime
) -> None:
    """
    Check a signed read of C{key}.

    @param headers: the request's headers, names in lowercase.
    @raise OSSError: when the signature, credentials or date do not hold.
    """
    authorization = headers.get("authorization")
    if authorization is None:
        return
    match = _AUTHORIZATION.match(authorization)
    if match is None:
        raise OSSError(400, "InvalidArgument", "Authorization header is invalid.")
    key_id, day, region, signature = match.groups()
    credentials = access.credentials
    if not hmac.compare_digest(key_id.encode(), credentials.access_key_id.encode()):
        raise OSSError(
            403, "InvalidAccessKeyId",
            "The OSS Access Key Id you provided does not exist in our records.",
        )
    date = headers.get("x-oss-date", "")
    try:
        signed_at = datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise OSSError(403, "AccessDenied", "x-oss-date is missing or malformed.") from None
    if date[:8] != day or region != access.region:
        raise OSSError(403, "SignatureDoesNotMatch", "The credential scope does not match.")
    if abs(now - signed_at) > timedelta(minutes=15):
        raise access_denied("The difference between the request time and the current time is too large.")
    if credentials.security_token and headers.get("x-oss-security-token") != credentials.security_token:
        raise OSSError(403, "InvalidAccessKeyId", "The security token is missing or wrong.")
    expected = request_signature(credentials, region, method, access.bucket, key, headers)
    if not hmac.compare_digest(signature, expected):
        raise OSSError(
            403, "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you "
            "provided. Check your key and signing method.",
        )
