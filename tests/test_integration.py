"""
Loopback integration: the real site on a real port, with the callback's
public key fetched over real HTTP from a key server on another port.
"""

import json
from typing import Any

import treq
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.python.filepath import FilePath
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.server import Site

from osscallback.site import make_site
from osscallback.tap import build_site
from tests.helpers import callback_target, open_ledger, oss_callback, settings
from tests.test_keys import KeyServer


class LoopbackTests(TestCase):
    """
    The whole server over loopback.
    """

    async def listen(self, site: Site) -> str:
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
        self.addCleanup(port.stopListening)
        return f"http://127.0.0.1:{port.getHost().port}"

    async def setUp(self) -> None:
        self.keys = KeyServer()
        key_origin = await self.listen(Site(self.keys))
        pool = HTTPConnectionPool(reactor, persistent=False)
        http = HTTPClient(Agent(reactor, pool=pool))
        site, _ = build_site(
            settings(
                trust_key_urls=(key_origin + "/",),
                data_dir=self.mktemp(),
                confirm=False,
            ),
            reactor,
            http,
            await open_ledger(self),
        )
        self.access_log = self.mktemp()
        site.logPath = self.access_log
        self.origin = await self.listen(site)
        self.key_url = key_origin + "/callback_pub_key.pem"

    async def fetch(self, method: str, path: str, **kwargs: Any) -> tuple[int, Any, bytes]:
        response = await treq.request(
            method, self.origin + path, persistent=False, **kwargs
        )
        return response.code, response.headers, await response.content()

    async def test_uploadGrantAndCallback(self) -> None:
        """
        A grant from /policy leads to a callback that is verified with a key
        fetched over HTTP, and accepted; the access log hides its token.
        """
        code, _, body = await self.fetch("GET", "/policy?name=a.txt&size=5")
        self.assertEqual(code, 200)
        grant = json.loads(body)
        url, target = callback_target(grant)
        self.assertTrue(url.startswith(self.origin + "/callback/"))
        claims = {"bucket": "local-bucket", "object": grant["key"], "size": 5,
                  "etag": '"E"', "mimeType": "text/plain"}
        callback_body, headers = oss_callback(target, claims, key_url=self.key_url)
        code, response_headers, body = await self.fetch(
            "POST", target.decode(), data=callback_body, headers=headers
        )
        self.assertEqual(code, 200, body)
        self.assertEqual(json.loads(body)["upload"]["key"], grant["key"])
        self.assertEqual(
            response_headers.getRawHeaders(b"content-type"), [b"application/json"]
        )
        self.assertEqual(len(self.keys.requests), 1)
        with open(self.access_log, encoding="utf-8") as f:
            log = f.read()
        token = target.decode().rsplit("/", 1)[1]
        self.assertIn("POST /callback/<token> HTTP/1.1", log)
        self.assertNotIn(token, log)

    async def test_bodyTooLarge(self) -> None:
        """
        A body over the cap is answered 413 with a JSON reason.
        """
        code, headers, body = await self.fetch(
            "POST", "/callback/abc", data=b"x" * (2 * 1024 * 1024)
        )
        self.assertEqual(code, 413)
        self.assertEqual(json.loads(body)["error"], "body_too_large")

    async def test_browserClient(self) -> None:
        """
        The browser client is served at / with its content types and
        nosniff; unknown files are 404.
        """
        code, headers, body = await self.fetch("GET", "/")
        self.assertEqual(code, 200)
        self.assertIn(b'<script src="app.js" defer></script>', body)
        self.assertEqual(headers.getRawHeaders(b"x-content-type-options"), [b"nosniff"])
        (policy,) = headers.getRawHeaders(b"content-security-policy")
        self.assertIn(b"script-src 'self';", policy)
        self.assertIn(b"object-src 'none'", policy)
        code, headers, _ = await self.fetch("GET", "/app.js")
        self.assertEqual(
            headers.getRawHeaders(b"content-type"), [b"text/javascript; charset=utf-8"]
        )
        code, _, _ = await self.fetch("GET", "/missing.js")
        self.assertEqual(code, 404)


class NoListingTests(TestCase):
    """
    Static folders never list their files.
    """

    async def test_noDirectoryListing(self) -> None:
        """
        A folder without an index page is 404, not a listing.
        """
        client = FilePath(self.mktemp())
        client.child("sub").makedirs()
        client.child("sub").child("secret.txt").setContent(b"x")
        client.child("index.html").setContent(b"<!doctype html>")
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            make_site({}, client)
        )
        self.addCleanup(port.stopListening)
        response = await treq.get(
            f"http://127.0.0.1:{port.getHost().port}/sub/", persistent=False
        )
        body = await response.content()
        self.assertEqual(response.code, 404)
        self.assertNotIn(b"secret.txt", body)
