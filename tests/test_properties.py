"""
Property tests (hypothesis): hostile bytes everywhere a request can carry
them, the string to sign against an independent model, and the emulator's
policy checker against generated grants and forms.
"""

import base64
import json
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl, quote_from_bytes

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.logger import globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from osscallback.callback import form_fields, string_to_sign
from osscallback.credentials import Credentials
from osscallback.emulator.errors import OSSError
from osscallback.emulator.multipart import PostForm, SpooledFile
from osscallback.emulator.postpolicy import BucketAccess, check_post
from osscallback.grant import GrantQuery, GrantRules
from osscallback.issuer import GrantIssuer
from osscallback.jsontext import compact_json
from osscallback.ledger import Ledger
from osscallback.policy import V4Signer
from osscallback.tap import build_site
from tests.helpers import settings as server_settings
from tests.test_keys import KeyServer

# Header values HTTP can carry: no CR, LF or NUL.
header_bytes = st.binary(max_size=300).filter(lambda b: not set(b) & {0, 10, 13})
HEADERS = (b"authorization", b"x-oss-pub-key-url", b"content-type", b"x-oss-bucket", b"content-md5")
quick = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def model_string_to_sign(uri: bytes, body: bytes) -> bytes:
    """
    The string OSS signs, written independently: decode %XX escapes of the
    path byte by byte, keep a non-empty query as it came, add LF and body.
    """
    at = uri.find(b"?")
    path, query = (uri, b"") if at < 0 else (uri[:at], uri[at + 1 :])
    decoded = bytearray()
    index = 0
    while index < len(path):
        byte = path[index]
        hexdigits = path[index + 1 : index + 3]
        if byte == ord("%") and len(hexdigits) == 2 and all(c in b"0123456789abcdefABCDEF" for c in hexdigits):
            decoded.append(int(hexdigits, 16))
            index += 3
        else:
            decoded.append(byte)
            index += 1
    signed = bytes(decoded) + (b"?" + query if query else b"")
    return signed + b"\n" + body


class StringToSignTests(SynchronousTestCase):
    """
    L{string_to_sign} against the model.
    """

    @quick
    @given(st.binary(max_size=200), st.binary(max_size=200))
    def test_matchesModel(self, uri: bytes, body: bytes) -> None:
        """
        For any request target and body, the string to sign equals the
        independent model's.
        """
        self.assertEqual(string_to_sign(uri, body), model_string_to_sign(uri, body))


# Form text as a UTF-8 body decodes: escapes, pluses, separators, non-ASCII.
_FORM_TEXT = st.text(
    alphabet=st.sampled_from("a=&%+2FC3A9\u00e9") | st.characters(exclude_categories=("Cs",)),
    max_size=60,
)


class FormFieldsTests(SynchronousTestCase):
    """
    L{form_fields} reads forms as the standard library does.
    """

    @settings(max_examples=2000, deadline=None)
    @given(_FORM_TEXT)
    def test_matchesStandardLibrary(self, text: str) -> None:
        """
        For any text (malformed and partial escapes, repeated and empty
        names, pairs without C{=}), the fields are those of
        C{dict(parse_qsl(text, keep_blank_values=True))}.
        """
        self.assertEqual(form_fields(text), dict(parse_qsl(text, keep_blank_values=True)))


# What policies, tokens and answers hold: text, whole numbers, lists and objects.
_JSON = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


class CompactJSONTests(SynchronousTestCase):
    """
    L{compact_json} writes what the standard library writes.
    """

    @quick
    @given(_JSON)
    def test_matchesStandardLibrary(self, value: Any) -> None:
        """
        For any document of text (control characters, quotes and non-ASCII
        included), whole numbers, lists and objects, the bytes are those of
        json.dumps(separators=(",", ":"), ensure_ascii=False) in UTF-8, on
        which the signed policy vectors were computed.
        """
        expected = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        self.assertEqual(compact_json(value), expected.encode("utf-8"))


class FuzzCase(SynchronousTestCase):
    """
    The real site (its request class, limits and resources) over an
    in-memory transport, with a ledger that is never opened: a request that
    reached it would never be answered.
    """

    def setUp(self) -> None:
        self.clock = MemoryReactorClock()
        self.clock.advance(1_796_300_000)
        ledger = Ledger.open("sqlite:///never-opened.sqlite3", self.clock)
        self.keys = StubTreq(KeyServer())
        self.site, _ = build_site(
            server_settings(rate_limit=0), self.clock, self.keys, ledger
        )
        self.client = StubTreq(self.site.resource)
        self.failures: list[dict[str, Any]] = []
        observer = lambda event: self.failures.append(event) if event.get("log_failure") else None
        globalLogPublisher.addObserver(observer)
        self.addCleanup(globalLogPublisher.removeObserver, observer)

    def raw(self, method: bytes, target: bytes, headers: dict[bytes, bytes], body: bytes) -> int:
        """
        Send one request as bytes to the real site; the answer's status.
        """
        channel = self.site.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        channel.callLater = self.clock.callLater
        transport = StringTransport()
        channel.makeConnection(transport)
        lines = [method + b" " + target + b" HTTP/1.1", b"Host: x"]
        lines += [name + b": " + value for name, value in headers.items()]
        lines.append(b"Content-Length: %d" % len(body))
        channel.dataReceived(b"\r\n".join(lines) + b"\r\n\r\n" + body)
        self.keys.flush()
        self.clock.advance(3)  # past any key fetch timeout
        answer = transport.value()
        self.assertTrue(answer.startswith(b"HTTP/1.1 "), answer[:200])
        channel.connectionLost(None)
        return int(answer[9:12])

    def status(self, d: Any) -> int:
        self.client.flush()
        response = self.successResultOf(d)
        self.successResultOf(response.content())
        return response.code


class CallbackFuzzTests(FuzzCase):
    """
    Hostile callbacks.
    """

    @quick
    @given(
        st.binary(max_size=120),
        st.dictionaries(st.sampled_from(HEADERS), header_bytes, max_size=5),
        st.binary(max_size=2000),
    )
    def test_arbitraryCallbacks(self, token: bytes, headers: dict[bytes, bytes], body: bytes) -> None:
        """
        Any bytes in the token, the headers and the body get a designed
        answer (never a 5xx but 503), log no unexpected failure, and record
        nothing.
        """
        target = b"/callback/" + quote_from_bytes(token, safe="").encode()
        code = self.raw(b"POST", target, headers, body)
        self.assertIn(code, (400, 403, 404, 405, 409, 413, 503))
        self.assertEqual(self.failures, [])

    @quick
    @given(st.binary(min_size=1, max_size=300))
    def test_arbitraryKeyURL(self, url: bytes) -> None:
        """
        Any key URL in the header, base64 or not, is refused before any
        fetch unless it is trusted.
        """
        code = self.status(self.client.post(
            "http://x/callback/abc", data=b"bucket=b&object=o&size=1",
            headers={b"x-oss-pub-key-url": [base64.b64encode(url)], b"authorization": [b"AAAA"]},
        ))
        self.assertIn(code, (400, 403, 503))
        self.assertEqual(self.failures, [])


class PolicyFuzzTests(FuzzCase):
    """
    Hostile grant requests.
    """

    @quick
    @given(st.lists(st.tuples(st.sampled_from(["name", "size", "type", "x"]), st.binary(max_size=80)), max_size=6))
    def test_arbitraryQueries(self, pairs: list[tuple[str, bytes]]) -> None:
        """
        Any query parameters give a grant or a 400, nothing else.
        """
        query = "&".join(f"{name}={quote_from_bytes(value, safe='')}" for name, value in pairs)
        code = self.status(self.client.get(f"http://x/policy?{query}", headers={b"host": [b"h.test"]}))
        self.assertIn(code, (200, 400))
        self.assertEqual(self.failures, [])


CREDENTIALS = Credentials("LTAIPROP", "property-secret")
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=timezone.utc)


def posted_form(grant: dict[str, Any], size: int, content_type: str) -> PostForm:
    return PostForm(
        list(grant["fields"].items()),
        SpooledFile("/nonexistent", "f.bin", content_type, size, b"", 0, b""),
    )


class PolicyCheckerTests(SynchronousTestCase):
    """
    The emulator's policy checker against grants this server issues.
    """

    @quick
    @given(
        version=st.sampled_from([1, 4]),
        limit=st.integers(min_value=0, max_value=10**9),
        size=st.integers(min_value=0, max_value=10**9),
        mime=st.sampled_from([None, "image/png", "text/plain"]),
        posted_type=st.sampled_from(["image/png", "text/plain", "application/pdf"]),
        name=st.text(max_size=30),
        seconds=st.integers(min_value=0, max_value=400),
    )
    def test_acceptsExactlyWhatWasGranted(
        self, version: int, limit: int, size: int, mime: str | None,
        posted_type: str, name: str, seconds: int,
    ) -> None:
        """
        A form built from a grant passes the checker exactly when its file
        is within the granted size and type and the grant has not expired.
        """
        issuer = GrantIssuer(
            GrantRules("b-1", "u/", 300, 10**9, (), by_prefix=version == 1),
            CREDENTIALS,
            V4Signer(CREDENTIALS, "local") if version == 4 else None,
            b"s" * 32,
        )
        grant = issuer.issue(GrantQuery(name or None, limit, mime), NOW, b"\x01" * 16,
                             "http://h/oss/", "http://h/callback")
        form = posted_form(grant, size, posted_type)
        if mime is None:
            form = PostForm([f for f in form.fields if f[0] != "Content-Type"], form.file)
        expected = size <= limit and seconds <= 300
        try:
            check_post(form, BucketAccess("b-1", "local", CREDENTIALS), NOW + timedelta(seconds=seconds))
        except OSSError as error:
            self.assertFalse(expected, error.message)
        else:
            self.assertTrue(expected)

    @quick
    @given(field=st.sampled_from(["key", "policy", "success_action_status", "callback",
                                  "x-oss-signature", "x-oss-date", "x-oss-credential"]),
           value=st.text(min_size=1, max_size=40))
    def test_anyChangedFieldRefused(self, field: str, value: str) -> None:
        """
        Changing any pinned or signed field of a granted form makes the
        checker refuse it.
        """
        issuer = GrantIssuer(GrantRules("b-1", "u/", 300, 1000, (), False), CREDENTIALS,
                             V4Signer(CREDENTIALS, "local"), b"s" * 32)
        grant = issuer.issue(GrantQuery("a.txt", 10), NOW, b"\x02" * 16, "http://h/oss/", "http://h/cb")
        if grant["fields"][field] == value:
            return
        grant["fields"][field] = value
        with self.assertRaises(OSSError):
            check_post(posted_form(grant, 5, "text/plain"), BucketAccess("b-1", "local", CREDENTIALS), NOW)
