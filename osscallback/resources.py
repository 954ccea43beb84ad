# -*- test-case-name: tests.test_resources -*-
"""
The HTTP API's leaf resources.  Each parses the request, calls the domain
code, and serialises the answer as JSON; nothing else.
"""

import re
from datetime import datetime, timezone
from typing import Any, Callable, Coroutine

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.error import UnsupportedMethod
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from osscallback.access import Access
from osscallback.acceptance import CallbackAcceptor
from osscallback.errors import Refusal
from osscallback.grant import NoncePool, parse_query, unseal
from osscallback.issuer import GrantIssuer
from osscallback.jsontext import compact_json
from osscallback.keys import PublicKeySource
from osscallback.ledger import Ledger
from osscallback.metrics import Metrics
from osscallback.recorder import Recorder

log = Logger()

_HOST = re.compile(rb"^([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?$")


def json_body(request: Request, status: int, payload: Any) -> bytes:
    """
    Set the status and JSON headers on C{request} and return its body.
    """
    body = compact_json(payload)
    request.setResponseCode(status)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"content-length", b"%d" % (len(body),))
    request.setHeader(b"cache-control", b"no-store")
    return body


def refusal_body(request: Request, refusal: Refusal) -> bytes:
    """
    The JSON error answer for C{refusal}.
    """
    for name, value in refusal.headers.items():
        request.setHeader(name, value)
    return json_body(
        request, refusal.status, {"error": refusal.code, "message": refusal.message}
    )


def request_origin(request: Request) -> str:
    """
    The scheme and host the browser used to reach this server.

    @raise Refusal: 400 for a missing or malformed Host header.
    """
    host = request.getHeader(b"host") or b""
    if not _HOST.match(host):
        raise Refusal(400, "bad_host", "The request needs a valid Host header.")
    scheme = "https" if request.isSecure() else "http"
    return f"{scheme}://{host.decode('ascii')}"


def redacted(uri: bytes) -> bytes:
    """
    A request target as logs may show it: a callback's token replaced.
    """
    if uri.startswith(b"/callback/"):
        return b"/callback/<token>" + uri[len(uri.split(b"?")[0]) :]
    return uri


def render_later(
    request: Request,
    work: Coroutine[Any, Any, tuple[int, Any]],
    outcome: Callable[[str], None] = lambda code: None,
) -> int:
    """
    Answer C{request} with the JSON that C{work} eventually gives, or its
    refusal; cancel C{work} if the client goes away first.

    @param outcome: told C{ok}, or the error code of the answer.
    """
    finished = False
    answering = Deferred.fromCoroutine(work)

    def gone(reason: Failure) -> None:
        nonlocal finished
        finished = True
        answering.cancel()

    def done(_: object) -> None:
        nonlocal finished
        finished = True

    request.notifyFinish().addCallbacks(done, gone)

    def answer(result: tuple[int, Any]) -> None:
        outcome("ok")
        if not finished:
            request.write(json_body(request, *result))
            request.finish()

    def fail(failure: Failure) -> None:
        if failure.check(CancelledError) and finished:
            return
        if failure.check(Refusal):
            refusal = failure.value
        else:
            log.failure("answering {uri} failed", failure, uri=redacted(request.uri))
            refusal = Refusal(500, "internal_error", "Something went wrong here; try again.")
        outcome(refusal.code)
        body = refusal_body(request, refusal)
        if not finished:
            request.write(body)
            request.finish()

    answering.addCallbacks(answer, fail)
    # A stopping server waits for the answers in flight (after they are written).
    in_flight = getattr(getattr(request, "site", None), "in_flight", None)
    if in_flight is not None:
        in_flight.add(answering)
        answering.addBoth(lambda result: in_flight.discard(answering))
    return NOT_DONE_YET


class APIResource(Resource):
    """
    A leaf of the API: CORS and its preflight, the bearer token for the
    methods in C{protected}, and JSON for a method it does not take.

    @ivar access: the access rules, open unless the site sets them.
    """

    isLeaf = True
    access = Access()
    protected: tuple[bytes, ...] = ()

    def render(self, request: Request) -> bytes | int:
        try:
            if request.method == b"OPTIONS":
                methods = [m for m in (b"GET", b"POST") if hasattr(self, "render_" + m.decode())]
                self.access.preflight(request, b", ".join(methods))
                request.setResponseCode(204)
                return b""
            self.access.cors(request)
            if request.method in self.protected:
                self.access.authorize(request)
        except Refusal as refusal:
            return refusal_body(request, refusal)
        try:
            return super().render(request)
        except UnsupportedMethod as e:
            methods = e.allowedMethods
            # Twisted offers HEAD everywhere, but it only works beside GET.
            allowed = b", ".join(
                m for m in methods if m != b"HEAD" or b"GET" in methods
            )
            request.setHeader(b"allow", allowed)
            return refusal_body(
                request,
                Refusal(
                    405,
                    "method_not_allowed",
                    f"Use {allowed.decode('ascii')} here.",
                ),
            )


class PolicyResource(APIResource):
    """
    C{GET /policy}: an upload grant, for a client within its rate limit.

    @ivar upload_url: where browsers POST, or L{None} for this server's own
        C{/oss/} (local mode).
    @ivar callback_base: the URL OSS calls back, or L{None} for this
        server's own C{/callback}.
    """

    protected = (b"GET",)

    def __init__(
        self,
        issuer: GrantIssuer,
        clock: IReactorTime,
        upload_url: str | None,
        callback_base: str | None,
        metrics: Metrics,
        nonce: Callable[[int], bytes] | None = None,
    ) -> None:
        super().__init__()
        self._metrics = metrics
        self._issuer = issuer
        self._clock = clock
        self._upload_url = upload_url
        self._callback_base = callback_base
        self._nonce = nonce or NoncePool()

    def render_GET(self, request: Request) -> bytes:
        upload_url, callback_base = self._upload_url, self._callback_base
        try:
            user = self.access.user(request)
            self.access.throttle(user or getattr(request.getClientAddress(), "host", "-"))
            query = parse_query(request.args)
            if upload_url is None or callback_base is None:
                origin = request_origin(request)
                upload_url = upload_url or f"{origin}/oss/"
                callback_base = callback_base or f"{origin}/callback"
            grant = self._issuer.issue(
                query,
                # Whole seconds, as the policy states them.
                datetime.fromtimestamp(int(self._clock.seconds()), timezone.utc),
                self._nonce(16),
                upload_url,
                callback_base,
                user,
            )
        except Refusal as refusal:
            self._metrics.grants.add(refusal.code)
            return refusal_body(request, refusal)
        self._metrics.grants.add("issued")
        return json_body(request, 200, grant)


class CallbackResource(APIResource):
    """
    C{POST /callback/<token>}: the OSS upload callback.

    @ivar bucket_url: the bucket's base URL for HeadObject, or L{None} for
        this server's own C{/oss} (local mode).
    """

    def __init__(
        self, acceptor: CallbackAcceptor, bucket_url: str | None, metrics: Metrics
    ) -> None:
        super().__init__()
        self._acceptor = acceptor
        self._bucket_url = bucket_url
        self._metrics = metrics

    def render_POST(self, request: Request) -> int | bytes:
        segments = request.postpath
        if len(segments) != 1 or not segments[0]:
            return refusal_body(
                request,
                Refusal(404, "not_found", "Callbacks go to /callback/<token>."),
            )
        request.content.seek(0)
        body = request.content.read()
        return render_later(
            request,
            self._accept(segments[0], request, body),
            lambda code: self._metrics.callbacks.add("recorded" if code == "ok" else code),
        )

    async def _accept(
        self, token: bytes, request: Request, body: bytes
    ) -> tuple[int, Any]:
        bucket_url = self._bucket_url or request_origin(request) + "/oss"
        answer = await self._acceptor.accept(
            token.decode("ascii", "replace"),
            request.uri,
            request.requestHeaders,
            body,
            bucket_url,
        )
        return 200, answer


class UploadsResource(APIResource):
    """
    C{GET /uploads}: the recorded uploads, newest first.
    C{POST /uploads/<token>/confirm}: record an upload whose callback failed
    (its token is the authority).
    """

    protected = (b"GET",)

    def __init__(
        self, ledger: Ledger, recorder: Recorder, secret: bytes,
        clock: IReactorTime, bucket_url: str | None,
    ) -> None:
        super().__init__()
        self._ledger = ledger
        self._recorder = recorder
        self._secret = secret
        self._clock = clock
        self._bucket_url = bucket_url

    def render_GET(self, request: Request) -> int | bytes:
        if request.postpath not in ([], [b""]):
            return refusal_body(request, Refusal(404, "not_found", "No such list; see GET /uploads."))
        try:
            limit, before = parse_page(request.args)
        except Refusal as refusal:
            return refusal_body(request, refusal)
        return render_later(request, self._list(limit, before))

    async def _list(self, limit: int, before: int | None) -> tuple[int, Any]:
        uploads = await self._ledger.recent(limit + 1, before)
        page = uploads[:limit]
        more = len(uploads) > limit
        return 200, {
            "uploads": [upload.as_json() for upload in page],
            "next": str(page[-1].id) if more else None,
        }

    def render_POST(self, request: Request) -> int | bytes:
        segments = request.postpath
        if len(segments) != 2 or segments[1] != b"confirm" or not segments[0]:
            return refusal_body(
                request,
                Refusal(404, "not_found", "Confirm uploads at /uploads/<token>/confirm."),
            )
        return render_later(request, self._confirm(segments[0], request))

    async def _confirm(self, token: bytes, request: Request) -> tuple[int, Any]:
        grant = unseal(token.decode("ascii", "replace"), self._secret, self._clock.seconds())
        keys = request.args.get(b"key")
        if grant.folder is None:
            key = grant.key
        elif keys and len(keys) == 1:
            key = keys[0].decode("utf-8", "replace")
        else:
            raise Refusal(400, "bad_parameter", "Say which object to confirm with ?key=.")
        bucket_url = self._bucket_url or request_origin(request) + "/oss"
        upload, new = await self._recorder.reconcile(grant, key, bucket_url)
        answer = await self._recorder.answer(upload) if new else {
            "Status": "OK", "upload": upload.as_json(),
        }
        return 200, {**answer, "recorded": "now" if new else "before"}


def parse_page(args: dict[bytes, list[bytes]]) -> tuple[int, int | None]:
    """
    The C{limit} (1-500, default 50) and C{cursor} of a list request.

    @raise Refusal: 400 when either is malformed.
    """

    def number(name: bytes) -> int | None:
        values = args.get(name)
        if not values:
            return None
        text = values[0]
        if len(values) > 1 or not text.isdigit() or len(text) > 18:
            raise Refusal(400, "bad_parameter", f"{name.decode()} must be a whole number.")
        return int(text)

    limit = number(b"limit")
    if limit is not None and not 1 <= limit <= 500:
        raise Refusal(400, "bad_parameter", "limit must be from 1 to 500.")
    return limit or 50, number(b"cursor")


class LimitsResource(APIResource):
    """
    C{GET /limits}: what the browser client checks before it uploads (the
    server still decides), and where it can show stored objects.

    @ivar object_url: the base URL of readable objects, or L{None}.
    """

    def __init__(
        self, max_size: int, allow_types: tuple[str, ...], object_url: str | None
    ) -> None:
        super().__init__()
        self._limits = {
            "max_size": max_size,
            "allow_types": list(allow_types),
            "object_url": object_url,
        }

    def render_GET(self, request: Request) -> bytes:
        return json_body(request, 200, self._limits)


class MetricsResource(APIResource):
    """
    C{GET /metrics}: Prometheus text format.
    """

    def __init__(self, metrics: Metrics) -> None:
        super().__init__()
        self._metrics = metrics

    def render_GET(self, request: Request) -> bytes:
        body = self._metrics.exposition()
        request.setHeader(b"content-type", b"text/plain; version=0.0.4; charset=utf-8")
        request.setHeader(b"content-length", b"%d" % len(body))
        return body


class ReadyResource(APIResource):
    """
    C{GET /readyz}: the ledger answers and the callback key is cached or
    can be fetched.

    @ivar key_url: the public key to check, or L{None} for none.
    """

    def __init__(self, ledger: Ledger, keys: PublicKeySource, key_url: str | None) -> None:
        super().__init__()
        self._ledger = ledger
        self._keys = keys
        self._key_url = key_url

    def render_GET(self, request: Request) -> int:
        return render_later(request, self._check())

    async def _check(self) -> tuple[int, Any]:
        try:
            await self._ledger.ping()
            if self._key_url is not None:
                await self._keys.public_key(self._key_url)
        except Refusal as refusal:
            raise Refusal(503, "not_ready", f"Not ready: {refusal.message}") from None
        return 200, {"status": "ready"}


class HealthResource(APIResource):
    """
    C{GET /healthz}: the process serves.
    """

    def render_GET(self, request: Request) -> bytes:
        return json_body(request, 200, {"status": "ok"})
