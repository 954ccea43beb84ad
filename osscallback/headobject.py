# -*- test-case-name: tests.test_acceptance -*-
"""
HeadObject: asking the bucket itself what it holds under a key, with a
V4-signed request, so that no record rests on a callback's word alone.
"""

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from osscallback.credentials import Credentials
from osscallback.errors import Refusal
from osscallback.httpclient import HTTPHeader
from osscallback.requestsign import signed_headers


@dataclass(frozen=True)
class ObjectFacts:
    """
    What the bucket says about a stored object.

    @ivar etag: the MD5 hex, uppercase, without quotes.
    """

    size: int
    etag: str
    content_type: str
    request_id: str


class BucketReader:
    """
    Sends HeadObject requests to one bucket.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        http: HTTPHeader,
        credentials: Credentials,
        region: str,
        bucket: str,
        timeout: float = 2.0,
    ) -> None:
        self._clock = clock
        self._http = http
        self._credentials = credentials
        self._region = region
        self._bucket = bucket
        self._timeout = timeout

    async def head(self, bucket_url: str, key: str) -> ObjectFacts | None:
        """
        The facts of C{key}, or L{None} if the bucket has no such object.

        @param bucket_url: the bucket's base URL.
        @raise Refusal: 503 when the bucket does not answer in time or
            answers with an error.
        """
        now = datetime.fromtimestamp(self._clock.seconds(), timezone.utc)
        headers = signed_headers(
            self._credentials, self._region, "HEAD", self._bucket, key, now
        )
        url = f"{bucket_url.rstrip('/')}/{quote(key, safe='/')}"
        request = Deferred.fromCoroutine(self._request(url, headers))
        request.addTimeout(self._timeout, self._clock)
        try:
            response = await request
        except Exception as e:
            self.log.warn("HeadObject {key} failed: {error}", key=key, error=repr(e))
            raise self._unavailable() from None
        if response.code == 404:
            return None
        if response.code != 200:
            self.log.warn(
                "HeadObject {key} answered {status}", key=key, status=response.code
            )
            raise self._unavailable()

        def header(name: bytes) -> str:
            values = response.headers.getRawHeaders(name) or [b""]
            return values[0].decode("latin-1")

        return ObjectFacts(
            size=int(header(b"content-length") or "-1"),
            etag=header(b"etag").strip('"').upper(),
            content_type=header(b"content-type"),
            request_id=header(b"x-oss-request-id"),
        )

    async def _request(self, url: str, headers: dict[str, str]) -> Any:
        return await self._http.head(
            url,
            headers={name.encode(): [value.encode()] for name, value in headers.items()},
            allow_redirects=False,
        )

    def _unavailable(self) -> Refusal:
        return Refusal(
            503,
            "bucket_unavailable",
            "The bucket could not confirm the upload just now; it can be "
            "confirmed later.",
        )
