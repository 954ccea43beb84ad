# -*- test-case-name: tests.test_operations -*-
"""
Who may use the API: a bearer token, the user a reverse proxy vouches for,
a per-client rate limit on grants, and CORS for pages on other origins.
"""

import hmac
import math
import re
from dataclasses import dataclass, field

from twisted.internet.interfaces import IReactorTime
from twisted.web.server import Request

from osscallback.errors import Refusal
from osscallback.lru import LRUCache

_USER = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


class RateLimiter:
    """
    A token bucket per client: C{rate} requests a minute, in bursts of up
    to C{rate}.  At most C{clients} buckets are kept.
    """

    def __init__(self, clock: IReactorTime, rate: int, clients: int = 10000) -> None:
        self._clock = clock
        self._rate = rate
        self._buckets: LRUCache[str, tuple[float, float]] = LRUCache(clients)

    def take(self, client: str) -> float:
        """
        Take one request from C{client}'s bucket.

        @return: 0 if allowed, otherwise the seconds until one is.
        """
        now = self._clock.seconds()
        per_second = self._rate / 60.0
        tokens, then = self._buckets.get(client, now) or (float(self._rate), now)
        tokens = min(float(self._rate), tokens + (now - then) * per_second)
        if tokens < 1:
            self._buckets.put(client, (tokens, now), now + 3600)
            return (1 - tokens) / per_second
        self._buckets.put(client, (tokens - 1, now), now + 3600)
        return 0.0


@dataclass
class Access:
    """
    The access rules of the API.

    @ivar auth_token: the bearer token grants and lists need, if any.
    @ivar user_header: the header a reverse proxy puts the user id in.
    @ivar cors_origins: origins whose pages may call the API (C{*}: any).
    @ivar limiter: the rate limit on grants, if any.
    """

    auth_token: bytes | None = field(default=None, repr=False)
    user_header: bytes | None = None
    cors_origins: tuple[str, ...] = ()
    limiter: RateLimiter | None = None

    def cors(self, request: Request) -> bool:
        """
        Add the CORS headers to an answer for an allowed origin.

        @return: whether the request's origin, if any, is allowed.
        """
        origin = request.getHeader(b"origin")
        if origin is None:
            return True
        if "*" in self.cors_origins:
            request.setHeader(b"access-control-allow-origin", b"*")
        elif origin.decode("latin-1") in self.cors_origins:
            request.setHeader(b"access-control-allow-origin", origin)
            request.setHeader(b"vary", b"Origin")
        else:
            return False
        return True

    def preflight(self, request: Request, methods: bytes) -> None:
        """
        Answer a CORS preflight.

        @raise Refusal: 403 for an origin that is not allowed.
        """
        if not self.cors(request) or request.getHeader(b"origin") is None:
            raise Refusal(
                403, "origin_not_allowed",
                "This origin may not call the API; see --cors-origin.",
            )
        request.setHeader(b"access-control-allow-methods", methods)
        request.setHeader(
            b"access-control-allow-headers", b"authorization, content-type"
        )
        request.setHeader(b"access-control-max-age", b"600")

    def authorize(self, request: Request) -> None:
        """
        Check the bearer token, compared in constant time.

        @raise Refusal: 401 when it is missing or wrong.
        """
        if self.auth_token is None:
            return
        given = request.getHeader(b"authorization") or b""
        scheme, _, token = given.partition(b" ")
        if scheme.lower() != b"bearer" or not hmac.compare_digest(token.strip(), self.auth_token):
            raise Refusal(
                401, "unauthorized",
                "Send the server's token as Authorization: Bearer <token>.",
                {b"www-authenticate": b'Bearer realm="osscallback"'},
            )

    def user(self, request: Request) -> str | None:
        """
        The user the reverse proxy named, when a user header is configured.

        @raise Refusal: 401 when the header is missing, 400 when its value
            cannot be part of an object key.
        """
        if self.user_header is None:
            return None
        value = request.getHeader(self.user_header)
        if not value:
            raise Refusal(401, "no_user", "The request names no authenticated user.")
        user = value.decode("utf-8", "replace")
        if not _USER.match(user):
            raise Refusal(
                400, "bad_user",
                "The user id must be 1-64 letters, digits and . _ @ -.",
            )
        return user

    def throttle(self, client: str) -> None:
        """
        Count a grant for C{client}.

        @raise Refusal: 429 with Retry-After when it asks too often.
        """
        if self.limiter is None:
            return
        wait = self.limiter.take(client)
        if wait:
            raise Refusal(
                429, "too_many_requests",
                "Too many upload grants asked for; try again shortly.",
                {b"retry-after": b"%d" % math.ceil(wait)},
            )
