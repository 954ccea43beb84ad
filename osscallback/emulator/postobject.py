# -*- test-case-name: tests.test_emulator -*-
"""
The PostObject operation of the embedded OSS, after the form is parsed:
check it, store the object, send the callback, and choose the answer.
"""

import base64
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from xml.sax.saxutils import escape

from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from osscallback.emulator.errors import OSSError, error_xml
from osscallback.emulator.imageinfo import image_info
from osscallback.emulator.multipart import PostForm, SpooledFile
from osscallback.emulator.notify import CallbackSender, CallbackSpec, parse_callback, render_body
from osscallback.emulator.postpolicy import BucketAccess, check_post
from osscallback.emulator.store import ObjectStore, StoredObject


@dataclass(frozen=True)
class Origin:
    """
    Facts about one request that OSS puts into its answers and callbacks.

    @ivar base: the scheme and host the uploader used.
    """

    request_id: str
    client_ip: str
    host: str
    base: str


@dataclass(frozen=True)
class Answer:
    """
    What the emulator answers: status, headers (besides the request id and
    length) and body.
    """

    status: int
    body: bytes = b""
    headers: dict[bytes, bytes] = field(default_factory=dict)


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


class PostObject:
    """
    Runs PostObject requests against one bucket.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        access: BucketAccess,
        store: ObjectStore,
        sender: CallbackSender,
        key_path: str,
    ) -> None:
        self._clock = clock
        self._access = access
        self._store = store
        self._sender = sender
        self._key_path = key_path

    async def run(self, form: PostForm, origin: Origin) -> Answer:
        """
        Check, store and report one uploaded form; its spooled file is
        either stored or removed.

        @raise OSSError: when OSS would refuse the upload.
        """
        try:
            file, meta, spec, custom = self._accept(form)
        except BaseException:
            if form.file is not None:
                os.unlink(form.file.path)
            raise
        self._store.put(file.path, meta)
        self.log.info("stored {key} ({size} bytes)", key=meta.key, size=meta.size)
        headers = {
            b"etag": meta.etag.encode(),
            b"x-oss-hash-crc64ecma": meta.crc64.encode(),
            b"content-md5": meta.content_md5.encode(),
        }
        if spec is not None:
            return await self._callback(file, meta, spec, custom, headers, origin)
        status = form.get("success_action_status")
        if status == "200":
            return Answer(200, headers=headers)
        if status == "201":
            body = (
                '<?xml version="1.0" encoding="UTF-8"?>\n<PostResponse>\n'
                f"  <Bucket>{escape(self._access.bucket)}</Bucket>\n"
                f"  <Location>{escape(f'{origin.base}/oss/{meta.key}')}</Location>\n"
                f"  <Key>{escape(meta.key)}</Key>\n"
                f"  <ETag>{escape(meta.etag)}</ETag>\n</PostResponse>\n"
            ).encode("utf-8")
            return Answer(201, body, {**headers, b"content-type": b"application/xml"})
        return Answer(204, headers=headers)

    def _accept(
        self, form: PostForm
    ) -> tuple[SpooledFile, StoredObject, CallbackSpec | None, dict[str, str]]:
        now = self._clock.seconds()
        check_post(form, self._access, datetime.fromtimestamp(now, timezone.utc))
        key = object_key(form)
        file = form.file
        assert file is not None  # object_key checked it
        custom = {
            name: value for name, value in form.fields if name.lower().startswith("x:")
        }
        callback = form.get("callback")
        spec = parse_callback(callback, custom) if callback else None
        forbid = (form.get("x-oss-forbid-overwrite") or "").lower() == "true"
        if forbid and self._store.head(key) is not None:
            raise OSSError(
                409,
                "FileAlreadyExists",
                "The object you specified already exists and can not be overwritten.",
            )
        meta = StoredObject(
            key=key,
            size=file.size,
            etag='"' + file.md5.hex().upper() + '"',
            content_type=form.get("x-oss-content-type")
            or form.get("Content-Type")
            or file.content_type
            or "application/octet-stream",
            crc64=str(file.crc64),
            content_md5=base64.b64encode(file.md5).decode("ascii"),
            last_modified=now,
        )
        return file, meta, spec, custom

    async def _callback(
        self,
        file: SpooledFile,
        meta: StoredObject,
        spec: CallbackSpec,
        custom: dict[str, str],
        headers: dict[bytes, bytes],
        origin: Origin,
    ) -> Answer:
        values: dict[str, Any] = {
            "bucket": self._access.bucket,
            "object": meta.key,
            "etag": meta.etag.strip('"'),
            "size": meta.size,
            "mimeType": meta.content_type,
            "crc64": meta.crc64,
            "contentMd5": meta.content_md5,
            "vpcId": "",
            "clientIp": origin.client_ip,
            "reqId": origin.request_id,
            "operation": "PostObject",
            **custom,
        }
        if spec.wants_image_info:
            info = image_info(file.head)
            if info is None and meta.content_type.startswith("image/"):
                return self._failed("Get image info failed", headers, origin)
            if info is not None:
                values["imageInfo.width"] = info.width
                values["imageInfo.height"] = info.height
                values["imageInfo.format"] = info.format
        outcome = await self._sender.send(
            spec,
            render_body(spec, values),
            f"{origin.base}/oss/{self._key_path}",
            {"bucket": self._access.bucket, "reqId": origin.request_id},
        )
        if outcome.answer is None:
            return self._failed(outcome.failure, headers, origin)
        return Answer(200, outcome.answer, {**headers, b"content-type": b"application/json"})

    def _failed(self, reason: str, headers: dict[bytes, bytes], origin: Origin) -> Answer:
        body = error_xml(
            OSSError(203, "CallbackFailed", reason), origin.request_id, origin.host
        )
        return Answer(203, body, {**headers, b"content-type": b"application/xml"})
