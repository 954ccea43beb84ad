"""
Tests for L{osscallback.callback}: the string to sign, the signature check
against real OSS-signed callbacks (oss-protocol.md section 5.4), and the
callback body.
"""

import base64
import json

from twisted.trial.unittest import SynchronousTestCase

from osscallback import verify_callback
from osscallback.callback import (
    callback_parameter,
    parse_claims,
    sign_callback,
    string_to_sign,
)
from osscallback.errors import Refusal
from tests.fixtures import callback_private_key, callback_public_pem, ec_public_pem

# OSS's callback public key (https://gosspublic.alicdn.com/callback_pub_key_v1.pem).
OSS_KEY = b"""-----BEGIN PUBLIC KEY-----
MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAKs/JBGzwUB2aVht4crBx3oIPBLNsjGs
C0fTXv+nvlmklvkcolvpvXLTjaxUHR3W9LXxQ2EHXAJfCB+6H2YF1k8CAwEAAQ==
-----END PUBLIC KEY-----
"""

CB1 = (
    b"/index.php?id=1&index=2",
    b"bucket=yonghu-test",
    b"kKQeGTRccDKyHB3H9vF+xYMSrmhMZjzzl2/kdD1ktNVgbWEfYTQG0G2SU/RaHBovRCE8OkQDjC3uG33esH2txA==",
)
CB2 = (
    b"/api/AliYunOssCallback",
    b"filename=headSculpture%2Fjikang2.jpg&size=108904&mimeType=image%2Fjpeg"
    b"&height=278&width=200",
    b"HHtQ8zgAo4WUCg7Iy/njrsluS+ZDmgMwIHag+vmRvIC4Ph5rxNQ3+WOfJZvzwIKQsNftEDC0PCU03hpjId3vIQ==",
)
CB3 = (
    b"/api/v3/callback/oss/TnXx5E5VyfJUyM1UdkdDu1rtnJ34EbmH",
    b'{"name":"2f7b2ccf30e9270ea920f1ab8a4037a546a2f0d5.jpg","source_name":'
    b'"1/1_hFRtDLgM_2f7b2ccf30e9270ea920f1ab8a4037a546a2f0d5.jpg","size":114020,'
    b'"pic_info":"810,539"}',
    b"e5LwzwTkP9AFAItT4YzvdJOHd0Y0wqTMWhsV/h5SG90JYGAmMd+8LQyj96R+9qUfJWjMt6suuUh7LaOryR87Dw==",
)


class StringToSignTests(SynchronousTestCase):
    """
    L{string_to_sign}.
    """

    def test_noQuery(self) -> None:
        """
        Without a query there is no C{?}: path, newline, body.
        """
        self.assertEqual(string_to_sign(b"/cb/x", b"a=1"), b"/cb/x\na=1")

    def test_queryAsReceived(self) -> None:
        """
        Only the path is percent-decoded; the query stays byte for byte,
        and C{+} is not turned into a space.
        """
        self.assertEqual(
            string_to_sign(b"/a%20b+c/%E4%B8%AD?x=%41+b&y", b"B"),
            "/a b+c/中".encode() + b"?x=%41+b&y\nB",
        )

    def test_bareQuestionMark(self) -> None:
        """
        A target ending in a bare C{?} is signed without it.
        """
        self.assertEqual(string_to_sign(b"/cb?", b""), b"/cb\n")


class VerifyCallbackTests(SynchronousTestCase):
    """
    L{verify_callback} on real OSS-signed callbacks.
    """

    def test_realCallbacksVerify(self) -> None:
        """
        CB-1 (with a query), CB-2 and CB-3 (without) verify under OSS's key.
        """
        for uri, body, authorization in (CB1, CB2, CB3):
            self.assertTrue(verify_callback(OSS_KEY, uri, body, authorization), uri)

    def test_tamperedSignature(self) -> None:
        """
        NEG-1: one changed character of the signature fails.
        """
        uri, body, authorization = CB3
        self.assertFalse(
            verify_callback(OSS_KEY, uri, body, b"e3" + authorization[2:])
        )

    def test_tamperedBody(self) -> None:
        """
        NEG-3: the body the 2024 docs show with CB-1's signature fails, as
        does any other change to the body or path.
        """
        uri, body, authorization = CB1
        self.assertFalse(
            verify_callback(OSS_KEY, uri, b"bucket=examplebucket", authorization)
        )
        self.assertFalse(verify_callback(OSS_KEY, uri + b"&x", body, authorization))

    def test_trailingQuestionMarkIsNotSigned(self) -> None:
        """
        NEG-2: a signature over path + C{"?"} does not verify CB-3, so
        C{string_to_sign} must not add one.
        """
        uri, body, authorization = CB3
        self.assertFalse(verify_callback(OSS_KEY, uri + b"?x", body, authorization))

    def test_garbageNeverRaises(self) -> None:
        """
        Malformed keys, signatures and inputs give False, never an exception.
        """
        uri, body, authorization = CB2
        ec_key = ec_public_pem()
        for key, auth in [
            (b"", authorization),
            (b"-----BEGIN PUBLIC KEY-----\nxx\n-----END PUBLIC KEY-----\n", authorization),
            (ec_key, authorization),
            (OSS_KEY, b""),
            (OSS_KEY, b"not base64!"),
            (OSS_KEY, base64.b64encode(b"short")),
            (OSS_KEY, b"\xff\xfe"),
            (None, authorization),
            (OSS_KEY, None),
        ]:
            self.assertFalse(verify_callback(key, uri, body, auth))  # type: ignore[arg-type]
        self.assertFalse(verify_callback(OSS_KEY, None, body, authorization))  # type: ignore[arg-type]

    def test_signCallbackRoundTrip(self) -> None:
        """
        L{sign_callback} signs as OSS does: what it makes verifies with the
        matching public key, and not with OSS's.
        """
        uri, body = b"/callback/tok?a=b", b"bucket=b&object=o&size=1"
        authorization = sign_callback(callback_private_key(), uri, body)
        self.assertTrue(verify_callback(callback_public_pem(), uri, body, authorization))
        self.assertFalse(verify_callback(OSS_KEY, uri, body, authorization))


class CallbackParameterTests(SynchronousTestCase):
    """
    L{callback_parameter}.
    """

    def decode(self, parameter: str) -> dict:
        return json.loads(base64.b64decode(parameter))

    def test_form(self) -> None:
        """
        The callback asks for a form body with the object's facts, and asks
        for image facts only for images.
        """
        document = self.decode(callback_parameter("http://h/callback/t", False))
        self.assertEqual(document["callbackUrl"], "http://h/callback/t")
        self.assertEqual(
            document["callbackBodyType"], "application/x-www-form-urlencoded"
        )
        self.assertIn("object=${object}", document["callbackBody"])
        self.assertIn("size=${size}", document["callbackBody"])
        self.assertNotIn("imageInfo", document["callbackBody"])
        self.assertNotIn("callbackSNI", document)
        image = self.decode(callback_parameter("https://h/callback/t", True))
        self.assertIn("width=${imageInfo.width}", image["callbackBody"])
        self.assertIs(image["callbackSNI"], True)


class ParseClaimsTests(SynchronousTestCase):
    """
    L{parse_claims}.
    """

    def test_form(self) -> None:
        """
        A form body gives the object's bucket, key, size and facts, decoded.
        """
        claims = parse_claims(
            b"application/x-www-form-urlencoded",
            b"bucket=b-1&object=uploads%2Fa%20b.png&size=12&etag=%22E%22"
            b"&mimeType=image%2Fpng&width=3&height=4&format=png",
        )
        self.assertEqual(
            (claims.bucket, claims.key, claims.size, claims.etag, claims.mime_type),
            ("b-1", "uploads/a b.png", 12, '"E"', "image/png"),
        )
        self.assertEqual((claims.width, claims.height), (3, 4))

    def test_json(self) -> None:
        """
        A JSON body works too, with numbers as numbers.
        """
        claims = parse_claims(
            b"application/json; charset=utf-8",
            b'{"bucket":"b-1","object":"k","size":7,"width":null}',
        )
        self.assertEqual((claims.bucket, claims.key, claims.size), ("b-1", "k", 7))
        self.assertIsNone(claims.width)

    def test_refusals(self) -> None:
        """
        Unreadable bodies and missing or malformed facts are refused with 400
        and a sentence naming the problem.
        """
        for content_type, body, words in [
            (None, b"\xff", "UTF-8"),
            (b"application/json", b"{", "not valid JSON"),
            (b"application/json", b"[1]", "not a JSON object"),
            (None, b"object=k&size=1", "no bucket"),
            (None, b"bucket=b&size=1", "no object"),
            (None, b"bucket=b&object=k", "size"),
            (None, b"bucket=b&object=k&size=-1", "size"),
            (None, b"bucket=b&object=k&size=1&width=x", "width"),
        ]:
            with self.assertRaises(Refusal) as caught:
                parse_claims(content_type, body)
            self.assertEqual(caught.exception.status, 400)
            self.assertIn(words, caught.exception.message)
