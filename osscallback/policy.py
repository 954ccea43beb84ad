# -*- test-case-name: tests.test_policy -*-
"""
PostObject policies and their V1 (HMAC-SHA1) and V4 (OSS4-HMAC-SHA256)
signatures, as oss-protocol.md section 3 describes them.

Pure: nothing here reads a clock or does I/O.
"""

import base64
import hmac
from datetime import datetime, timezone
from functools import lru_cache
from typing import Any

from osscallback.credentials import Credentials
from osscallback.jsontext import compact_json

V4_ALGORITHM = "OSS4-HMAC-SHA256"


# Grants issued in the same second share their time texts.
@lru_cache(maxsize=4)
def expiration_text(moment: datetime) -> str:
    """
    The policy's C{expiration}: ISO 8601 in UTC with milliseconds, as the
    SDKs write it.
    """
    u = moment.astimezone(timezone.utc)
    # Formatted by hand: strftime costs a grant more than its HMAC.
    return (
        f"{u.year:04d}-{u.month:02d}-{u.day:02d}"
        f"T{u.hour:02d}:{u.minute:02d}:{u.second:02d}.000Z"
    )


@lru_cache(maxsize=4)
def v4_date(moment: datetime) -> str:
    """
    The V4 C{x-oss-date} of C{moment}: C{YYYYMMDDTHHMMSSZ} in UTC; its
    first eight characters are the signing day.
    """
    u = moment.astimezone(timezone.utc)
    return (
        f"{u.year:04d}{u.month:02d}{u.day:02d}"
        f"T{u.hour:02d}{u.minute:02d}{u.second:02d}Z"
    )


def encode_policy(document: dict[str, Any]) -> str:
    """
    Serialise a policy document once, compactly and as UTF-8, and base64 it.
    The result is both the C{policy} form field and the string to sign.
    """
    return base64.b64encode(compact_json(document)).decode("ascii")


def sign_v1(access_key_secret: str, policy: str) -> str:
    """
    The V1 C{Signature} field: base64 of HMAC-SHA1 over the base64 policy.
    """
    digest = hmac.digest(access_key_secret.encode("utf-8"), policy.encode("ascii"), "sha1")
    return base64.b64encode(digest).decode("ascii")


def _hmac256(key: bytes, message: str) -> bytes:
    return hmac.digest(key, message.encode("utf-8"), "sha256")


def v4_signing_key(access_key_secret: str, day: str, region: str) -> bytes:
    """
    Derive the V4 signing key for one day (C{YYYYMMDD}) and region.
    """
    key = _hmac256(("aliyun_v4" + access_key_secret).encode("utf-8"), day)
    for part in (region, "oss", "aliyun_v4_request"):
        key = _hmac256(key, part)
    return key


class V4Signer:
    """
    Signs V4 policies, deriving the signing key once per (day, region).

    @ivar derivations: how many signing keys were derived so far.
    """

    def __init__(self, credentials: Credentials, region: str) -> None:
        self._credentials = credentials
        self._region = region
        self._day: str | None = None
        self._mac = hmac.new(b"", digestmod="sha256")
        self.derivations = 0

    def credential(self, day: str) -> str:
        """
        The C{x-oss-credential} value for C{day}.
        """
        return (
            f"{self._credentials.access_key_id}/{day}/{self._region}"
            "/oss/aliyun_v4_request"
        )

    def sign(self, day: str, policy: str) -> str:
        """
        The C{x-oss-signature} of C{policy}: lowercase hex HMAC-SHA256 under
        the signing key of C{day}.
        """
        if day != self._day:
            key = v4_signing_key(self._credentials.access_key_secret, day, self._region)
            self._mac = hmac.new(key, digestmod="sha256")
            self._day = day
            self.derivations += 1
        # A copy of the keyed state skips hashing the key again.
        mac = self._mac.copy()
        mac.update(policy.encode("ascii"))
        return mac.hexdigest()


def signed_form(
    credentials: Credentials,
    signer: V4Signer | None,
    now: datetime,
    expires: datetime,
    bucket: str,
    conditions: list[Any],
) -> dict[str, str]:
    """
    The authenticating form fields of a PostObject request, in sending order.

    With a V4 C{signer} the V4 fields are added, and the conditions OSS
    requires for them are put at the front of the policy; without one the
    policy is signed with V1.  An STS token goes into the form, and under V4
    into the policy too.

    @param conditions: the grant's own policy conditions, which follow the
        bucket and the signature conditions.
    """
    token = credentials.security_token
    if signer is None:
        policy = encode_policy(
            {
                "expiration": expiration_text(expires),
                "conditions": [{"bucket": bucket}, *conditions],
            }
        )
        fields = {
            "OSSAccessKeyId": credentials.access_key_id,
            "policy": policy,
            "Signature": sign_v1(credentials.access_key_secret, policy),
        }
        if token:
            fields["x-oss-security-token"] = token
        return fields
    date = v4_date(now)
    day = date[:8]
    credential = signer.credential(day)
    required: list[Any] = [
        {"x-oss-signature-version": V4_ALGORITHM},
        {"x-oss-credential": credential},
    ]
    if token:
        required.append({"x-oss-security-token": token})
    required.append({"x-oss-date": date})
    policy = encode_policy(
        {
            "expiration": expiration_text(expires),
            "conditions": [{"bucket": bucket}, *required, *conditions],
        }
    )
    fields = {"policy": policy, "x-oss-signature-version": V4_ALGORITHM}
    fields["x-oss-credential"] = credential
    fields["x-oss-date"] = date
    if token:
        fields["x-oss-security-token"] = token
    fields["x-oss-signature"] = signer.sign(day, policy)
    return fields
