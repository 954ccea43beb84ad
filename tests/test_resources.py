"""
Tests for the HTTP API (L{osscallback.resources}), through the real
resource tree with L{StubTreq}.
"""

import base64
import json
from typing import Any

from treq.testing import StubTreq
from twisted.internet.defer import Deferred
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from osscallback.ledger import Ledger
from osscallback.tap import build_site
from tests.helpers import callback_target, oss_callback, settings
from tests.test_keys import KeyServer

HOST = {b"host": [b"uploads.test:8080"]}


class APITests(SynchronousTestCase):
    """
    Grants and callbacks end to end, in memory.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(1_796_300_000)
        self.keys = KeyServer()
        self.use(settings())

    def use(self, config: Any) -> None:
        # The ledger is never reached: these tests stop before recording.
        ledger = Ledger.open("sqlite:///unused.sqlite3", self.clock)
        site, _ = build_site(config, self.clock, StubTreq(self.keys), ledger)
        self.client = StubTreq(site.resource)

    def answer(self, d: "Deferred[Any]") -> tuple[int, Any, Any]:
        self.client.flush()
        response = self.successResultOf(d)
        body = self.successResultOf(response.content())
        self.assertEqual(
            response.headers.getRawHeaders(b"content-type"), [b"application/json"]
        )
        self.assertEqual(response.length, len(body))
        return response.code, json.loads(body), response.headers

    def grant(self, query: str = "name=cat.png&size=100&type=image/png") -> Any:
        code, grant, _ = self.answer(
            self.client.get(f"http://uploads.test:8080/policy?{query}", headers=HOST)
        )
        self.assertEqual(code, 200, grant)
        return grant

    def callback(self, target: bytes, body: bytes, headers: Any) -> tuple[int, Any]:
        code, answer, _ = self.answer(
            self.client.post(
                "http://uploads.test:8080" + target.decode(), data=body, headers=headers
            )
        )
        return code, answer

    def claims(self, grant: Any, **changes: Any) -> dict[str, Any]:
        claims = {
            "bucket": "local-bucket",
            "object": grant["key"],
            "etag": '"D41D8CD98F00B204E9800998ECF8427E"',
            "size": 100,
            "mimeType": "image/png",
            "width": 3,
            "height": 4,
        }
        claims.update(changes)
        return claims

    def test_grantShape(self) -> None:
        """
        A V4 grant answers url, key, fields in sending order and expire; in
        local mode the URLs point back at the host the browser used.
        """
        grant = self.grant()
        self.assertEqual(grant["url"], "http://uploads.test:8080/oss/")
        self.assertEqual(grant["expire"], 1_796_300_300)
        self.assertEqual(grant["fields"]["key"], grant["key"])
        self.assertEqual(
            list(grant["fields"]),
            [
                "key",
                "Content-Type",
                "policy",
                "x-oss-signature-version",
                "x-oss-credential",
                "x-oss-date",
                "x-oss-signature",
                "success_action_status",
                "callback",
                "x-oss-forbid-overwrite",
            ],
        )
        url, _ = callback_target(grant)
        self.assertTrue(url.startswith("http://uploads.test:8080/callback/"))
        policy = json.loads(base64.b64decode(grant["fields"]["policy"]))
        self.assertIn({"bucket": "local-bucket"}, policy["conditions"])
        self.assertIn({"callback": grant["fields"]["callback"]}, policy["conditions"])
        self.assertIn(["content-length-range", 0, 100], policy["conditions"])
        self.assertEqual(policy["expiration"], "2026-12-03T12:18:20.000Z")

    def test_v1Grant(self) -> None:
        """
        A V1 grant also carries the seven fields of Alibaba's sample client,
        and pins its unique folder.
        """
        self.use(settings(signature_version=1))
        grant = self.grant("name=x.txt")
        for name in ("accessid", "host", "policy", "signature", "expire", "callback", "dir"):
            self.assertIn(name, grant)
        self.assertEqual(grant["host"], grant["url"])
        self.assertEqual(grant["signature"], grant["fields"]["Signature"])
        self.assertTrue(grant["key"].startswith(grant["dir"]))
        policy = json.loads(base64.b64decode(grant["policy"]))
        self.assertIn(["starts-with", "$key", grant["dir"]], policy["conditions"])

    def test_realBucket(self) -> None:
        """
        With a real bucket the grant points at its endpoint and callback URL.
        """
        self.use(
            settings(
                local=False,
                endpoint="https://b-1.oss-cn-hangzhou.aliyuncs.com",
                callback_url="https://app.example.com/oss/callback",
                bucket="b-1",
            )
        )
        grant = self.grant()
        self.assertEqual(grant["url"], "https://b-1.oss-cn-hangzhou.aliyuncs.com")
        url, _ = callback_target(grant)
        self.assertTrue(url.startswith("https://app.example.com/oss/callback/"))

    def test_grantRefusals(self) -> None:
        """
        Bad grant requests are refused with 400 JSON naming the problem.
        """
        self.use(settings(allow_types=("image/*",)))
        for query, code in [
            ("size=1025", "too_large"),
            ("size=abc", "bad_size"),
            ("size=-1", "bad_size"),
            ("type=text/html", "type_not_allowed"),
            ("type=nonsense", "bad_type"),
        ]:
            status, answer, _ = self.answer(
                self.client.get(f"http://uploads.test:8080/policy?{query}", headers=HOST)
            )
            self.assertEqual((status, answer["error"]), (400, code), query)
            self.assertTrue(answer["message"].endswith("."))
        status, answer, _ = self.answer(
            self.client.get("http://x/policy", headers={b"host": [b"a b"]})
        )
        self.assertEqual((status, answer["error"]), (400, "bad_host"))

    def test_callbackRefusals(self) -> None:
        """
        Each failed check gives its status and code, with nothing accepted.
        """
        grant = self.grant()
        _, target = callback_target(grant)
        good = self.claims(grant)
        body, headers = oss_callback(target, good)
        token = target.rsplit(b"/", 1)[1]
        def signed(claims: dict[str, Any], **kw: Any) -> tuple[bytes, Any]:
            return oss_callback(target, claims, **kw)

        forged = b"/callback/" + token[:-2] + (b"AA" if token[-2:] != b"AA" else b"BB")
        cases = [
            ("tampered body", target, (body + b"&x=1", headers), 403, "bad_signature"),
            ("other object", target, signed(self.claims(grant, object="uploads/o.png")), 403, "not_granted"),
            ("other bucket", target, signed(self.claims(grant, bucket="another")), 403, "not_granted"),
            ("too big", target, signed(self.claims(grant, size=101)), 403, "not_granted"),
            ("untrusted key", target, signed(good, key_url="https://evil.test/k.pem"), 403, "untrusted_key_url"),
            ("forged token", forged, (body, headers), 403, "bad_token"),
            ("no token", b"/callback/", (body, headers), 404, "not_found"),
            ("no authorization", target, (body, {**headers, b"authorization": []}), 400, "malformed_callback"),
            ("bad key url", target, (body, {**headers, b"x-oss-pub-key-url": [b"%%%"]}), 400, "malformed_callback"),
            ("no size", target, signed({"bucket": "local-bucket", "object": grant["key"]}), 400, "malformed_callback"),
        ]
        for name, case_target, (case_body, case_headers), status, code in cases:
            got, answer = self.callback(case_target, case_body, case_headers)
            self.assertEqual((got, answer.get("error")), (status, code), name)
        self.assertEqual(
            [r.uri for r in self.keys.requests], [b"/callback_pub_key.pem"]
        )

    def test_keyServerDown(self) -> None:
        """
        When the public key cannot be fetched the callback gets 503.
        """
        self.keys.answer = (500, {}, b"")
        grant = self.grant()
        _, target = callback_target(grant)
        code, answer = self.callback(target, *oss_callback(target, self.claims(grant)))
        self.assertEqual((code, answer["error"]), (503, "key_unavailable"))

    def test_onlyPost(self) -> None:
        """
        GET on the callback is 405 in JSON, naming the method to use; the
        health check answers ok.
        """
        code, answer, headers = self.answer(self.client.get("http://x/callback/abc"))
        self.assertEqual((code, answer["error"]), (405, "method_not_allowed"))
        self.assertEqual(headers.getRawHeaders(b"allow"), [b"POST"])
        code, answer, _ = self.answer(self.client.get("http://x/healthz"))
        self.assertEqual((code, answer), (200, {"status": "ok"}))
