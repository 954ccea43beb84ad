"""
Tests for L{osscallback.policy}: the vectors of oss-protocol.md section 3.4,
computed there with Alibaba's ali-oss SDK.
"""

import base64
import json
from datetime import datetime, timedelta, timezone

from twisted.trial.unittest import SynchronousTestCase

from osscallback.credentials import Credentials
from osscallback.policy import (
    V4Signer,
    encode_policy,
    expiration_text,
    sign_v1,
    signed_form,
    v4_signing_key,
)

CREDENTIALS = Credentials("LTAIEXAMPLEAKID", "oss-test-secret-0123456789ABCDEF")
STS = Credentials(
    "LTAIEXAMPLEAKID", "oss-test-secret-0123456789ABCDEF", "CAIS.EXAMPLE.TOKEN=="
)
B1_CALLBACK = (
    "eyJjYWxsYmFja1VybCI6Imh0dHBzOi8vYXBwLmV4YW1wbGUuY29tL29zcy9jYWxsYmFjaz90PXRv"
    "azEyMyIsImNhbGxiYWNrQm9keSI6ImJ1Y2tldD0ke2J1Y2tldH0mb2JqZWN0PSR7b2JqZWN0fSZl"
    "dGFnPSR7ZXRhZ30mc2l6ZT0ke3NpemV9Jm1pbWVUeXBlPSR7bWltZVR5cGV9JnVpZD0ke3g6dWlk"
    "fSIsImNhbGxiYWNrQm9keVR5cGUiOiJhcHBsaWNhdGlvbi94LXd3dy1mb3JtLXVybGVuY29kZWQi"
    "fQ=="
)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)


def decode(policy: str) -> str:
    return base64.b64decode(policy).decode("utf-8")


class V1Tests(SynchronousTestCase):
    """
    V1 (HMAC-SHA1) policies.
    """

    def test_vectorV1A(self) -> None:
        """
        Vector V1-A: the policy bytes and Signature equal ali-oss's.
        """
        fields = signed_form(
            CREDENTIALS,
            None,
            utc(2025, 1, 1, 11),
            utc(2025, 1, 1, 12),
            "examplebucket",
            [
                ["content-length-range", 1, 10485760],
                ["starts-with", "$key", "user/eric/"],
                ["eq", "$success_action_status", "201"],
            ],
        )
        self.assertEqual(
            fields["policy"],
            "eyJleHBpcmF0aW9uIjoiMjAyNS0wMS0wMVQxMjowMDowMC4wMDBaIiwiY29uZGl0aW9ucyI6"
            "W3siYnVja2V0IjoiZXhhbXBsZWJ1Y2tldCJ9LFsiY29udGVudC1sZW5ndGgtcmFuZ2UiLDEs"
            "MTA0ODU3NjBdLFsic3RhcnRzLXdpdGgiLCIka2V5IiwidXNlci9lcmljLyJdLFsiZXEiLCIk"
            "c3VjY2Vzc19hY3Rpb25fc3RhdHVzIiwiMjAxIl1dfQ==",
        )
        self.assertEqual(fields["Signature"], "xNECS5mIlGKmrdqFFuWsE4ZwvAg=")
        self.assertEqual(fields["OSSAccessKeyId"], "LTAIEXAMPLEAKID")
        self.assertEqual(list(fields), ["OSSAccessKeyId", "policy", "Signature"])

    def test_vectorV1B(self) -> None:
        """
        Vector V1-B: a non-ASCII key prefix is written as UTF-8, not escaped,
        and the signature equals ali-oss's.
        """
        fields = signed_form(
            CREDENTIALS,
            None,
            utc(2025, 6, 30),
            utc(2025, 6, 30, 23, 59, 59),
            "examplebucket",
            [
                ["starts-with", "$key", "上传/用户42/"],
                {"callback": B1_CALLBACK},
                ["eq", "$x:uid", "42"],
                ["content-length-range", 0, 5368709120],
            ],
        )
        self.assertIn("上传/用户42/", decode(fields["policy"]))
        self.assertEqual(fields["Signature"], "ZuXsyFgRN7XaodZQC71hvTN/Rlk=")

    def test_vectorV1C(self) -> None:
        """
        Vector V1-C: signing the raw bytes of a policy gives the signature of
        those bytes; nothing is re-serialised.
        """
        raw = (
            '{ "expiration": "2025-01-01T12:00:00.000Z", '
            '"conditions": [ {"bucket": "examplebucket"} ] }'
        )
        policy = base64.b64encode(raw.encode()).decode()
        self.assertEqual(
            sign_v1(CREDENTIALS.access_key_secret, policy),
            "HNAQe9BeNfGfEl0NX8I8pXJRHog=",
        )

    def test_stsTokenInForm(self) -> None:
        """
        Under V1 an STS token is sent as the x-oss-security-token field.
        """
        fields = signed_form(
            STS, None, utc(2025, 1, 1), utc(2025, 1, 1, 1), "b-1", [["eq", "$key", "k"]]
        )
        self.assertEqual(fields["x-oss-security-token"], "CAIS.EXAMPLE.TOKEN==")


class V4Tests(SynchronousTestCase):
    """
    V4 (OSS4-HMAC-SHA256) policies.
    """

    def test_vectorV4A(self) -> None:
        """
        Vector V4-A: the signing key chain, policy and signature equal
        ali-oss's, and the V4 conditions follow the bucket.
        """
        self.assertEqual(
            v4_signing_key(CREDENTIALS.access_key_secret, "20250101", "cn-hangzhou").hex(),
            "83ecd31c3ff3ffd87e5732cac46ed123adc999bf604c620c1f1205fd737d647e",
        )
        fields = signed_form(
            CREDENTIALS,
            V4Signer(CREDENTIALS, "cn-hangzhou"),
            utc(2025, 1, 1, 10),
            utc(2025, 1, 1, 11),
            "examplebucket",
            [
                ["content-length-range", 1, 10485760],
                ["starts-with", "$key", "user/eric/"],
                ["in", "$content-type", ["image/jpeg", "image/png"]],
            ],
        )
        self.assertEqual(fields["x-oss-date"], "20250101T100000Z")
        self.assertEqual(
            fields["x-oss-credential"],
            "LTAIEXAMPLEAKID/20250101/cn-hangzhou/oss/aliyun_v4_request",
        )
        self.assertEqual(
            fields["policy"],
            "eyJleHBpcmF0aW9uIjoiMjAyNS0wMS0wMVQxMTowMDowMC4wMDBaIiwiY29uZGl0aW9ucyI6"
            "W3siYnVja2V0IjoiZXhhbXBsZWJ1Y2tldCJ9LHsieC1vc3Mtc2lnbmF0dXJlLXZlcnNpb24i"
            "OiJPU1M0LUhNQUMtU0hBMjU2In0seyJ4LW9zcy1jcmVkZW50aWFsIjoiTFRBSUVYQU1QTEVB"
            "S0lELzIwMjUwMTAxL2NuLWhhbmd6aG91L29zcy9hbGl5dW5fdjRfcmVxdWVzdCJ9LHsieC1v"
            "c3MtZGF0ZSI6IjIwMjUwMTAxVDEwMDAwMFoifSxbImNvbnRlbnQtbGVuZ3RoLXJhbmdlIiwx"
            "LDEwNDg1NzYwXSxbInN0YXJ0cy13aXRoIiwiJGtleSIsInVzZXIvZXJpYy8iXSxbImluIiwi"
            "JGNvbnRlbnQtdHlwZSIsWyJpbWFnZS9qcGVnIiwiaW1hZ2UvcG5nIl1dXX0=",
        )
        self.assertEqual(
            fields["x-oss-signature"],
            "9601c26ac6d2059399e1dc30251516b787a8121c86daf6e2f1ca54f72d8b36a4",
        )
        self.assertEqual(
            list(fields),
            [
                "policy",
                "x-oss-signature-version",
                "x-oss-credential",
                "x-oss-date",
                "x-oss-signature",
            ],
        )

    def test_vectorV4B(self) -> None:
        """
        Vector V4-B: with an STS token, a day boundary and a callback pinned,
        the policy and signature equal ali-oss's; the token is in the form
        and in the policy, before x-oss-date.
        """
        fields = signed_form(
            STS,
            V4Signer(STS, "cn-beijing"),
            utc(2024, 12, 31, 23, 59, 59),
            utc(2025, 1, 1, 0, 14, 59),
            "examplebucket",
            [
                {"callback": B1_CALLBACK},
                ["eq", "$key", "uploads/2024/12/31/abc.png"],
                ["eq", "$success_action_status", "200"],
                ["not-in", "$cache-control", ["no-cache"]],
            ],
        )
        document = json.loads(decode(fields["policy"]))
        self.assertEqual(
            document["conditions"][3], {"x-oss-security-token": "CAIS.EXAMPLE.TOKEN=="}
        )
        self.assertEqual(fields["x-oss-security-token"], "CAIS.EXAMPLE.TOKEN==")
        self.assertEqual(
            fields["x-oss-credential"],
            "LTAIEXAMPLEAKID/20241231/cn-beijing/oss/aliyun_v4_request",
        )
        self.assertEqual(
            fields["policy"],
            "eyJleHBpcmF0aW9uIjoiMjAyNS0wMS0wMVQwMDoxNDo1OS4wMDBaIiwiY29uZGl0aW9ucyI6"
            "W3siYnVja2V0IjoiZXhhbXBsZWJ1Y2tldCJ9LHsieC1vc3Mtc2lnbmF0dXJlLXZlcnNpb24i"
            "OiJPU1M0LUhNQUMtU0hBMjU2In0seyJ4LW9zcy1jcmVkZW50aWFsIjoiTFRBSUVYQU1QTEVB"
            "S0lELzIwMjQxMjMxL2NuLWJlaWppbmcvb3NzL2FsaXl1bl92NF9yZXF1ZXN0In0seyJ4LW9z"
            "cy1zZWN1cml0eS10b2tlbiI6IkNBSVMuRVhBTVBMRS5UT0tFTj09In0seyJ4LW9zcy1kYXRl"
            "IjoiMjAyNDEyMzFUMjM1OTU5WiJ9LHsiY2FsbGJhY2siOiJleUpqWVd4c1ltRmphMVZ5YkNJ"
            "NkltaDBkSEJ6T2k4dllYQndMbVY0WVcxd2JHVXVZMjl0TDI5emN5OWpZV3hzWW1GamF6OTBQ"
            "WFJ2YXpFeU15SXNJbU5oYkd4aVlXTnJRbTlrZVNJNkltSjFZMnRsZEQwa2UySjFZMnRsZEgw"
            "bWIySnFaV04wUFNSN2IySnFaV04wZlNabGRHRm5QU1I3WlhSaFozMG1jMmw2WlQwa2UzTnBl"
            "bVY5Sm0xcGJXVlVlWEJsUFNSN2JXbHRaVlI1Y0dWOUpuVnBaRDBrZTNnNmRXbGtmU0lzSW1O"
            "aGJHeGlZV05yUW05a2VWUjVjR1VpT2lKaGNIQnNhV05oZEdsdmJpOTRMWGQzZHkxbWIzSnRM"
            "WFZ5YkdWdVkyOWtaV1FpZlE9PSJ9LFsiZXEiLCIka2V5IiwidXBsb2Fkcy8yMDI0LzEyLzMx"
            "L2FiYy5wbmciXSxbImVxIiwiJHN1Y2Nlc3NfYWN0aW9uX3N0YXR1cyIsIjIwMCJdLFsibm90"
            "LWluIiwiJGNhY2hlLWNvbnRyb2wiLFsibm8tY2FjaGUiXV1dfQ==",
        )
        self.assertEqual(
            fields["x-oss-signature"],
            "e5c9a7fce90f8f7ceba68aeccd1f0a884ffa82cdaa44243bd5ef98e40ceb30cb",
        )

    def test_signingKeyDerivedOncePerDay(self) -> None:
        """
        The signer derives its key once per day, not once per policy.
        """
        signer = V4Signer(CREDENTIALS, "cn-hangzhou")
        for _ in range(3):
            signer.sign("20250101", "cG9saWN5")
        self.assertEqual(signer.derivations, 1)
        signer.sign("20250102", "cG9saWN5")
        self.assertEqual(signer.derivations, 2)

    def test_matchesAlibabaSDK(self) -> None:
        """
        Signatures equal those of Alibaba's Python SDK (alibabacloud-oss-v2)
        for several days, regions and policies.
        """
        try:
            from alibabacloud_oss_v2.signer.v4 import SignerV4
        except ImportError:
            raise self.skipTest("alibabacloud-oss-v2 is not installed") from None
        sdk = SignerV4()
        for day, region, policy in [
            ("20250101", "cn-hangzhou", "eyJhIjoxfQ=="),
            ("20261203", "ap-southeast-1", encode_policy({"expiration": "x", "conditions": []})),
            ("20240229", "eu-central-1", encode_policy({"k": "上传"})),
        ]:
            ours = V4Signer(CREDENTIALS, region).sign(day, policy)
            theirs = sdk._calc_signature(
                CREDENTIALS.access_key_secret, day, region, "oss", policy
            )
            self.assertEqual(ours, theirs)


class ExpirationTests(SynchronousTestCase):
    """
    The expiration text.
    """

    def test_utc(self) -> None:
        """
        A time in another zone is written in UTC with milliseconds and a Z.
        """
        beijing = timezone(timedelta(hours=8))
        self.assertEqual(
            expiration_text(datetime(2025, 1, 1, 8, 0, 0, tzinfo=beijing)),
            "2025-01-01T00:00:00.000Z",
        )
