# -*- test-case-name: tests.test_callback -*-
"""
The OSS upload callback: the C{callback} parameter a grant carries, and the
checks on the callback OSS sends back (oss-protocol.md sections 4 and 5).

Pure: nothing here reads a clock or does I/O.
"""

import base64
import binascii
import json
from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from osscallback.errors import Refusal
from osscallback.jsontext import compact_json

_FIELDS = (
    "bucket=${bucket}&object=${object}&etag=${etag}&size=${size}"
    "&mimeType=${mimeType}&crc64=${crc64}&contentMd5=${contentMd5}"
    "&reqId=${reqId}&clientIp=${clientIp}"
)
_IMAGE_FIELDS = (
    "&width=${imageInfo.width}&height=${imageInfo.height}"
    "&format=${imageInfo.format}"
)


def _tail(image: bool, sni: bool) -> bytes:
    document: dict[str, object] = {
        "callbackBody": _FIELDS + (_IMAGE_FIELDS if image else ""),
        "callbackBodyType": "application/x-www-form-urlencoded",
    }
    if sni:
        document["callbackSNI"] = True
    return b"," + compact_json(document)[1:]


_TAILS = {(image, sni): _tail(image, sni) for image in (False, True) for sni in (False, True)}


def callback_parameter(url: str, image: bool) -> str:
    """
    The base64 C{callback} form field that makes OSS POST the stored
    object's facts to C{url} as a form.

    @param image: also ask for the image's width, height and format.  Only
        for uploads declared as images: OSS fails the callback when it cannot
        read an image.
    """
    # Everything but the URL is one of four constant tails.
    text = b'{"callbackUrl":' + compact_json(url) + _TAILS[(image, url.startswith("https:"))]
    return base64.b64encode(text).decode("ascii")


def string_to_sign(uri: bytes, body: bytes) -> bytes:
    """
    What OSS signs: the percent-decoded path, then C{"?"} and the query
    exactly as received if there is one, a newline, and the raw body.
    """
    path, question, query = uri.partition(b"?")
    signed = unquote_to_bytes(path)
    if question and query:
        signed += b"?" + query
    return signed + b"\n" + body


def sign_callback(private_key: rsa.RSAPrivateKey, uri: bytes, body: bytes) -> bytes:
    """
    The C{Authorization} value OSS would send for this callback, signed
    with C{private_key} as OSS signs (PKCS#1 v1.5 with MD5).
    """
    signature = private_key.sign(
        string_to_sign(uri, body), padding.PKCS1v15(), hashes.MD5()
    )
    return base64.b64encode(signature)


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """
    Parse a PEM public key, which must be RSA.

    @raise ValueError: for anything else.
    """
    try:
        key = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as e:
        raise ValueError(f"not a PEM public key: {e}") from None
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("the public key is not an RSA key")
    return key


def signature_valid(
    public_key: rsa.RSAPublicKey, uri: bytes, body: bytes, authorization: bytes
) -> bool:
    """
    Whether C{authorization} is OSS's RSA (PKCS#1 v1.5, MD5) signature of
    this callback under C{public_key}.
    """
    try:
        signature = base64.b64decode(authorization, validate=True)
    except (binascii.Error, ValueError, TypeError):
        return False
    try:
        public_key.verify(
            signature, string_to_sign(uri, body), padding.PKCS1v15(), hashes.MD5()
        )
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def verify_callback(
    public_key_pem: bytes, uri: bytes, body: bytes, authorization: bytes
) -> bool:
    """
    Check an OSS callback signature.

    @param public_key_pem: the PEM public key the callback names.
    @param uri: the raw request target, path and query exactly as received.
    @param body: the raw request body.
    @param authorization: the C{Authorization} header's value.
    @return: True only if the signature verifies; False for anything else,
        malformed input included.  It never raises.
    """
    try:
        key = load_public_key(public_key_pem)
        return signature_valid(key, uri, body, authorization)
    except Exception:
        return False


@dataclass(frozen=True)
class CallbackClaims:
    """
    What a callback body says about the stored object.  Unconfirmed: these
    are only as trustworthy as the checks that came before.
    """

    bucket: str
    key: str
    size: int
    etag: str
    mime_type: str
    crc64: str = ""
    content_md5: str = ""
    request_id: str = ""
    client_ip: str = ""
    width: int | None = None
    height: int | None = None
    image_format: str = ""


def _malformed(message: str) -> Refusal:
    return Refusal(400, "malformed_callback", message)


def _unescaped(text: str) -> str:
    if "%" in text or "+" in text:
        # What unquote() gives, without its split into ASCII runs: the
        # text around the escapes is whole UTF-8.
        return unquote_to_bytes(text.replace("+", " ")).decode("utf-8", "replace")
    return text


def form_fields(text: str) -> dict[str, str]:
    """
    The fields of a form-encoded body, read as
    C{dict(parse_qsl(text, keep_blank_values=True))} reads them (the last
    of repeated names wins), in a third of its time: only the names and
    values that hold an escape are decoded.
    """
    fields = {}
    for pair in text.split("&"):
        if pair:
            name, _, value = pair.partition("=")
            fields[_unescaped(name)] = _unescaped(value)
    return fields


def parse_claims(content_type: bytes | None, body: bytes) -> CallbackClaims:
    """
    Read a callback body, form-encoded or JSON.

    @raise Refusal: 400 when it is unreadable or lacks bucket, object or
        size.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise _malformed("The callback body is not UTF-8 text.") from None
    kind = (content_type or b"").split(b";")[0].strip().lower()
    if kind == b"application/json":
        try:
            document = json.loads(text)
        except ValueError:
            raise _malformed("The callback body is not valid JSON.") from None
        if not isinstance(document, dict):
            raise _malformed("The callback body is not a JSON object.")
        values = {k: "" if v is None else str(v) for k, v in document.items()}
    else:
        values = form_fields(text)

    def number(name: str) -> int:
        value = values.get(name, "")
        if not value.isascii() or not value.isdigit() or len(value) > 18:
            raise _malformed(f"The callback's {name} is not a whole number.")
        return int(value)

    def optional_number(name: str) -> int | None:
        return number(name) if values.get(name) else None

    for name in ("bucket", "object"):
        if not values.get(name):
            raise _malformed(f"The callback body has no {name}.")
    return CallbackClaims(
        bucket=values["bucket"],
        key=values["object"],
        size=number("size"),
        etag=values.get("etag", ""),
        mime_type=values.get("mimeType", ""),
        crc64=values.get("crc64", ""),
        content_md5=values.get("contentMd5", ""),
        request_id=values.get("reqId", ""),
        client_ip=values.get("clientIp", ""),
        width=optional_number("width"),
        height=optional_number("height"),
        image_format=values.get("format", ""),
    )
