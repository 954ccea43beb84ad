# -*- test-case-name: tests.test_acceptance -*-
"""
Accepting an OSS upload callback: every check between the request and the
answer, in the order that keeps the cheap ones first.
"""

import base64
import binascii
from typing import Any

from twisted.internet.interfaces import IReactorTime
from twisted.web.http_headers import Headers

from osscallback.callback import parse_claims, signature_valid
from osscallback.errors import Refusal
from osscallback.grant import unseal
from osscallback.keys import PublicKeySource
from osscallback.recorder import Recorder


def _header(headers: Headers, name: bytes) -> bytes:
    values = headers.getRawHeaders(name)
    if not values or len(values) != 1 or not values[0]:
        raise Refusal(
            400,
            "malformed_callback",
            f"The callback needs exactly one {name.decode()} header; "
            "only OSS should call this URL.",
        )
    return values[0]


def key_url(headers: Headers) -> str:
    """
    The public key URL a callback names, decoded from base64.

    @raise Refusal: 400 when the header is missing or not base64 of a URL.
    """
    try:
        return base64.b64decode(
            _header(headers, b"x-oss-pub-key-url"), validate=True
        ).decode("ascii")
    except (binascii.Error, ValueError):
        raise Refusal(
            400,
            "malformed_callback",
            "The x-oss-pub-key-url header is not base64 of a URL.",
        ) from None


class CallbackAcceptor:
    """
    Decides whether a callback is a genuine report of a granted upload, and
    has it recorded.
    """

    def __init__(
        self,
        clock: IReactorTime,
        keys: PublicKeySource,
        secret: bytes,
        recorder: Recorder,
    ) -> None:
        self._clock = clock
        self._keys = keys
        self._secret = secret
        self._recorder = recorder

    async def accept(
        self, token: str, uri: bytes, headers: Headers, body: bytes, bucket_url: str
    ) -> dict[str, Any]:
        """
        Check a callback, record the upload it reports, and give the answer
        for OSS to relay to the uploader.

        @param token: the path segment after C{/callback/}.
        @param uri: the raw request target.
        @param bucket_url: the bucket's base URL, for HeadObject.
        @raise Refusal: for every check that fails.
        """
        grant = unseal(token, self._secret, self._clock.seconds())
        url = key_url(headers)
        authorization = _header(headers, b"authorization")
        public_key = await self._keys.public_key(url)
        if not signature_valid(public_key, uri, body, authorization):
            raise Refusal(
                403,
                "bad_signature",
                "The callback's signature does not verify; it was not sent by OSS "
                "or was altered on the way.",
            )
        claims = parse_claims(headers.getRawHeaders(b"content-type", [None])[0], body)
        mismatch = grant.admits(claims.bucket, claims.key, claims.size)
        if mismatch is not None:
            raise Refusal(
                403, "not_granted", f"This callback does not match its grant: {mismatch}."
            )
        return await self._recorder.record_callback(grant, claims, bucket_url)
