# -*- test-case-name: tests.test_keys -*-
"""
Fetching the public keys that OSS callbacks name, without trusting them.

Only URLs under a trusted prefix are fetched at all.  Keys are cached; one
fetch serves every callback waiting for the same URL; failures are cached
only briefly, so a key server that recovers is used again.
"""

from typing import Protocol

from cryptography.hazmat.primitives.asymmetric import rsa
from treq import collect
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from osscallback.callback import load_public_key
from osscallback.errors import Refusal
from osscallback.httpclient import HTTPGetter
from osscallback.lru import LRUCache
from osscallback.metrics import Metrics

# OSS documents its key URL with http://; fetch it over https regardless.
_UPGRADE = ("http://gosspublic.alicdn.com/", "https://gosspublic.alicdn.com/")


class PublicKeySource(Protocol):
    """
    Where callbacks' public keys come from.
    """

    async def public_key(self, url: str) -> rsa.RSAPublicKey:
        """
        The RSA public key named by C{url}.

        @raise Refusal: when it is not trusted or cannot be had.
        """


class _Unavailable:
    """
    The cache's mark for a key that could not be fetched.
    """


class _TooLarge(Exception):
    pass


def fetch_url(url: str) -> str:
    """
    The URL actually fetched for a key URL: the documented http:// form of
    OSS's own key server is upgraded to https://.
    """
    plain, secure = _UPGRADE
    if url.startswith(plain):
        return secure + url[len(plain) :]
    return url


class PublicKeyFetcher:
    """
    Fetches and caches the RSA public keys that callbacks name.

    @ivar fetches: how many downloads were started so far.
    """

    log = Logger()

    def __init__(
        self,
        reactor: IReactorTime,
        http: HTTPGetter,
        trusted_prefixes: tuple[str, ...],
        *,
        timeout: float = 2.0,
        max_size: int = 16 * 1024,
        ttl: float = 24 * 3600.0,
        failure_ttl: float = 5.0,
        capacity: int = 32,
        metrics: Metrics | None = None,
    ) -> None:
        self._reactor = reactor
        self._http = http
        self._trusted = trusted_prefixes
        self._timeout = timeout
        self._max_size = max_size
        self._ttl = ttl
        self._failure_ttl = failure_ttl
        self._cache: LRUCache[str, rsa.RSAPublicKey | _Unavailable] = LRUCache(
            capacity
        )
        self._waiting: dict[str, list[Deferred[rsa.RSAPublicKey]]] = {}
        self.fetches = 0
        self._metrics = metrics or Metrics()

    def trusted(self, url: str) -> bool:
        """
        Whether C{url} starts with a trusted prefix, compared exactly.
        """
        return any(url.startswith(prefix) for prefix in self._trusted)

    async def public_key(self, url: str) -> rsa.RSAPublicKey:
        """
        The RSA public key at C{url}.

        @raise Refusal: 403 for an untrusted URL, which is never fetched;
            503 when the key cannot be had in time.
        """
        if not self.trusted(url):
            raise Refusal(
                403,
                "untrusted_key_url",
                "The callback's public key URL is not a trusted one; only OSS's "
                "own key server is trusted unless --trust-key-url says otherwise.",
            )
        cached = self._cache.get(url, self._reactor.seconds())
        self._metrics.key_cache.add("miss" if cached is None else "hit")
        if cached is None:
            return await self._join(url)
        if isinstance(cached, _Unavailable):
            raise self._unavailable()
        return cached

    def _unavailable(self) -> Refusal:
        return Refusal(
            503,
            "key_unavailable",
            "The callback's public key could not be fetched just now; "
            "the upload can be confirmed later.",
        )

    def _join(self, url: str) -> "Deferred[rsa.RSAPublicKey]":
        waiter: Deferred[rsa.RSAPublicKey] = Deferred()
        if url in self._waiting:
            self._waiting[url].append(waiter)
            return waiter
        self._waiting[url] = [waiter]
        self.fetches += 1
        download = Deferred.fromCoroutine(self._download(url))
        download.addTimeout(self._timeout, self._reactor)
        download.addBoth(self._settle, url)
        return waiter

    async def _download(self, url: str) -> rsa.RSAPublicKey:
        response = await self._http.get(fetch_url(url), allow_redirects=False)
        chunks: list[bytes] = []
        received = 0

        def collector(data: bytes) -> None:
            nonlocal received
            received += len(data)
            if received > self._max_size:
                raise _TooLarge(f"the body exceeds {self._max_size} bytes")
            chunks.append(data)

        await collect(response, collector)
        if response.code != 200:
            raise ValueError(f"the key server answered {response.code}")
        return load_public_key(b"".join(chunks))

    def _settle(self, result: rsa.RSAPublicKey | Failure, url: str) -> None:
        waiters = self._waiting.pop(url)
        now = self._reactor.seconds()
        if isinstance(result, Failure):
            reason = f"{result.type.__name__}: {result.getErrorMessage()}"[:200]
            self.log.warn(
                "public key {url} unavailable: {reason}", url=url, reason=reason
            )
            self._cache.put(url, _Unavailable(), now + self._failure_ttl)
            self._metrics.key_fetches.add("failed")
            for waiter in waiters:
                if not waiter.called:
                    waiter.errback(self._unavailable())
            return
        self.log.info("public key {url} fetched", url=url)
        self._metrics.key_fetches.add("ok")
        self._cache.put(url, result, now + self._ttl)
        for waiter in waiters:
            if not waiter.called:
                waiter.callback(result)
