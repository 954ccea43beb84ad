"""
Trust and records, end to end in local mode over loopback: every forgery we
know is refused, each upload is recorded exactly once after the bucket
confirms it, failed callbacks can be reconciled, and recorded uploads reach
the application through the hook and the webhook.
"""

import hashlib
import hmac
import json
import os
from typing import Any

from treq.client import HTTPClient
from twisted.internet import defer, reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from zope.interface import implementer

from osscallback.emulator.bucket import callback_key
from osscallback.hooks import IUploadHook, hook_answer
from osscallback.ledger import Upload
from osscallback.webhook import WebhookOutbox, webhook_signature
from tests.helpers import callback_target, open_ledger, oss_callback, postgresql_url
from tests.test_emulator import LocalServerCase


class RecordsCase(LocalServerCase):
    """
    Helpers for signed callbacks made by hand.
    """

    async def stored(self, **changes: Any) -> tuple[dict[str, Any], bytes, dict[str, Any]]:
        """
        Upload a file whose callback goes nowhere (so nothing is recorded),
        and return the grant, its callback target on this server, and the
        claims a genuine callback would make.
        """
        self.origin = await self.start(callback_url="http://127.0.0.1:9/callback", **changes)
        data = b"exactly once"
        grant = await self.grant(f"name=a.txt&size={len(data)}&type=text/plain")
        code, _, body = await self.upload(grant, "a.txt", "text/plain", data)
        self.assertEqual(code, 203, body)
        _, target = callback_target(grant)
        claims = {
            "bucket": "local-bucket",
            "object": grant["key"],
            "etag": hashlib.md5(data).hexdigest().upper(),
            "size": len(data),
            "mimeType": "text/plain",
            "reqId": "REQ",
        }
        return grant, target, claims

    async def call_back(self, target: bytes, claims: dict[str, Any]) -> tuple[int, Any]:
        """
        POST a callback signed with the emulator's own key, as OSS would.
        """
        key = callback_key(os.path.join(self.data_dir, "oss", "callback_key.pem"))
        body, headers = oss_callback(
            target, claims, key_url=f"{self.origin}/oss/callback_pub_key.pem", private_key=key
        )
        code, _, answer = await self.request(
            "POST", self.origin + target.decode(), data=body, headers=headers
        )
        return code, json.loads(answer)

    async def records(self) -> list[dict[str, Any]]:
        code, _, body = await self.request("GET", self.origin + "/uploads")
        self.assertEqual(code, 200)
        return json.loads(body)["uploads"]


class ForgeryTests(RecordsCase):
    """
    Callbacks validly signed by the (emulated) OSS that still must not be
    recorded.
    """

    async def test_genuineCallbackRecordedOnce(self) -> None:
        """
        The genuine callback is recorded; its replay is refused with 409 and
        leaves one record.
        """
        grant, target, claims = await self.stored()
        code, answer = await self.call_back(target, claims)
        self.assertEqual(code, 200, answer)
        self.assertEqual(answer["upload"]["key"], grant["key"])
        code, answer = await self.call_back(target, claims)
        self.assertEqual((code, answer["error"]), (409, "already_recorded"))
        self.assertEqual([r["key"] for r in await self.records()], [grant["key"]])

    async def test_concurrentDeliveries(self) -> None:
        """
        Two concurrent deliveries of one callback make one record: one
        answer is 200, the other 409.
        """
        _, target, claims = await self.stored()
        results = await defer.gatherResults(
            [defer.Deferred.fromCoroutine(self.call_back(target, claims)) for _ in range(2)]
        )
        self.assertEqual(sorted(code for code, _ in results), [200, 409])
        self.assertEqual(len(await self.records()), 1)

    async def test_forgeries(self) -> None:
        """
        A wrong token, the right token with another key, another bucket, a
        size beyond the grant, and claims the bucket does not confirm are
        each refused, and nothing is recorded.
        """
        grant, target, claims = await self.stored()
        other_grant = await self.grant("name=b.txt&size=5")
        _, other_target = callback_target(other_grant)
        for name, case_target, case_claims, status, code in [
            ("wrong token", other_target, claims, 403, "not_granted"),
            ("forged token", target[:-3] + b"AAA", claims, 403, "bad_token"),
            ("other key", target, {**claims, "object": "uploads/elsewhere.txt"}, 403, "not_granted"),
            ("other bucket", target, {**claims, "bucket": "someone-elses"}, 403, "not_granted"),
            ("too large", target, {**claims, "size": 10**6}, 403, "not_granted"),
            ("other etag", target, {**claims, "etag": "0" * 32}, 403, "not_confirmed"),
            ("other size", target, {**claims, "size": claims["size"] - 1}, 403, "not_confirmed"),
            ("other type", target, {**claims, "mimeType": "image/png"}, 403, "not_confirmed"),
        ]:
            got, answer = await self.call_back(case_target, case_claims)
            self.assertEqual((got, answer["error"]), (status, code), name)
        self.assertEqual(await self.records(), [])

    async def test_notInBucket(self) -> None:
        """
        A callback for an object the bucket does not hold is refused.
        """
        self.origin = await self.start()
        grant = await self.grant("name=a.txt&size=5")
        _, target = callback_target(grant)
        claims = {"bucket": "local-bucket", "object": grant["key"], "size": 5, "etag": "", "mimeType": ""}
        code, answer = await self.call_back(target, claims)
        self.assertEqual((code, answer["error"]), (403, "not_confirmed"))

    async def test_withoutConfirmation(self) -> None:
        """
        With confirmation switched off the callback's word is taken: a
        claimed ETag the bucket would deny is recorded.
        """
        _, target, claims = await self.stored(confirm=False)
        code, answer = await self.call_back(target, {**claims, "etag": "0" * 32})
        self.assertEqual(code, 200, answer)


class ReconcileTests(RecordsCase):
    """
    POST /uploads/<token>/confirm after a failed callback.
    """

    async def test_reconcile(self) -> None:
        """
        An upload whose callback failed is recorded on confirmation, once;
        a second confirmation reports the earlier record.
        """
        grant, target, _ = await self.stored()
        token = target.rsplit(b"/", 1)[1].decode()
        code, _, body = await self.request("POST", f"{self.origin}/uploads/{token}/confirm")
        answer = json.loads(body)
        self.assertEqual((code, answer["recorded"]), (200, "now"), answer)
        self.assertEqual(answer["upload"]["key"], grant["key"])
        self.assertEqual(answer["upload"]["size"], len(b"exactly once"))
        code, _, body = await self.request("POST", f"{self.origin}/uploads/{token}/confirm")
        self.assertEqual((code, json.loads(body)["recorded"]), (200, "before"))
        self.assertEqual(len(await self.records()), 1)

    async def test_nothingToConfirm(self) -> None:
        """
        Confirming a grant whose file never arrived is 404; a forged token
        is 403.
        """
        grant = await self.grant("name=a.txt&size=5")
        _, target = callback_target(grant)
        token = target.rsplit(b"/", 1)[1].decode()
        code, _, body = await self.request("POST", f"{self.origin}/uploads/{token}/confirm")
        self.assertEqual((code, json.loads(body)["error"]), (404, "not_in_bucket"))
        code, _, body = await self.request("POST", f"{self.origin}/uploads/{token[:-3]}AAA/confirm")
        self.assertEqual(code, 403)


class UploadsListTests(RecordsCase):
    """
    GET /uploads.
    """

    async def test_pages(self) -> None:
        """
        Records come newest first, with a cursor to the next page; bad
        parameters are 400.
        """
        keys = []
        for n in range(3):
            grant = await self.grant(f"name={n}.txt&size=1")
            code, _, body = await self.upload(grant, f"{n}.txt", "text/plain", b"x")
            self.assertEqual(code, 200, body)
            keys.append(grant["key"])
        code, _, body = await self.request("GET", self.origin + "/uploads?limit=2")
        page = json.loads(body)
        self.assertEqual([u["key"] for u in page["uploads"]], keys[:0:-1])
        code, _, body = await self.request("GET", f"{self.origin}/uploads?limit=2&cursor={page['next']}")
        rest = json.loads(body)
        self.assertEqual(([u["key"] for u in rest["uploads"]], rest["next"]), ([keys[0]], None))
        for query in ("limit=0", "limit=501", "limit=x", "cursor=-1"):
            code, _, body = await self.request("GET", f"{self.origin}/uploads?{query}")
            self.assertEqual((code, json.loads(body)["error"]), (400, "bad_parameter"), query)


@implementer(IUploadHook)
class ThankingHook:
    """
    A hook that answers with a message and remembers what it got.
    """

    def __init__(self) -> None:
        self.uploads: list[dict[str, Any]] = []

    async def uploaded(self, upload: dict[str, Any]) -> dict[str, Any]:
        self.uploads.append(upload)
        return {"Status": "OK", "message": f"thanks for {upload['key']}"}


class HookTests(RecordsCase):
    """
    The Python hook.
    """

    async def test_hookAnswerRelayed(self) -> None:
        """
        The hook is called with the committed record, and its answer is
        what the uploader gets back through OSS.
        """
        self.hook = ThankingHook()
        self.origin = await self.start()
        grant = await self.grant("name=a.txt&size=2")
        code, _, body = await self.upload(grant, "a.txt", "text/plain", b"hi")
        self.assertEqual((code, json.loads(body)), (200, {"Status": "OK", "message": f"thanks for {grant['key']}"}))
        (upload,) = self.hook.uploads
        self.assertGreater(upload["id"], 0)
        self.assertEqual((await self.records())[0]["id"], upload["id"])


@implementer(IUploadHook)
class AnsweringHook:
    """
    A hook that answers with whatever it was given.
    """

    def __init__(self, answer: Any) -> None:
        self.answer = answer

    def uploaded(self, upload: dict[str, Any]) -> Any:
        return self.answer


class HookAnswerTests(SynchronousTestCase):
    """
    Which hook answers are relayed.
    """

    def answer(self, given: Any) -> Any:
        called = Deferred.fromCoroutine(
            hook_answer(AnsweringHook(given), {"key": "k"}, Clock(), 3.0)
        )
        return self.successResultOf(called)

    def test_jsonObjectRelayed(self) -> None:
        """
        An answer that is a JSON object is relayed as it is.
        """
        self.assertEqual(self.answer({"Status": "OK", "n": [1, None]}), {"Status": "OK", "n": [1, None]})

    def test_unwritableAnswerReplaced(self) -> None:
        """
        An answer that cannot be written as JSON (a number beyond 64 bits, a
        key that is not text) or is not an object is logged, and L{None}
        tells the caller to answer with the record instead.
        """
        for given in ({"n": 2**70}, {1: "x"}, ["not", "an", "object"]):
            self.assertIsNone(self.answer(given), given)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 3)


class Receiver(Resource):
    """
    A webhook receiver that is down until told otherwise.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.up = False
        self.received: list[tuple[dict[bytes, bytes], bytes]] = []
        self.arrived: defer.Deferred[None] = defer.Deferred()

    def render_POST(self, request: Any) -> bytes:
        headers = {k.lower(): v[0] for k, v in request.requestHeaders.getAllRawHeaders()}
        self.received.append((headers, request.content.read()))
        if not self.arrived.called:
            self.arrived.callback(None)
        request.setResponseCode(200 if self.up else 503)
        return b""

    def next(self) -> "defer.Deferred[None]":
        self.arrived = defer.Deferred()
        return self.arrived


class WebhookTests(RecordsCase):
    """
    The webhook outbox, with a real ledger and a real receiver.
    """

    async def test_receiverDownThenUp(self) -> None:
        """
        A delivery that fails is kept and tried again after its delay; when
        the receiver is back it gets the upload, signed, and the outbox is
        empty.
        """
        receiver = Receiver()
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(Site(receiver))
        self.addCleanup(port.stopListening)
        ledger = await open_ledger(self)
        clock = Clock()
        clock.advance(1_000_000)
        http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor, persistent=False)))
        outbox = WebhookOutbox(
            clock, ledger, http, f"http://127.0.0.1:{port.getHost().port}/hook", b"s" * 32
        )
        upload = Upload("ab" * 16, "uploads/k.txt", "local-bucket", 1, "E", "text/plain",
                        None, None, None, 999_990.0, 1_000_000.0, "REQ")
        await ledger.record(upload, clock.seconds())
        first = receiver.next()
        outbox.startService()
        self.addCleanup(outbox.stopService)
        await first
        await outbox._running
        self.assertEqual(await ledger.pending(), 1)
        receiver.up = True
        second = receiver.next()
        clock.advance(2)
        await second
        await outbox._running
        self.assertEqual(await ledger.pending(), 0)
        headers, body = receiver.received[-1]
        self.assertEqual(json.loads(body)["upload"]["key"], "uploads/k.txt")
        timestamp = headers[b"x-osscallback-timestamp"].decode()
        self.assertEqual(
            headers[b"x-osscallback-signature"].decode(),
            webhook_signature(b"s" * 32, timestamp, body),
        )
        self.assertTrue(hmac.compare_digest(
            headers[b"x-osscallback-signature"][7:],
            hmac.new(b"s" * 32, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest().encode(),
        ))
        self.assertEqual(len(receiver.received), 2)


class PostgreSQLMixin:
    """
    Run a test case with its ledger on the test PostgreSQL server.
    """

    def ledger_url(self) -> str:
        if not hasattr(self, "_ledger_url"):
            self._ledger_url = postgresql_url(self)
        return self._ledger_url


class PostgreSQLForgeryTests(PostgreSQLMixin, ForgeryTests):
    """
    L{ForgeryTests} with the ledger in PostgreSQL.
    """


class PostgreSQLReconcileTests(PostgreSQLMixin, ReconcileTests):
    """
    L{ReconcileTests} with the ledger in PostgreSQL.
    """


class SignedReadTests(RecordsCase):
    """
    The embedded OSS checks signed reads, as HeadObject sends them.
    """

    async def test_signedHead(self) -> None:
        """
        A HeadObject signed with the bucket's credentials is answered; one
        signed with another secret is refused with SignatureDoesNotMatch.
        """
        from datetime import datetime, timezone

        from osscallback.credentials import Credentials
        from osscallback.requestsign import signed_headers

        grant, _, _ = await self.stored()
        now = datetime.now(timezone.utc)
        for credentials, status in [
            (self.settings.credentials, 200),
            (Credentials(self.settings.credentials.access_key_id, "not-the-secret"), 403),
        ]:
            headers = signed_headers(credentials, "local", "HEAD", "local-bucket", grant["key"], now)
            code, response_headers, _ = await self.request(
                "HEAD", f"{self.origin}/oss/{grant['key']}",
                headers={k.encode(): [v.encode()] for k, v in headers.items()},
            )
            self.assertEqual(code, status)
