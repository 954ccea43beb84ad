# -*- test-case-name: tests.test_emulator -*-
"""
The emulated bucket's HTTP face at C{/oss/}: PostObject, object reads, the
callback public key and CORS, answering as OSS does.
"""

import base64
import os
import secrets
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote_to_bytes
from xml.sax.saxutils import escape

from twisted.internet.defer import Deferred
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure
from twisted.web.http import datetimeToString
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request

from osscallback.emulator.errors import OSSError, error_xml
from osscallback.emulator.imageinfo import image_info
from osscallback.emulator.multipart import FileSpool, FormParser, PostForm, boundary_of
from osscallback.emulator.notify import CallbackSender, parse_callback, render_body
from osscallback.emulator.postpolicy import BucketAccess, check_post
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


def object_key(form: PostForm) -> str:
    """
    The object key: the C{key} field with C{${filename}} expanded.

    @raise OSSError: when there is no file or the key is not a valid name.
    """
    if form.file is None:
        raise OSSError(
            400,
            "IncorrectNumberOfFilesInPOSTRequest",
            "POST requires exactly one file upload per request.",
        )
    key = (form.get("key") or "").replace("${filename}", form.file.filename)
    size = len(key.encode("utf-8"))
    if not 1 <= size <= 1023 or key[0] in "/\\":
        raise OSSError(400, "InvalidObjectName", "The specified object is not valid.")
    return key


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
        sender: CallbackSender,
        public_key_pem: bytes,
        cors_origins: tuple[str, ...],
    ) -> None:
        super().__init__()
        self._reactor = reactor
        self._access = access
        self._store = store
        self._sender = sender
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
        self._describe(request)
        return b""

    def render_GET(self, request: Request) -> bytes | int:
        self._cors(request)
        key = self._key(request)
        if key == KEY_PATH:
            request.setHeader(b"content-type", b"application/x-pem-file")
            request.setHeader(b"content-length", b"%d" % len(self._public_key_pem))
            return self._public_key_pem
        meta = self._describe(request)
        if meta is None:
            return self._error(
                request,
                OSSError(404, "NoSuchKey", "The specified key does not exist."),
                _request_id(),
            )
        source = open(self._store.data_path(meta), "rb")
        finished = FileSender().beginFileTransfer(source, request)

        def done(result: object) -> None:
            source.close()
            request.finish()

        finished.addBoth(done)
        return NOT_DONE_YET

    def _describe(self, request: Request) -> StoredObject | None:
        meta = self._store.head(self._key(request))
        if meta is None:
            if request.method == b"HEAD":
                request.setResponseCode(404)
                request.setHeader(b"x-oss-request-id", _request_id().encode())
            return None
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
                OSSError(405, "MethodNotAllowed", "The specified method is not allowed against this resource."),
                request_id,
            )
        finished = False

        def gone(_: object) -> None:
            nonlocal finished
            finished = True

        request.notifyFinish().addBoth(gone)
        work = Deferred.fromCoroutine(self._post_object(request, request_id))

        def answer(result: tuple[int, dict[bytes, bytes], bytes]) -> None:
            status, headers, body = result
            if finished:
                return
            request.setResponseCode(status)
            for name, value in headers.items():
                request.setHeader(name, value)
            request.setHeader(b"content-length", b"%d" % len(body))
            request.setHeader(b"x-oss-request-id", request_id.encode())
            request.write(body)
            request.finish()

        def fail(failure: Failure) -> None:
            if failure.check(OSSError):
                body = self._error(request, failure.value, request_id)
            else:
                self.log.failure("PostObject failed", failure)
                body = self._error(
                    request,
                    OSSError(500, "InternalError", "We encountered an internal error. Please try again."),
                    request_id,
                )
            if not finished:
                request.write(body)
                request.finish()

        work.addCallbacks(answer, fail)
        return NOT_DONE_YET

    async def _post_object(
        self, request: Request, request_id: str
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        boundary = boundary_of(request.getHeader(b"content-type"))
        form = await deferToThreadPool(
            self._reactor,
            self._reactor.getThreadPool(),
            parse_upload,
            request.content,
            boundary,
            self._store.spool,
        )
        try:
            meta, spec, custom = self._accept(form)
        except BaseException:
            if form.file is not None:
                os.unlink(form.file.path)
            raise
        assert form.file is not None
        self._store.put(form.file.path, meta)
        self.log.info("stored {key} ({size} bytes)", key=meta.key, size=meta.size)
        headers = {
            b"etag": meta.etag.encode(),
            b"x-oss-hash-crc64ecma": meta.crc64.encode(),
            b"content-md5": meta.content_md5.encode(),
        }
        if spec is not None:
            return await self._callback(request, request_id, form, meta, spec, custom, headers)
        status = form.get("success_action_status")
        if status == "200":
            return 200, headers, b""
        if status == "201":
            host = (request.getHeader(b"host") or b"").decode("latin-1")
            location = f"http://{host}/oss/{meta.key}"
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<PostResponse>\n'
                f"  <Bucket>{escape(self._access.bucket)}</Bucket>\n"
                f"  <Location>{escape(location)}</Location>\n"
                f"  <Key>{escape(meta.key)}</Key>\n"
                f"  <ETag>{escape(meta.etag)}</ETag>\n</PostResponse>\n"
            ).encode("utf-8")
            return 201, {**headers, b"content-type": b"application/xml"}, body
        return 204, headers, b""

    def _accept(self, form: PostForm) -> tuple[StoredObject, Any, dict[str, str]]:
        check_post(
            form, self._access, datetime.fromtimestamp(self._reactor.seconds(), timezone.utc)
        )
        key = object_key(form)
        assert form.file is not None
        custom = {name: value for name, value in form.fields if name.lower().startswith("x:")}
        spec = None
        if form.get("callback"):
            spec = parse_callback(form.get("callback") or "", custom)
        if (form.get("x-oss-forbid-overwrite") or "").lower() == "true" and self._store.head(key):
            raise OSSError(409, "FileAlreadyExists", "The object you specified already exists and can not be overwritten.")
        content_type = (
            form.get("x-oss-content-type")
            or form.get("Content-Type")
            or form.file.content_type
            or "application/octet-stream"
        )
        meta = StoredObject(
            key=key,
            size=form.file.size,
            etag='"' + form.file.md5.hex().upper() + '"',
            content_type=content_type,
            crc64=str(form.file.crc64),
            content_md5=base64.b64encode(form.file.md5).decode("ascii"),
            last_modified=self._reactor.seconds(),
        )
        return meta, spec, custom

    async def _callback(
        self,
        request: Request,
        request_id: str,
        form: PostForm,
        meta: StoredObject,
        spec: Any,
        custom: dict[str, str],
        headers: dict[bytes, bytes],
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        assert form.file is not None
        values: dict[str, Any] = {
            "bucket": self._access.bucket,
            "object": meta.key,
            "etag": meta.etag.strip('"'),
            "size": meta.size,
            "mimeType": meta.content_type,
            "crc64": meta.crc64,
            "contentMd5": meta.content_md5,
            "vpcId": "",
            "clientIp": getattr(request.getClientAddress(), "host", ""),
            "reqId": request_id,
            "operation": "PostObject",
            **custom,
        }
        if spec.wants_image_info:
            info = image_info(form.file.head)
            if info is None and meta.content_type.startswith("image/"):
                return self._callback_failed(request, request_id, "Get image info failed", headers)
            if info is not None:
                values.update(
                    {
                        "imageInfo.width": info.width,
                        "imageInfo.height": info.height,
                        "imageInfo.format": info.format,
                    }
                )
        body = render_body(spec, values)
        host = (request.getHeader(b"host") or b"").decode("latin-1")
        scheme = "https" if request.isSecure() else "http"
        key_url = f"{scheme}://{host}/oss/{KEY_PATH}"
        outcome = await self._sender.send(
            spec, body, key_url, {"bucket": self._access.bucket, "reqId": request_id}
        )
        if outcome.answer is None:
            return self._callback_failed(request, request_id, outcome.failure, headers)
        return 200, {**headers, b"content-type": b"application/json"}, outcome.answer

    def _callback_failed(
        self, request: Request, request_id: str, reason: str, headers: dict[bytes, bytes]
    ) -> tuple[int, dict[bytes, bytes], bytes]:
        error = OSSError(203, "CallbackFailed", reason)
        body = error_xml(error, request_id, (request.getHeader(b"host") or b"").decode("latin-1"))
        return 203, {**headers, b"content-type": b"application/xml"}, body
