# -*- test-case-name: tests.test_emulator -*-
"""
The emulated bucket's HTTP face at C{/oss/}: PostObject requests parsed and
handed to L{PostObject}, object reads, the callback public key and CORS,
answering as OSS does.
"""

import secrets
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote_to_bytes

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure
from twisted.web.http import datetimeToString
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from osscallback.emulator.errors import OSSError, error_xml
from osscallback.emulator.multipart import FileSpool, FormParser, PostForm, boundary_of
from osscallback.emulator.postobject import Answer, Origin, PostObject
from osscallback.emulator.postpolicy import BucketAccess
from osscallback.emulator.requestauth import check_read
from osscallback.emulator.store import ObjectStore, StoredObject

KEY_PATH = "callback_pub_key.pem"
_CHUNK = 256 * 1024
_EXPOSED = b"ETag, x-oss-request-id, x-oss-hash-crc64ecma, Content-Length"
_ALLOWED_METHODS = (b"GET", b"HEAD", b"POST")


def parse_upload(content: Any, boundary: bytes, spool_folder: str) -> PostForm:
    """
    Parse a PostObject body from the file-like C{content}, in chunks,
    spooling the file part into C{spool_folder}.  Runs in a thread.
    """
    parser = FormParser(boundary, lambda: FileSpool(spool_folder))
    content.seek(0)
    while chunk := content.read(_CHUNK):
        parser.feed(chunk)
    return parser.finish()


def _request_id() -> str:
    return secrets.token_hex(12).upper()


class EmulatedBucket(Resource):
    """
    One bucket, served at C{/oss/}.

    @ivar cors_origins: origins allowed to use the bucket from a browser;
        C{"*"} allows any.
    """

    isLeaf = True
    log = Logger()

    def __init__(
        self,
        reactor: Any,
        access: BucketAccess,
        store: ObjectStore,
        post_object: PostObject,
        public_key_pem: bytes,
        cors_origins: tuple[str, ...],
    ) -> None:
        super().__init__()
        self._reactor = reactor
        self._access = access
        self._store = store
        self._post_object = post_object
        self._public_key_pem = public_key_pem
        self._cors_origins = cors_origins

    # --- plumbing -------------------------------------------------------

    def _origin(self, request: Request) -> bytes | None:
        origin = request.getHeader(b"origin")
        if origin is None:
            return None
        if "*" in self._cors_origins:
            return b"*"
        if origin.decode("latin-1") in self._cors_origins:
            return origin
        return None

    def _cors(self, request: Request) -> None:
        allowed = self._origin(request)
        if allowed is not None:
            request.setHeader(b"access-control-allow-origin", allowed)
            request.setHeader(b"access-control-expose-headers", _EXPOSED)
            request.setHeader(b"vary", b"Origin")

    def _error(self, request: Request, error: OSSError, request_id: str) -> bytes:
        body = error_xml(
            error, request_id, (request.getHeader(b"host") or b"").decode("latin-1")
        )
        request.setResponseCode(error.status)
        request.setHeader(b"content-type", b"application/xml")
        request.setHeader(b"content-length", b"%d" % len(body))
        request.setHeader(b"x-oss-request-id", request_id.encode())
        return body

    def _key(self, request: Request) -> str:
        path = request.path.split(b"/", 2)[2] if request.path.count(b"/") >= 2 else b""
        return unquote_to_bytes(path).decode("utf-8", "replace")

    # --- CORS preflight -------------------------------------------------

    def render_OPTIONS(self, request: Request) -> bytes:
        method = request.getHeader(b"access-control-request-method") or b""
        allowed = self._origin(request)
        if allowed is None or method not in _ALLOWED_METHODS:
            return self._error(
                request,
                OSSError(
                    403,
                    "AccessForbidden",
                    "CORSResponse: This CORS request is not allowed. This is usually "
                    "because the evalution of Origin, request method / "
                    "Access-Control-Request-Method or Access-Control-Request-Headers "
                    "are not whitelisted by the resource's CORS spec.",
                ),
                _request_id(),
            )
        request.setHeader(b"access-control-allow-origin", allowed)
        request.setHeader(b"access-control-allow-methods", b", ".join(_ALLOWED_METHODS))
        wanted = request.getHeader(b"access-control-request-headers")
        if wanted:
            request.setHeader(b"access-control-allow-headers", wanted)
        request.setHeader(b"access-control-expose-headers", _EXPOSED)
        request.setHeader(b"access-control-max-age", b"600")
        request.setHeader(b"vary", b"Origin")
        request.setHeader(b"content-length", b"0")
        return b""

    # --- reads ----------------------------------------------------------

    def render_HEAD(self, request: Request) -> bytes:
        self._cors(request)
        try:
            self._describe(request)
        except OSSError as error:
            self._error(request, error, _request_id())  # HEAD: headers only
        return b""

    def render_GET(self, request: Request) -> bytes | int:
        self._cors(request)
        if self._key(request) == KEY_PATH:
            request.setHeader(b"content-type", b"application/x-pem-file")
            request.setHeader(b"content-length", b"%d" % len(self._public_key_pem))
            return self._public_key_pem
        try:
            meta = self._describe(request)
        except OSSError as error:
            return self._error(request, error, _request_id())
        source = open(self._store.data_path(meta), "rb")
        finished = FileSender().beginFileTransfer(source, request)

        def done(result: object) -> None:
            source.close()
            request.finish()

        finished.addBoth(done)
        return NOT_DONE_YET

    def _describe(self, request: Request) -> StoredObject:
        """
        Check a read and set the object's headers.

        @raise OSSError: when the read's signature fails or there is no such
            object.
        """
        key = self._key(request)
        headers = {
            name.decode("latin-1").lower(): values[0].decode("latin-1")
            for name, values in request.requestHeaders.getAllRawHeaders()
        }
        now = datetime.fromtimestamp(self._reactor.seconds(), timezone.utc)
        check_read(self._access, request.method.decode(), key, headers, now)
        meta = self._store.head(key)
        if meta is None:
            raise OSSError(404, "NoSuchKey", "The specified key does not exist.")
        request.setHeader(b"content-type", meta.content_type.encode("latin-1", "replace"))
        request.setHeader(b"content-length", b"%d" % meta.size)
        request.setHeader(b"etag", meta.etag.encode())
        request.setHeader(b"last-modified", datetimeToString(meta.last_modified))
        request.setHeader(b"x-oss-hash-crc64ecma", meta.crc64.encode())
        request.setHeader(b"content-md5", meta.content_md5.encode())
        request.setHeader(b"x-oss-request-id", _request_id().encode())
        request.setHeader(b"x-content-type-options", b"nosniff")
        return meta

    # --- PostObject -----------------------------------------------------

    def render_POST(self, request: Request) -> bytes | int:
        self._cors(request)
        request_id = _request_id()
        if self._key(request):
            return self._error(
                request,
                OSSError(
                    405,
                    "MethodNotAllowed",
                    "The specified method is not allowed against this resource.",
                ),
                request_id,
            )
        finished = False

        def gone(_: object) -> None:
            nonlocal finished
            finished = True

        request.notifyFinish().addBoth(gone)
        work = Deferred.fromCoroutine(self._post(request, request_id))

        def answer(result: Answer) -> None:
            if finished:
                return
            request.setResponseCode(result.status)
            for name, value in result.headers.items():
                request.setHeader(name, value)
            request.setHeader(b"content-length", b"%d" % len(result.body))
            request.setHeader(b"x-oss-request-id", request_id.encode())
            request.write(result.body)
            request.finish()

        def fail(failure: Failure) -> None:
            error = failure.value
            if not failure.check(OSSError):
                self.log.failure("PostObject failed", failure)
                error = OSSError(
                    500, "InternalError", "We encountered an internal error. Please try again."
                )
            if not finished:
                request.write(self._error(request, error, request_id))
                request.finish()

        work.addCallbacks(answer, fail)
        return NOT_DONE_YET

    async def _post(self, request: Request, request_id: str) -> Answer:
        boundary = boundary_of(request.getHeader(b"content-type"))
        form = await deferToThreadPool(
            self._reactor,
            self._reactor.getThreadPool(),
            parse_upload,
            request.content,
            boundary,
            self._store.spool,
        )
        host = (request.getHeader(b"host") or b"").decode("latin-1")
        origin = Origin(
            request_id=request_id,
            client_ip=getattr(request.getClientAddress(), "host", ""),
            host=host,
            base=f"{'https' if request.isSecure() else 'http'}://{host}",
        )
        return await self._post_object.run(form, origin)
