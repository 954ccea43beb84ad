"""
The embedded OSS against Alibaba's own JavaScript SDK: forms signed by
ali-oss (calculatePostSignature for V1, signPostObjectPolicyV4 for V4) are
accepted, and the same forms altered are refused.
"""

import json
import shutil
from datetime import datetime, timedelta, timezone
from typing import Any

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue
from twisted.python.filepath import FilePath
from twisted.trial.unittest import SkipTest

from osscallback.policy import expiration_text
from tests.helpers import form_body
from tests.test_emulator import LocalServerCase

JS = FilePath(__file__).sibling("js")


class AliOSSCrossCheckTests(LocalServerCase):
    """
    Uploads signed by ali-oss.
    """

    async def sdk_fields(self, version: int, policy: dict[str, Any], date: str = "") -> dict[str, str]:
        node = shutil.which("node")
        if node is None or not JS.descendant(["node_modules", "ali-oss"]).isdir():
            raise SkipTest("needs node and ali-oss: npm ci --prefix tests/js")
        credentials = self.settings.credentials
        request = {
            "version": version,
            "policy": policy,
            "accessKeyId": credentials.access_key_id,
            "accessKeySecret": credentials.access_key_secret,
            "region": self.settings.region,
            "bucket": self.settings.bucket,
            "date": date,
        }
        out, err, code = await getProcessOutputAndValue(
            node, [JS.child("sign_post.js").path], env={}, path=JS.path,
            reactor=reactor, stdinBytes=json.dumps(request).encode(),
        )
        self.assertEqual(code, 0, err)
        return json.loads(out)

    async def post(self, fields: list[tuple[str, str]], data: bytes = b"sdk") -> tuple[int, Any, bytes]:
        header, body = form_body(fields, ("s.txt", "text/plain", data))
        return await self.request(
            "POST", self.origin + "/oss/", data=body, headers={b"content-type": [header]}
        )

    async def test_v4(self) -> None:
        """
        A V4 form signed by ali-oss is stored; with its key changed it fails
        the policy, and with its policy changed it fails the signature.
        """
        now = datetime.now(timezone.utc)
        date = now.strftime("%Y%m%dT%H%M%SZ")
        credential = (
            f"{self.settings.credentials.access_key_id}/{date[:8]}/"
            f"{self.settings.region}/oss/aliyun_v4_request"
        )
        policy = {
            "expiration": expiration_text(now + timedelta(minutes=5)),
            "conditions": [
                {"bucket": self.settings.bucket},
                {"x-oss-signature-version": "OSS4-HMAC-SHA256"},
                {"x-oss-credential": credential},
                {"x-oss-date": date},
                ["eq", "$key", "sdk/v4.txt"],
                ["content-length-range", 0, 100],
            ],
        }
        signed = await self.sdk_fields(4, policy, now.isoformat())
        fields = [
            ("key", "sdk/v4.txt"),
            ("policy", signed["policy"]),
            ("x-oss-signature-version", "OSS4-HMAC-SHA256"),
            ("x-oss-credential", credential),
            ("x-oss-date", date),
            ("x-oss-signature", signed["x-oss-signature"]),
        ]
        code, _, body = await self.post(fields)
        self.assertEqual(code, 204, body)
        code, _, body = await self.request("GET", self.origin + "/oss/sdk/v4.txt")
        self.assertEqual((code, body), (200, b"sdk"))
        code, _, body = await self.post([("key", "sdk/other.txt"), *fields[1:]])
        self.assertEqual(code, 403, body)
        self.assertIn(b"Policy Condition failed", body)
        policy["conditions"][-1] = ["content-length-range", 0, 10**9]
        forged = (await self.sdk_fields(4, policy, now.isoformat()))["policy"]
        code, _, body = await self.post([fields[0], ("policy", forged), *fields[2:]])
        self.assertEqual(code, 403, body)
        self.assertIn(b"signature", body)

    async def test_v1(self) -> None:
        """
        A V1 form signed by ali-oss is stored under its prefix; one signed
        with another secret is refused.
        """
        policy = {
            "expiration": expiration_text(datetime.now(timezone.utc) + timedelta(minutes=5)),
            "conditions": [
                {"bucket": self.settings.bucket},
                ["starts-with", "$key", "sdk/"],
            ],
        }
        signed = await self.sdk_fields(1, policy)
        fields = [
            ("key", "sdk/${filename}"),
            ("OSSAccessKeyId", signed["OSSAccessKeyId"]),
            ("policy", signed["policy"]),
            ("Signature", signed["Signature"]),
            ("success_action_status", "201"),
        ]
        code, _, body = await self.post(fields)
        self.assertEqual(code, 201, body)
        self.assertIn(b"<Key>sdk/s.txt</Key>", body)
        code, _, body = await self.post([*fields[:3], ("Signature", "AAAA" + signed["Signature"][4:])])
        self.assertEqual(code, 403, body)
