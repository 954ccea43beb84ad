# -*- test-case-name: tests.test_emulator_notify -*-
"""
The upload callback as OSS sends it: the C{callback} parameter read and
checked, its body template filled in, the request signed with the
emulator's key and POSTed to each callback URL in turn.
"""

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from email.utils import formatdate
from typing import Any, Mapping
from urllib.parse import quote, urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa
from treq import collect
from twisted.internet import defer
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.client import URI
from twisted.web.iweb import UNKNOWN_LENGTH

from osscallback.callback import sign_callback
from osscallback.emulator.errors import invalid_argument
from osscallback.httpclient import HTTPPoster

SYSTEM_VARIABLES = frozenset(
    {
        "bucket",
        "object",
        "etag",
        "size",
        "mimeType",
        "imageInfo.height",
        "imageInfo.width",
        "imageInfo.format",
        "crc64",
        "contentMd5",
        "vpcId",
        "clientIp",
        "reqId",
        "operation",
    }
)
_NUMBERS = frozenset({"size", "imageInfo.height", "imageInfo.width"})
_VARIABLE = re.compile(r"\$\{([^}]*)\}")
FORM = "application/x-www-form-urlencoded"
JSON = "application/json"
TIMEOUT = 5.0
MAX_ANSWER = 1024 * 1024


@dataclass(frozen=True)
class CallbackSpec:
    """
    A checked C{callback} parameter.
    """

    urls: tuple[str, ...]
    host: str | None
    body: str
    body_type: str

    @property
    def wants_image_info(self) -> bool:
        """
        Whether the body asks for the image's size or format.
        """
        return "${imageInfo." in self.body


def _not_json() -> Exception:
    return invalid_argument("The callback configuration is not json format.")


def parse_callback(parameter: str, custom: Mapping[str, str]) -> CallbackSpec:
    """
    Read and check a base64 C{callback} form field, as OSS does before it
    stores anything.

    @param custom: the C{x:} form fields.
    @raise OSSError: InvalidArgument for anything OSS refuses.
    """
    try:
        document = json.loads(base64.b64decode(parameter, validate=True).decode("utf-8"))
    except ValueError:
        raise _not_json() from None
    if not isinstance(document, dict):
        raise _not_json()
    urls = document.get("callbackUrl")
    body = document.get("callbackBody")
    body_type = document.get("callbackBodyType", FORM)
    host = document.get("callbackHost")
    if not isinstance(urls, str) or not urls.strip():
        raise invalid_argument("The callbackUrl of the callback is missing or empty.")
    split = tuple(u.strip() for u in urls.split(";") if u.strip())
    if len(split) > 5:
        raise invalid_argument("The callback has more than 5 callbackUrls.")
    for url in split:
        try:
            parts = urlsplit(url)
            parts.port
        except ValueError:
            raise invalid_argument(f"The callbackUrl {url} has an invalid port.") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise invalid_argument(f"The callbackUrl {url} is not an http(s) URL.")
    if not isinstance(body, str) or not body:
        raise invalid_argument("The callbackBody of the callback is empty.")
    if body_type not in (FORM, JSON):
        raise invalid_argument(f"The callbackBodyType {body_type} is not supported.")
    if host is not None and not isinstance(host, str):
        raise _not_json()
    for name in _VARIABLE.findall(body):
        if name not in SYSTEM_VARIABLES and not re.fullmatch(r"x:[a-z0-9_]+", name):
            raise invalid_argument(f"The callbackBody has an invalid variable ${{{name}}}.")
    for name in custom:
        if name != name.lower():
            raise invalid_argument(f"The custom variable {name} must be lowercase.")
    return CallbackSpec(split, host or None, body, body_type)


def _json_value(name: str, value: Any, in_string: bool) -> str:
    if in_string:
        return json.dumps("" if value is None else str(value), ensure_ascii=False)[1:-1]
    if name in _NUMBERS:
        return "null" if value in (None, "") else str(int(value))
    return json.dumps("" if value is None else str(value), ensure_ascii=False)


def render_body(spec: CallbackSpec, values: Mapping[str, Any]) -> bytes:
    """
    The callback body: the template with each C{${name}} replaced, URL-encoded
    in form mode; in JSON mode as a JSON value (strings quoted, numbers bare)
    or, inside a string literal of the template, as escaped text.
    """
    template = spec.body
    if spec.body_type == FORM:
        text = _VARIABLE.sub(
            lambda m: quote(str(values.get(m.group(1)) or ""), safe=""), template
        )
        return text.encode("utf-8")
    out = []
    in_string = False
    at = 0
    while at < len(template):
        match = _VARIABLE.match(template, at)
        if match:
            out.append(_json_value(match.group(1), values.get(match.group(1)), in_string))
            at = match.end()
            continue
        char = template[at]
        if char == "\\" and in_string:
            out.append(template[at : at + 2])
            at += 2
            continue
        if char == '"':
            in_string = not in_string
        out.append(char)
        at += 1
    return "".join(out).encode("utf-8")


@dataclass(frozen=True)
class CallbackOutcome:
    """
    How a callback ended: the answer to relay, or why it failed.
    """

    answer: bytes | None
    failure: str = ""


class CallbackSender:
    """
    Sends signed upload callbacks as OSS does.
    """

    log = Logger()

    def __init__(
        self, clock: IReactorTime, http: HTTPPoster, private_key: rsa.RSAPrivateKey
    ) -> None:
        self._clock = clock
        self._http = http
        self._key = private_key

    def headers(
        self, url: str, spec: CallbackSpec, body: bytes, key_url: str, facts: Mapping[str, str]
    ) -> dict[bytes, list[bytes]]:
        """
        The headers of a callback to C{url}: signed like OSS's, with the same
        informational headers.

        @param facts: bucket and request id.
        """
        target = URI.fromBytes(url.encode("ascii")).originForm
        headers = {
            b"authorization": [sign_callback(self._key, target, body)],
            b"content-md5": [base64.b64encode(hashlib.md5(body).digest())],
            b"content-type": [spec.body_type.encode()],
            b"date": [formatdate(self._clock.seconds(), usegmt=True).encode()],
            b"user-agent": [b"aliyun-oss-callback"],
            b"x-oss-bucket": [facts["bucket"].encode()],
            b"x-oss-pub-key-url": [base64.b64encode(key_url.encode())],
            b"x-oss-request-id": [facts["reqId"].encode()],
            b"x-oss-signature-version": [b"1.0"],
            b"x-oss-tag": [b"CALLBACK"],
        }
        if spec.host:
            headers[b"host"] = [spec.host.encode("idna")]
        return headers

    async def send(
        self, spec: CallbackSpec, body: bytes, key_url: str, facts: Mapping[str, str]
    ) -> CallbackOutcome:
        """
        POST the callback to each URL in turn until one answers 200 with
        JSON; each try is limited to five seconds.
        """
        failure = ""
        for url in spec.urls:
            attempt = Deferred.fromCoroutine(
                self._post(url, self.headers(url, spec, body, key_url, facts), body)
            )
            attempt.addTimeout(TIMEOUT, self._clock)
            try:
                outcome = await attempt
            except defer.TimeoutError:
                failure = "reply timeout, cost: 5000 MS, timeout: 5000 MS"
                continue
            except Exception as e:
                parts = urlsplit(url)  # the path holds the callback token
                self.log.warn(
                    "callback to {origin} failed: {error}",
                    origin=f"{parts.scheme}://{parts.netloc}",
                    error=repr(e),
                )
                failure = (
                    "Error status : -1. OSS can not connect to your callbackUrl, "
                    "please check it."
                )
                continue
            if outcome.answer is not None:
                return outcome
            failure = outcome.failure
        return CallbackOutcome(None, failure)

    async def _post(
        self, url: str, headers: dict[bytes, list[bytes]], body: bytes
    ) -> CallbackOutcome:
        response = await self._http.post(
            url, data=body, headers=headers, allow_redirects=False
        )
        chunks: list[bytes] = []
        size = 0

        def collector(data: bytes) -> None:
            nonlocal size
            size += len(data)
            if size <= MAX_ANSWER:
                chunks.append(data)

        await collect(response, collector)
        if response.code != 200:
            return CallbackOutcome(None, f"Error status : {response.code}.")
        if response.length is UNKNOWN_LENGTH or size > MAX_ANSWER:
            return CallbackOutcome(
                None, "Error Status : 400.User server return too long content-length value"
            )
        answer = b"".join(chunks)
        try:
            json.loads(answer.decode("utf-8"))
        except ValueError:  # a UTF-8 byte order mark fails here too, as on OSS
            return CallbackOutcome(None, "Response body is not valid json format.")
        return CallbackOutcome(answer)
