# -*- test-case-name: tests.test_grant -*-
"""
Upload grants: what one browser may upload, the object key the server chose
for it, and the token that binds an OSS callback to it.

Pure: time and randomness come in as arguments.
"""

import base64
import hmac
import os
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import Any, Callable, Mapping

from osscallback.errors import Refusal
from osscallback.jsontext import compact_json, parse_json

# How long after its expiry a grant's callback is still accepted: an upload
# that started in time may take a while to finish.
CALLBACK_GRACE = 3600

_MAC_LENGTH = 43  # unpadded base64url of a SHA-256 MAC
_MAC_CONTEXT = b"osscallback grant token v1\n"
_MIME = re.compile(r"^[a-z0-9!#$&^_.+-]+/[a-z0-9!#$&^_.+-]+$")
_EXTENSION = re.compile(r"^[a-z0-9]{1,10}$")


@dataclass(frozen=True)
class GrantRules:
    """
    The server's limits on every grant.

    @ivar by_prefix: pin the grant's unique folder rather than one exact key
        (V1 grants, whose sample client names the object itself).
    """

    bucket: str
    upload_dir: str
    expire: int
    max_size: int
    allow_types: tuple[str, ...]
    by_prefix: bool


@dataclass(frozen=True)
class GrantQuery:
    """
    What the browser asked for: all optional.
    """

    name: str | None = None
    size: int | None = None
    type: str | None = None


@dataclass(frozen=True)
class Grant:
    """
    One upload the server allowed.

    @ivar id: unique to this grant.
    @ivar key: the object key chosen for it.
    @ivar folder: with a by-prefix grant, the unique folder any key must be
        under; otherwise L{None} and only C{key} is admitted.
    @ivar max_size: the largest object size in bytes.
    @ivar issued: when it was issued, in seconds since the epoch.
    @ivar expires: the policy's expiry, in seconds since the epoch.
    @ivar user: the user it was issued to, when known.
    """

    id: str
    key: str
    folder: str | None
    bucket: str
    max_size: int
    issued: int
    expires: int
    user: str | None = None

    def admits(self, bucket: str, key: str, size: int) -> str | None:
        """
        Why an uploaded object does not belong to this grant, or L{None} if
        it does.
        """
        if not hmac.compare_digest(bucket.encode(), self.bucket.encode()):
            return "the bucket is not this server's bucket"
        if self.folder is None:
            if not hmac.compare_digest(key.encode(), self.key.encode()):
                return "the object key is not the one this grant issued"
        elif not key.startswith(self.folder) or key == self.folder:
            return "the object key is not under this grant's folder"
        if size > self.max_size:
            return "the object is larger than this grant allows"
        return None


def parse_query(args: Mapping[bytes, list[bytes]]) -> GrantQuery:
    """
    Read C{name}, C{size} and C{type} from a query string's arguments.

    @raise Refusal: 400 for a parameter that is present but malformed.
    """

    def one(name: bytes) -> str | None:
        values = args.get(name)
        if not values:
            return None
        if len(values) > 1:
            raise Refusal(400, "bad_parameter", f"Give {name.decode()} only once.")
        try:
            return values[0].decode("utf-8")
        except UnicodeDecodeError:
            raise Refusal(
                400, "bad_parameter", f"{name.decode()} must be UTF-8 text."
            ) from None

    name, size_text, mime = one(b"name"), one(b"size"), one(b"type")
    size = None
    if size_text is not None:
        if not size_text.isascii() or not size_text.isdigit() or len(size_text) > 18:
            raise Refusal(
                400,
                "bad_size",
                "size must be the file's size in bytes, a whole number of 0 or more.",
            )
        size = int(size_text)
    if mime is not None:
        mime = mime.strip().lower()
        if not _MIME.match(mime):
            raise Refusal(
                400,
                "bad_type",
                "type must be a content type such as image/png.",
            )
    return GrantQuery(name=name or None, size=size, type=mime or None)


class NoncePool:
    """
    Fresh random bytes for grant keys, read from the system 4 KiB at a
    time rather than with one system call per grant.
    """

    def __init__(self, source: Callable[[int], bytes] = os.urandom) -> None:
        self._source = source
        self._pool = b""

    def __call__(self, size: int) -> bytes:
        if len(self._pool) < size:
            self._pool = self._source(4096)
        nonce, self._pool = self._pool[:size], self._pool[size:]
        return nonce


def safe_extension(name: str | None) -> str:
    """
    The extension of a file name in a form safe inside an object key:
    C{".png"} for C{"../My Photo.PNG"}, and C{""} when there is none or it
    is anything but 1-10 ASCII letters and digits.
    """
    if not name:
        return ""
    base = name.replace("\\", "/").rpartition("/")[2]
    stem, dot, extension = base.rpartition(".")
    extension = extension.lower()
    if not dot or not stem.strip(".") or not _EXTENSION.match(extension):
        return ""
    return "." + extension


def type_allowed(patterns: tuple[str, ...], mime: str) -> bool:
    """
    Whether C{mime} matches one of C{patterns} (C{image/*} or exact types).
    """
    for pattern in patterns:
        if pattern.endswith("/*"):
            if mime.startswith(pattern[:-1]):
                return True
        elif mime == pattern:
            return True
    return False


def _type_conditions(
    patterns: tuple[str, ...], mime: str | None
) -> tuple[list[Any], dict[str, str]]:
    """
    The policy conditions and form fields that pin the content type.
    """
    if mime is not None:
        if patterns and not type_allowed(patterns, mime):
            raise Refusal(
                400,
                "type_not_allowed",
                f"Files of type {mime} are not accepted here; allowed: "
                f"{', '.join(patterns)}.",
            )
        return [["eq", "$content-type", mime]], {"Content-Type": mime}
    if not patterns:
        return [], {}
    if len(patterns) == 1 and patterns[0].endswith("/*"):
        return [["starts-with", "$content-type", patterns[0][:-1]]], {}
    if not any(p.endswith("/*") for p in patterns):
        return [["in", "$content-type", list(patterns)]], {}
    raise Refusal(
        400,
        "type_required",
        f"Say which type the file has (type=...); allowed: {', '.join(patterns)}.",
    )


@lru_cache(maxsize=4)
def _day_folder(day: date) -> str:
    return f"{day.year:04d}/{day.month:02d}/{day.day:02d}/"


def new_grant(
    rules: GrantRules,
    query: GrantQuery,
    now: datetime,
    nonce: bytes,
    user: str | None = None,
) -> tuple[Grant, list[Any], dict[str, str]]:
    """
    Choose the object key and limits for one upload.

    @param nonce: fresh random bytes that make the key unique.
    @param user: the user, whose uploads go under a folder of their own.
    @return: the grant, its own policy conditions (key, size, content type;
        the callback and the signature conditions are added by the caller)
        and the extra form fields they need.
    @raise Refusal: 400 when the query asks for more than the rules allow.
    """
    if query.size is not None and query.size > rules.max_size:
        raise Refusal(
            400,
            "too_large",
            f"The file is {query.size} bytes; the largest upload allowed is "
            f"{rules.max_size} bytes.",
        )
    type_conditions, type_fields = _type_conditions(rules.allow_types, query.type)
    utc = now.astimezone(timezone.utc)
    unique = nonce.hex()
    day = (f"{user}/" if user else "") + _day_folder(utc.date())
    extension = safe_extension(query.name)
    if rules.by_prefix:
        folder: str | None = f"{rules.upload_dir}{day}{unique}/"
        key = f"{folder}upload{extension}"
        key_condition = ["starts-with", "$key", folder]
    else:
        folder = None
        key = f"{rules.upload_dir}{day}{unique}{extension}"
        key_condition = ["eq", "$key", key]
    limit = rules.max_size if query.size is None else query.size
    issued = int(utc.timestamp())
    grant = Grant(
        id=unique,
        key=key,
        folder=folder,
        bucket=rules.bucket,
        max_size=limit,
        issued=issued,
        expires=issued + rules.expire,
        user=user,
    )
    conditions = [
        key_condition,
        ["eq", "$success_action_status", "200"],
        ["content-length-range", 0, limit],
        *type_conditions,
    ]
    return grant, conditions, type_fields


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@lru_cache(maxsize=4)
def _keyed(secret: bytes) -> "hmac.HMAC":
    return hmac.new(secret, _MAC_CONTEXT, "sha256")


def _mac(secret: bytes, payload: str) -> str:
    # A copy of the keyed state skips hashing the secret again.
    mac = _keyed(secret).copy()
    mac.update(payload.encode("ascii"))
    return _b64(mac.digest())


def seal(grant: Grant, secret: bytes) -> str:
    """
    The callback token for C{grant}: the grant itself (id, key or folder,
    bucket, size limit, issue and expiry times, user), base64url, followed
    by a MAC only a holder of C{secret} can make.  It uses only characters
    that are safe in a callback path ([A-Za-z0-9_-]).
    """
    document = {
        "i": grant.id,
        "k": grant.key,
        "f": grant.folder,
        "b": grant.bucket,
        "s": grant.max_size,
        "t": grant.issued,
        "e": grant.expires,
        "u": grant.user,
    }
    payload = _b64(compact_json(document))
    return payload + _mac(secret, payload)


def unseal(token: str, secret: bytes, now: float) -> Grant:
    """
    The grant a callback token was issued for.

    @param now: the current time in seconds since the epoch.
    @raise Refusal: 403 when the token was not made by this server, or its
        grant expired more than L{CALLBACK_GRACE} seconds ago.
    """
    payload, mac = token[:-_MAC_LENGTH], token[-_MAC_LENGTH:]
    if (
        len(token) <= _MAC_LENGTH
        or not token.isascii()
        or not hmac.compare_digest(mac, _mac(secret, payload))
    ):
        raise Refusal(
            403,
            "bad_token",
            "This callback's token was not issued by this server; "
            "callbacks must come from an upload granted here.",
        )
    document = parse_json(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    grant = Grant(
        id=document["i"],
        key=document["k"],
        folder=document["f"],
        bucket=document["b"],
        max_size=document["s"],
        issued=document["t"],
        expires=document["e"],
        user=document["u"],
    )
    if now > grant.expires + CALLBACK_GRACE:
        raise Refusal(
            403,
            "grant_expired",
            "This upload's grant expired too long ago; ask for a new grant and "
            "upload again.",
        )
    return grant
