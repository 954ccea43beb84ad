"""
Tests for L{osscallback.keys}: which key URLs are fetched, how, and how the
results are cached.
"""

from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from osscallback.errors import Refusal
from osscallback.keys import PublicKeyFetcher, fetch_url
from tests.fixtures import callback_public_pem, ec_public_pem

TRUSTED = ("https://keys.test/", "http://gosspublic.alicdn.com/")


class KeyServer(Resource):
    """
    A key server whose answer the test sets, counting requests.

    @ivar answer: (status, headers, body) to give, or None to never answer.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.answer: tuple[int, dict[bytes, bytes], bytes] | None = (
            200,
            {},
            callback_public_pem(),
        )
        self.requests: list[Request] = []

    def render_GET(self, request: Request) -> bytes | int:
        self.requests.append(request)
        if self.answer is None:
            return NOT_DONE_YET
        status, headers, body = self.answer
        request.setResponseCode(status)
        for name, value in headers.items():
            request.setHeader(name, value)
        return body


class Recording:
    """
    An HTTP client that records the URLs it is asked for.
    """

    def __init__(self, http: Any) -> None:
        self.http = http
        self.urls: list[str] = []
        self.kwargs: list[dict[str, Any]] = []

    def get(self, url: str, **kwargs: Any) -> "Deferred[Any]":
        self.urls.append(url)
        self.kwargs.append(kwargs)
        return self.http.get(url, **kwargs)


class FetcherTests(SynchronousTestCase):
    """
    L{PublicKeyFetcher}.
    """

    def setUp(self) -> None:
        self.clock = Clock()
        self.server = KeyServer()
        self.stub = StubTreq(self.server)
        self.http = Recording(self.stub)
        self.fetcher = PublicKeyFetcher(self.clock, self.http, TRUSTED)

    def fetch(self, url: str = "https://keys.test/k.pem") -> "Deferred[Any]":
        return Deferred.fromCoroutine(self.fetcher.public_key(url))

    def assertRefused(self, d: "Deferred[Any]", status: int) -> Refusal:
        refusal = self.failureResultOf(d, Refusal).value
        self.assertEqual(refusal.status, status)
        return refusal

    def test_fetchesTrustedKey(self) -> None:
        """
        A key under a trusted prefix is fetched once, without following
        redirects, and then served from the cache.
        """
        key = self.successResultOf(self.fetch())
        self.assertEqual(key.key_size, 512)
        self.successResultOf(self.fetch())
        self.assertEqual(len(self.server.requests), 1)
        self.assertEqual(self.http.kwargs[0], {"allow_redirects": False})

    def test_untrustedNeverFetched(self) -> None:
        """
        URLs that only look like a trusted prefix are refused with 403 and
        never fetched.
        """
        for url in [
            "https://keys.test.evil.example/k.pem",
            "https://keys.testx/k.pem",
            "http://keys.test/k.pem",
            "https://gosspublic.alicdn.com.evil.example/k.pem",
            "https://gosspublicXalicdn.com/k.pem",
            "HTTPS://keys.test/k.pem",
            "",
        ]:
            refusal = self.assertRefused(self.fetch(url), 403)
            self.assertEqual(refusal.code, "untrusted_key_url")
        self.assertEqual(self.http.urls, [])

    def test_ossKeyOverHTTPS(self) -> None:
        """
        OSS's documented http:// key URL is fetched over https://.
        """
        self.assertEqual(
            fetch_url("http://gosspublic.alicdn.com/callback_pub_key_v1.pem"),
            "https://gosspublic.alicdn.com/callback_pub_key_v1.pem",
        )
        self.successResultOf(
            self.fetch("http://gosspublic.alicdn.com/callback_pub_key_v1.pem")
        )
        self.assertEqual(
            self.http.urls, ["https://gosspublic.alicdn.com/callback_pub_key_v1.pem"]
        )

    def test_badAnswers(self) -> None:
        """
        A non-200, a redirect, a body over the size cap, a body that is not
        PEM, and a key that is not RSA each give 503.
        """
        ec_pem = ec_public_pem()
        for answer in [
            (500, {}, b"oops"),
            (302, {b"location": b"https://keys.test/other.pem"}, b""),
            (200, {}, b"A" * (10 * 1024 * 1024)),
            (200, {}, b"<html>not a key</html>"),
            (200, {}, ec_pem),
        ]:
            self.server.answer = answer
            self.clock.advance(60)
            self.assertRefused(self.fetch(), 503)
        self.assertEqual(
            [r.uri for r in self.server.requests], [b"/k.pem"] * 5
        )

    def test_timeout(self) -> None:
        """
        A key server that does not answer gives 503 after two seconds.
        """
        self.server.answer = None
        d = self.fetch()
        self.clock.advance(1.9)
        self.assertNoResult(d)
        self.clock.advance(0.1)
        self.assertRefused(d, 503)

    def test_concurrentMissesShareOneFetch(self) -> None:
        """
        Callbacks waiting for the same key share one fetch, and all get it.
        """
        self.server.answer = None
        waiting = [self.fetch() for _ in range(5)]
        self.assertEqual(self.fetcher.fetches, 1)
        request = self.server.requests[0]
        request.write(callback_public_pem())
        request.finish()
        self.stub.flush()
        for d in waiting:
            self.assertEqual(self.successResultOf(d).key_size, 512)
        self.assertEqual(len(self.server.requests), 1)

    def test_cancelledWaiterLeavesOthers(self) -> None:
        """
        One waiter giving up does not cancel the fetch the others wait for.
        """
        self.server.answer = None
        first, second = self.fetch(), self.fetch()
        first.cancel()
        self.failureResultOf(first)
        request = self.server.requests[0]
        request.write(callback_public_pem())
        request.finish()
        self.stub.flush()
        self.successResultOf(second)

    def test_failureCachedBriefly(self) -> None:
        """
        After a failure the key server is left alone for a few seconds,
        then asked again, and its recovered key is used.
        """
        self.server.answer = (500, {}, b"")
        self.assertRefused(self.fetch(), 503)
        self.assertRefused(self.fetch(), 503)
        self.assertEqual(len(self.server.requests), 1)
        self.server.answer = (200, {}, callback_public_pem())
        self.clock.advance(5)
        self.successResultOf(self.fetch())
        self.assertEqual(len(self.server.requests), 2)

    def test_keyExpires(self) -> None:
        """
        A cached key is fetched again after a day.
        """
        self.successResultOf(self.fetch())
        self.clock.advance(24 * 3600)
        self.successResultOf(self.fetch())
        self.assertEqual(len(self.server.requests), 2)
