"""
End to end in local mode, over loopback: the server as users run it, with
the embedded OSS taking real multipart uploads, sending signed callbacks to
our own /callback, and relaying the answers.
"""

import base64
import hashlib
import json
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import treq
from fastcrc import crc64
from treq.client import HTTPClient
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool

from osscallback.grant import GrantQuery, GrantRules
from osscallback.issuer import GrantIssuer
from osscallback.policy import V4Signer
from osscallback.tap import build_site
from tests.helpers import form_body, open_ledger, png, settings


class LocalServerCase(TestCase):
    """
    A base for tests against the server in local mode on a loopback port.

    @ivar hook: the upload hook the server gets.
    """

    hook = None

    async def start(self, **changes: Any) -> str:
        pool = HTTPConnectionPool(reactor, persistent=False)
        self.settings = settings(data_dir=self.data_dir, max_size=10 * 1024**2, **changes)
        self.ledger = await open_ledger(self, self.ledger_url())
        site, self.outbox = build_site(
            self.settings, reactor, HTTPClient(Agent(reactor, pool=pool)), self.ledger,
            self.hook,
        )
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(site)
        self.addCleanup(port.stopListening)
        return f"http://127.0.0.1:{port.getHost().port}"

    def ledger_url(self) -> str:
        """
        The database of the server under test, kept across its restarts.
        """
        if not hasattr(self, "_ledger_url"):
            self._ledger_url = f"sqlite:///{self.data_dir}.sqlite3"
        return self._ledger_url

    async def setUp(self) -> None:
        self.data_dir = self.mktemp()
        self.origin = await self.start()

    async def request(self, method: str, url: str, **kwargs: Any) -> tuple[int, Any, bytes]:
        response = await treq.request(method, url, persistent=False, **kwargs)
        return response.code, response.headers, await response.content()

    async def grant(self, query: str) -> dict[str, Any]:
        code, _, body = await self.request("GET", f"{self.origin}/policy?{query}")
        self.assertEqual(code, 200, body)
        return json.loads(body)

    async def upload(
        self, grant: dict[str, Any], filename: str, content_type: str, data: bytes,
        fields: dict[str, str] | None = None,
    ) -> tuple[int, Any, bytes]:
        form = list({**grant["fields"], **(fields or {})}.items())
        header, body = form_body(form, (filename, content_type, data))
        return await self.request(
            "POST", grant["url"], data=body, headers={b"content-type": [header]}
        )

    def assertOSSError(self, result: tuple[int, Any, bytes], status: int, code: str) -> str:
        got, headers, body = result
        self.assertEqual(got, status, body)
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"application/xml"])
        text = body.decode()
        self.assertIn(f"<Code>{code}</Code>", text)
        for element in ("Message", "RequestId", "HostId", "EC"):
            self.assertIn(f"<{element}>", text)
        return text



class LocalModeTests(LocalServerCase):
    """
    The whole upload loop on one machine.
    """

    async def test_imageUploadLoop(self) -> None:
        """
        A grant, a multipart upload of a real PNG, the callback verified by
        our own /callback, and its JSON answer relayed to the uploader with
        OSS's headers; the object is then readable with its metadata.
        """
        image = png(3, 2)
        grant = await self.grant(f"name=cat.png&size={len(image)}&type=image/png")
        code, headers, body = await self.upload(grant, "cat.png", "image/png", image)
        self.assertEqual(code, 200, body)
        answer = json.loads(body)
        self.assertEqual(answer["Status"], "OK")
        upload = answer["upload"]
        md5 = hashlib.md5(image)
        self.assertEqual(upload["key"], grant["key"])
        self.assertEqual(upload["size"], len(image))
        self.assertEqual(upload["etag"], md5.hexdigest().upper())
        self.assertEqual((upload["width"], upload["height"]), (3, 2))
        self.assertEqual(upload["content_type"], "image/png")
        self.assertEqual(headers.getRawHeaders(b"etag"), [f'"{md5.hexdigest().upper()}"'.encode()])
        self.assertEqual(headers.getRawHeaders(b"x-oss-hash-crc64ecma"), [str(crc64.xz(image)).encode()])
        self.assertEqual(len(headers.getRawHeaders(b"x-oss-request-id")[0]), 24)
        url = f"{self.origin}/oss/{quote(grant['key'])}"
        code, headers, body = await self.request("GET", url)
        self.assertEqual((code, body), (200, image))
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"image/png"])
        code, headers, body = await self.request("HEAD", url)
        self.assertEqual((code, body), (200, b""))
        self.assertEqual(headers.getRawHeaders(b"content-length"), [str(len(image)).encode()])
        self.assertEqual(headers.getRawHeaders(b"content-md5"), [base64.b64encode(md5.digest())])

    async def test_objectsSurviveRestart(self) -> None:
        """
        A stored object is still there, with its metadata, after the server
        is built anew on the same data folder.
        """
        grant = await self.grant("name=a.txt&size=5")
        code, _, body = await self.upload(grant, "a.txt", "text/plain", b"hello")
        self.assertEqual(code, 200, body)
        origin = await self.start()
        code, headers, body = await self.request("GET", f"{origin}/oss/{grant['key']}")
        self.assertEqual((code, body), (200, b"hello"))
        self.assertEqual(headers.getRawHeaders(b"content-type"), [b"text/plain"])

    async def test_tooLarge(self) -> None:
        """
        A file larger than its grant gets OSS's EntityTooLarge and is not
        stored.
        """
        grant = await self.grant("name=a.txt&size=4")
        result = await self.upload(grant, "a.txt", "text/plain", b"hello")
        self.assertOSSError(result, 400, "EntityTooLarge")
        code, _, _ = await self.request("HEAD", f"{self.origin}/oss/{grant['key']}")
        self.assertEqual(code, 404)

    async def test_expiredGrant(self) -> None:
        """
        A grant whose policy expired is refused with AccessDenied.
        """
        current = self.settings
        issuer = GrantIssuer(
            GrantRules(current.bucket, current.upload_dir, 60, 100, (), False),
            current.credentials,
            V4Signer(current.credentials, current.region),
            current.token_secret,
        )
        past = datetime.now(timezone.utc) - timedelta(minutes=5)
        grant = issuer.issue(
            GrantQuery("a.txt", 5), past, b"\x07" * 16, self.origin + "/oss/", self.origin + "/callback"
        )
        text = self.assertOSSError(await self.upload(grant, "a.txt", "text/plain", b"hello"), 403, "AccessDenied")
        self.assertIn("Policy expired", text)

    async def test_tamperedPolicy(self) -> None:
        """
        A policy changed by the browser (here: a larger size) no longer
        matches its signature.
        """
        grant = await self.grant("name=a.txt&size=1")
        policy = json.loads(base64.b64decode(grant["fields"]["policy"]))
        policy["conditions"] = [
            ["content-length-range", 0, 10**6] if isinstance(c, list) and c[0] == "content-length-range" else c
            for c in policy["conditions"]
        ]
        tampered = base64.b64encode(json.dumps(policy).encode()).decode()
        text = self.assertOSSError(
            await self.upload(grant, "a.txt", "text/plain", b"hello", {"policy": tampered}),
            403, "AccessDenied",
        )
        self.assertIn("signature", text)

    async def test_wrongSignature(self) -> None:
        """
        A wrong x-oss-signature is refused with AccessDenied.
        """
        grant = await self.grant("name=a.txt&size=5")
        self.assertOSSError(
            await self.upload(grant, "a.txt", "text/plain", b"hello", {"x-oss-signature": "0" * 64}),
            403, "AccessDenied",
        )

    async def test_otherKeyRefused(self) -> None:
        """
        Posting under another key than the grant's fails its condition.
        """
        grant = await self.grant("name=a.txt&size=5")
        text = self.assertOSSError(
            await self.upload(grant, "a.txt", "text/plain", b"hello", {"key": "uploads/mine.txt"}),
            403, "AccessDenied",
        )
        self.assertIn('Policy Condition failed: ["eq", "$key"', text)

    async def test_callbackDown(self) -> None:
        """
        When the callback server cannot be reached the uploader gets 203
        CallbackFailed and the object is kept.
        """
        self.origin = await self.start(callback_url="http://127.0.0.1:9/callback")
        grant = await self.grant("name=a.txt&size=5")
        text = self.assertOSSError(
            await self.upload(grant, "a.txt", "text/plain", b"hello"), 203, "CallbackFailed"
        )
        self.assertIn("can not connect", text)
        code, _, body = await self.request("GET", f"{self.origin}/oss/{grant['key']}")
        self.assertEqual((code, body), (200, b"hello"))

    async def test_v1SampleClientFlow(self) -> None:
        """
        A V1 grant used the way Alibaba's sample client uses it (its own
        object name under the grant's dir, lowercase 'signature') works.
        """
        self.origin = await self.start(signature_version=1)
        grant = await self.grant("")
        form = [
            ("key", grant["dir"] + "${filename}"),
            ("policy", grant["policy"]),
            ("OSSAccessKeyId", grant["accessid"]),
            ("success_action_status", "200"),
            ("callback", grant["callback"]),
            ("signature", grant["signature"]),
        ]
        header, body = form_body(form, ("holiday.txt", "text/plain", b"sunny"))
        code, _, answer = await self.request(
            "POST", grant["host"], data=body, headers={b"content-type": [header]}
        )
        self.assertEqual(code, 200, answer)
        self.assertEqual(json.loads(answer)["upload"]["key"], grant["dir"] + "holiday.txt")

    async def test_keyAfterFile(self) -> None:
        """
        A form whose key comes after the file is refused as OSS does.
        """
        grant = await self.grant("name=a.txt&size=5")
        fields = [(k, v) for k, v in grant["fields"].items() if k != "key"]
        header, body = form_body(fields, ("a.txt", "text/plain", b"hello"), after=(("key", grant["key"]),))
        text = self.assertOSSError(
            await self.request("POST", grant["url"], data=body, headers={b"content-type": [header]}),
            400, "InvalidArgument",
        )
        self.assertIn("order of the fields", text)

    async def test_notMultipart(self) -> None:
        """
        A body that is not multipart/form-data is MalformedPOSTRequest.
        """
        self.assertOSSError(
            await self.request("POST", self.origin + "/oss/", data=b"x=1"),
            400, "MalformedPOSTRequest",
        )

    async def test_cors(self) -> None:
        """
        A page on another origin may post: the preflight is answered and
        responses carry the CORS headers.
        """
        code, headers, _ = await self.request(
            "OPTIONS", self.origin + "/oss/",
            headers={b"origin": [b"http://elsewhere.test"],
                     b"access-control-request-method": [b"POST"],
                     b"access-control-request-headers": [b"content-type"]},
        )
        self.assertEqual(code, 200)
        self.assertEqual(headers.getRawHeaders(b"access-control-allow-origin"), [b"*"])
        self.assertIn(b"POST", headers.getRawHeaders(b"access-control-allow-methods")[0])
        self.assertIn(b"ETag", headers.getRawHeaders(b"access-control-expose-headers")[0])

    async def test_publicKey(self) -> None:
        """
        The emulator's callback public key is served as PEM.
        """
        code, _, body = await self.request("GET", self.origin + "/oss/callback_pub_key.pem")
        self.assertEqual(code, 200)
        self.assertTrue(body.startswith(b"-----BEGIN PUBLIC KEY-----"))
