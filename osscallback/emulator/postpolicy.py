# -*- test-case-name: tests.test_emulator_postpolicy -*-
"""
Checking a PostObject form as OSS does: its V1 or V4 signature, its STS
token, and every condition of its policy, against the unexpanded values.

Pure: the time comes in as an argument.
"""

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from osscallback.credentials import Credentials
from osscallback.emulator.errors import OSSError, access_denied, invalid_argument
from osscallback.emulator.multipart import PostForm
from osscallback.policy import V4_ALGORITHM, sign_v1, v4_signing_key

_CONDITION_FAILED_EC = "0006-00000227"


@dataclass(frozen=True)
class BucketAccess:
    """
    The bucket and the credentials allowed to post to it.
    """

    bucket: str
    region: str
    credentials: Credentials = field(repr=False)


def _invalid_policy(message: str, ec: str = "0000-00000000") -> OSSError:
    return OSSError(400, "InvalidPolicyDocument", f"Invalid Policy: {message}", ec)


def _unknown_key_id() -> OSSError:
    return OSSError(
        403,
        "InvalidAccessKeyId",
        "The OSS Access Key Id you provided does not exist in our records.",
    )


def _signature_mismatch() -> OSSError:
    return access_denied(
        "The request signature we calculated does not match the signature you "
        "provided. Check your key and signing method."
    )


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _check_token(form: PostForm, credentials: Credentials) -> None:
    token = credentials.security_token
    if token is not None and not _same(form.get("x-oss-security-token") or "", token):
        raise _unknown_key_id()


def _check_v1(form: PostForm, credentials: Credentials) -> str:
    key_id, policy, signature = (
        form.get("OSSAccessKeyId"),
        form.get("policy"),
        form.get("Signature"),
    )
    if key_id is None or policy is None or signature is None:
        raise invalid_argument(
            "OSSAccessKeyId, policy and Signature must all be present, or none."
        )
    if not _same(key_id, credentials.access_key_id):
        raise _unknown_key_id()
    if not _same(signature, sign_v1(credentials.access_key_secret, policy)):
        raise _signature_mismatch()
    return policy


def _check_v4(form: PostForm, access: BucketAccess, now: datetime) -> str:
    if form.get("x-oss-signature-version") != V4_ALGORITHM:
        raise invalid_argument(f"x-oss-signature-version must be {V4_ALGORITHM}.")
    policy = form.get("policy")
    credential = form.get("x-oss-credential") or ""
    date = form.get("x-oss-date") or ""
    signature = form.get("x-oss-signature")
    if policy is None or signature is None:
        raise invalid_argument("A V4 PostObject needs the policy and x-oss-signature fields.")
    parts = credential.split("/")
    if len(parts) != 5 or parts[3:] != ["oss", "aliyun_v4_request"]:
        raise OSSError(
            400,
            "InvalidArgument",
            "x-oss-credential must be <AccessKeyId>/<YYYYMMDD>/<region>/oss/aliyun_v4_request.",
            "0002-00000710",
        )
    key_id, day, region = parts[:3]
    if not _same(key_id, access.credentials.access_key_id):
        raise _unknown_key_id()
    if region != access.region:
        raise invalid_argument(
            f"x-oss-credential names region {region}, but the bucket is in {access.region}."
        )
    try:
        signed_at = datetime.strptime(date, "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        raise invalid_argument("x-oss-date must be YYYYMMDD'T'HHMMSS'Z'.") from None
    if date[:8] != day:
        raise invalid_argument("The dates of x-oss-date and x-oss-credential differ.")
    if now < signed_at - timedelta(minutes=15):
        raise access_denied("The difference between the request time and the current time is too large.")
    if now > signed_at + timedelta(days=7):
        raise access_denied("The request signature has expired: x-oss-date is over 7 days old.")
    expected = hmac.new(
        v4_signing_key(access.credentials.access_key_secret, day, region),
        policy.encode("utf-8"),
        hashlib.sha256,
    ).hexdigest()
    if not _same(signature, expected):
        raise _signature_mismatch()
    return policy


def _parse_policy(policy: str) -> tuple[datetime, list[Any]]:
    try:
        document = json.loads(base64.b64decode(policy, validate=True).decode("utf-8"))
    except (binascii.Error, ValueError):
        raise _invalid_policy("Invalid JSON: the policy is not base64 of a JSON document.") from None
    if not isinstance(document, dict):
        raise _invalid_policy("Invalid JSON: the policy is not a JSON object.")
    conditions = document.get("conditions")
    if not isinstance(conditions, list) or not conditions:
        raise _invalid_policy("the policy must have conditions.")
    expiration = document.get("expiration")
    for layout in ("%Y-%m-%dT%H:%M:%S.%fZ", "%Y-%m-%dT%H:%M:%SZ"):
        try:
            moment = datetime.strptime(str(expiration), layout)
            return moment.replace(tzinfo=timezone.utc), conditions
        except ValueError:
            continue
    raise _invalid_policy(f"Invalid 'expiration' value: {expiration!r}.")


def _literal(value: Any) -> str:
    if not isinstance(value, str):
        raise _invalid_policy(f"Invalid condition value: {json.dumps(value)}.")
    return value.replace("\\$", "$")


class _Fields:
    """
    The values conditions are checked against: form fields by name without
    case, the bucket, and the content type from the form or the file part.
    """

    def __init__(self, form: PostForm, bucket: str) -> None:
        self._form = form
        self._bucket = bucket

    def get(self, name: str) -> str | None:
        name = name.lower()
        if name == "bucket":
            return self._bucket
        value = self._form.get(name)
        if value is None and name == "content-type" and self._form.file is not None:
            return self._form.file.content_type or None
        return value


def _failed(condition: Any) -> OSSError:
    return access_denied(
        "Invalid according to Policy: Policy Condition failed: "
        + json.dumps(condition, ensure_ascii=False),
        _CONDITION_FAILED_EC,
    )


def _check_condition(condition: Any, fields: _Fields, size: int) -> str | None:
    """
    Check one condition; the name of the field it constrains, if exact.
    """
    if isinstance(condition, dict):
        if len(condition) != 1:
            raise _invalid_policy(
                "Invalid Simple-Condition: Simple-Conditions must have exactly one "
                "property specified."
            )
        ((name, expected),) = condition.items()
        if fields.get(name) != _literal(expected):
            raise _failed(condition)
        return name.lower()
    if not isinstance(condition, list) or len(condition) != 3:
        raise _invalid_policy(f"Invalid condition: {json.dumps(condition)}.")
    operator, subject, expected = condition
    operator = str(operator).lower()
    if operator == "content-length-range":
        low, high = subject, expected
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (low, high)):
            raise _invalid_policy("content-length-range needs two whole numbers.", "0006-00000219")
        if low > high:
            raise _invalid_policy("content-length-range has its minimum over its maximum.", "0006-00000221")
        if size > high:
            raise OSSError(400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size.", "0006-00000003")
        if size < low:
            raise OSSError(400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size.", "0006-00000004")
        return None
    if not isinstance(subject, str) or not subject.startswith("$"):
        raise _invalid_policy(f"Invalid condition: {json.dumps(condition)}.")
    value = fields.get(subject[1:])
    if operator == "eq":
        ok = value == _literal(expected)
    elif operator == "starts-with":
        prefix = _literal(expected)
        ok = prefix == "" or (value is not None and value.startswith(prefix))
    elif operator in ("in", "not-in"):
        if not isinstance(expected, list):
            raise _invalid_policy(f"{operator} needs a list: {json.dumps(condition)}.")
        members = [_literal(v) for v in expected]
        ok = (value in members) if operator == "in" else (value not in members)
    else:
        raise _invalid_policy(f"Invalid condition operator: {json.dumps(operator)}.")
    if not ok:
        raise _failed(condition)
    return subject[1:].lower() if operator == "eq" else None


def check_post(form: PostForm, access: BucketAccess, now: datetime) -> None:
    """
    Check a PostObject form's signature and policy.

    @raise OSSError: with OSS's code for the first check that fails.
    """
    v4 = form.get("x-oss-signature-version") is not None
    if not v4 and all(
        form.get(name) is None for name in ("OSSAccessKeyId", "policy", "Signature")
    ):
        raise access_denied("You have no right to access this object because of bucket acl.")
    policy = _check_v4(form, access, now) if v4 else _check_v1(form, access.credentials)
    _check_token(form, access.credentials)
    expiration, conditions = _parse_policy(policy)
    if now > expiration:
        raise access_denied("Invalid according to Policy: Policy expired.")
    size = form.file.size if form.file is not None else 0
    fields = _Fields(form, access.bucket)
    pinned = {_check_condition(c, fields, size) for c in conditions}
    if v4:
        required = ["x-oss-signature-version", "x-oss-credential", "x-oss-date"]
        if access.credentials.security_token is not None:
            required.append("x-oss-security-token")
        for name in required:
            if name not in pinned:
                raise _invalid_policy(
                    f"a V4 policy must contain the condition {{\"{name}\": ...}}."
                )
