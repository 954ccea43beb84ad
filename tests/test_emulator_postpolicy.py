"""
Tests for L{osscallback.emulator.postpolicy}: every condition form, the V1
and V4 signature checks, STS tokens and expiry.
"""

import base64
import json
from datetime import datetime, timedelta, timezone
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from osscallback.credentials import Credentials
from osscallback.emulator.errors import OSSError
from osscallback.emulator.multipart import PostForm, SpooledFile
from osscallback.emulator.postpolicy import BucketAccess, check_post
from osscallback.policy import V4Signer, expiration_text, sign_v1, signed_form

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)
CREDENTIALS = Credentials("LTAIEMU", "emulator-secret")
ACCESS = BucketAccess("b-1", "local", CREDENTIALS)


def form(fields: dict[str, str], size: int = 5, content_type: str = "text/plain") -> PostForm:
    spooled = SpooledFile("/nonexistent", "a.txt", content_type, size, b"", 0, b"")
    return PostForm(list(fields.items()), spooled)


def v4_form(conditions: list[Any], extra: dict[str, str] | None = None,
            access: BucketAccess = ACCESS, **kw: Any) -> PostForm:
    fields = signed_form(
        access.credentials, V4Signer(access.credentials, access.region), NOW,
        NOW + timedelta(minutes=5), access.bucket, conditions,
    )
    return form({"key": "u/a.txt", **fields, **(extra or {})}, **kw)


class ConditionTests(SynchronousTestCase):
    """
    Policy conditions, checked on a V4-signed form.
    """

    def refused(self, posted: PostForm, access: BucketAccess = ACCESS, now: datetime = NOW) -> OSSError:
        with self.assertRaises(OSSError) as caught:
            check_post(posted, access, now)
        return caught.exception

    def test_allFormsPass(self) -> None:
        """
        Exact, eq, starts-with, in, not-in and content-length-range pass
        when the form meets them; values are the unexpanded ones.
        """
        check_post(
            v4_form(
                [
                    {"key": "u/${filename}"},
                    ["eq", "$success_action_status", "200"],
                    ["starts-with", "$key", "u/"],
                    ["starts-with", "$x:anything", ""],
                    ["in", "$content-type", ["text/plain", "image/png"]],
                    ["not-in", "$cache-control", ["no-cache"]],
                    ["content-length-range", 5, 5],
                ],
                {"key": "u/${filename}", "success_action_status": "200"},
            ),
            ACCESS,
            NOW,
        )

    def test_eachFormFails(self) -> None:
        """
        Each condition form refuses a form that breaks it with
        AccessDenied naming the condition, or OSS's size errors.
        """
        for condition, extra, code in [
            ({"key": "u/b.txt"}, {}, "AccessDenied"),
            (["eq", "$key", "u/b.txt"], {}, "AccessDenied"),
            (["starts-with", "$key", "v/"], {}, "AccessDenied"),
            (["in", "$content-type", ["image/png"]], {}, "AccessDenied"),
            (["not-in", "$content-type", ["text/plain"]], {}, "AccessDenied"),
            (["eq", "$x:missing", "1"], {}, "AccessDenied"),
            (["content-length-range", 0, 4], {}, "EntityTooLarge"),
            (["content-length-range", 6, 9], {}, "EntityTooSmall"),
            ({"bucket": "other"}, {}, "AccessDenied"),
        ]:
            error = self.refused(v4_form([condition], extra))
            self.assertEqual(error.code, code, condition)
            if code == "AccessDenied":
                self.assertIn("Policy Condition failed: " + json.dumps(condition), error.message)
                self.assertEqual(error.ec, "0006-00000227")

    def test_invalidPolicies(self) -> None:
        """
        Malformed conditions are InvalidPolicyDocument.
        """
        for condition in [
            {"key": "a", "bucket": "b-1"},
            ["content-length-range", 9, 1],
            ["content-length-range", "0", 9],
            ["unknown-op", "$key", "x"],
            ["eq", "key", "x"],
            ["in", "$key", "not a list"],
            "text",
        ]:
            self.assertEqual(self.refused(v4_form([condition])).code, "InvalidPolicyDocument", condition)

    def test_policyDocument(self) -> None:
        """
        A policy that is not base64 JSON, has no conditions or a bad
        expiration is InvalidPolicyDocument; an expired one is
        AccessDenied.
        """
        for document in [b"not json", b"[]", b'{"expiration":"2030-01-01T00:00:00Z"}',
                         b'{"expiration":"tomorrow","conditions":[{"bucket":"b-1"}]}']:
            policy = base64.b64encode(document).decode()
            posted = form({"key": "k", "OSSAccessKeyId": "LTAIEMU", "policy": policy,
                           "Signature": sign_v1("emulator-secret", policy)})
            self.assertEqual(self.refused(posted).code, "InvalidPolicyDocument", document)
        posted = v4_form([["eq", "$key", "u/a.txt"]])
        error = self.refused(posted, now=NOW + timedelta(minutes=6))
        self.assertEqual((error.code, error.message), ("AccessDenied", "Invalid according to Policy: Policy expired."))


class SignatureTests(SynchronousTestCase):
    """
    V1 and V4 signatures and credentials.
    """

    def refused(self, posted: PostForm, access: BucketAccess = ACCESS) -> OSSError:
        with self.assertRaises(OSSError) as caught:
            check_post(posted, access, NOW)
        return caught.exception

    def v1(self, secret: str = "emulator-secret", key_id: str = "LTAIEMU") -> dict[str, str]:
        policy = base64.b64encode(json.dumps(
            {"expiration": expiration_text(NOW + timedelta(minutes=1)), "conditions": [{"bucket": "b-1"}]}
        ).encode()).decode()
        return {"key": "k", "OSSAccessKeyId": key_id, "policy": policy, "Signature": sign_v1(secret, policy)}

    def test_v1(self) -> None:
        """
        A V1 form signed with the bucket's secret passes; another secret,
        another key id, or an incomplete trio is refused.
        """
        check_post(form(self.v1()), ACCESS, NOW)
        self.assertEqual(self.refused(form(self.v1(secret="other"))).code, "AccessDenied")
        self.assertEqual(self.refused(form(self.v1(key_id="LTAIX"))).code, "InvalidAccessKeyId")
        partial = self.v1()
        del partial["Signature"]
        self.assertEqual(self.refused(form(partial)).code, "InvalidArgument")
        self.assertEqual(self.refused(form({"key": "k"})).code, "AccessDenied")

    def test_v4Fields(self) -> None:
        """
        A V4 form with a wrong region, a bad credential, a date too old or
        a changed signature is refused.
        """
        base = v4_form([["eq", "$key", "u/a.txt"]])
        fields = dict(base.fields)
        for change, code in [
            ({"x-oss-signature": "0" * 64}, "AccessDenied"),
            ({"x-oss-credential": fields["x-oss-credential"].replace("/local/", "/cn-hangzhou/")}, "InvalidArgument"),
            ({"x-oss-credential": "LTAIEMU/20261203/local/oss"}, "InvalidArgument"),
            ({"x-oss-credential": fields["x-oss-credential"].replace("LTAIEMU", "LTAIX")}, "InvalidAccessKeyId"),
            ({"x-oss-date": "20261203"}, "InvalidArgument"),
            ({"x-oss-signature-version": "OSS2"}, "InvalidArgument"),
        ]:
            error = self.refused(form({**fields, **change}))
            self.assertEqual(error.code, code, change)
        with self.assertRaises(OSSError) as caught:
            check_post(base, ACCESS, NOW + timedelta(days=8))
        self.assertEqual(caught.exception.code, "AccessDenied")

    def test_v4RequiredConditions(self) -> None:
        """
        A V4 policy without the x-oss-* conditions is refused even when
        correctly signed.
        """
        policy = base64.b64encode(json.dumps(
            {"expiration": expiration_text(NOW + timedelta(minutes=1)), "conditions": [{"bucket": "b-1"}]}
        ).encode()).decode()
        fields = dict(v4_form([]).fields)
        fields["policy"] = policy
        fields["x-oss-signature"] = V4Signer(CREDENTIALS, "local").sign("20261203", policy)
        self.assertEqual(self.refused(form(fields)).code, "InvalidPolicyDocument")

    def test_stsToken(self) -> None:
        """
        With STS credentials the token must be in the form and the policy.
        """
        sts = BucketAccess("b-1", "local", Credentials("LTAIEMU", "emulator-secret", "TOKEN"))
        posted = v4_form([["eq", "$key", "u/a.txt"]], access=sts)
        check_post(posted, sts, NOW)
        fields = dict(posted.fields)
        del fields["x-oss-security-token"]
        self.assertEqual(self.refused(form(fields), sts).code, "InvalidAccessKeyId")
        without_token = v4_form([["eq", "$key", "u/a.txt"]])
        self.assertEqual(
            self.refused(form({**dict(without_token.fields), "x-oss-security-token": "TOKEN"}), sts).code,
            "InvalidPolicyDocument",
        )
