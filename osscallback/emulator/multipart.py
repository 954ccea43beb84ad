# -*- test-case-name: tests.test_emulator_multipart -*-
"""
A streaming multipart/form-data parser for PostObject: form fields are
kept, the file part is spooled to disk while its size, MD5 and CRC-64 are
computed, so an upload of any size never sits in memory.
"""

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from typing import Callable

from fastcrc import crc64

from osscallback.emulator.errors import OSSError, invalid_argument, malformed

MAX_OBJECT_SIZE = 5 * 1024**3
MAX_FIELD_VALUE = 2 * 1024**2
MAX_FIELD_NAMES = 8 * 1024
_MAX_PART_HEADERS = 16 * 1024
HEAD_SIZE = 64 * 1024

_PARAMETER = re.compile(
    r';\s*([A-Za-z0-9_*-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))'
)


def too_long() -> OSSError:
    return OSSError(
        400,
        "FieldItemTooLong",
        "Your POST request fields preceding the upload file are too large.",
    )


@dataclass
class SpooledFile:
    """
    The uploaded file, on disk.

    @ivar head: its first bytes, for reading image headers.
    """

    path: str
    filename: str
    content_type: str
    size: int
    md5: bytes
    crc64: int
    head: bytes


@dataclass
class PostForm:
    """
    A parsed PostObject form: the fields before the file, in order, and
    the file.
    """

    fields: list[tuple[str, str]] = field(default_factory=list)
    file: SpooledFile | None = None

    def get(self, name: str) -> str | None:
        """
        The value of field C{name}, compared without case as OSS does.
        """
        name = name.lower()
        for key, value in self.fields:
            if key.lower() == name:
                return value
        return None


class FileSpool:
    """
    Writes the file part to a new file in C{folder}, hashing as it goes.
    """

    def __init__(self, folder: str) -> None:
        fd, self.path = tempfile.mkstemp(dir=folder, prefix="upload-")
        self._file = os.fdopen(fd, "wb")
        self._md5 = hashlib.md5()
        self._crc = 0
        self._size = 0
        self._head = b""

    def write(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > MAX_OBJECT_SIZE:
            raise OSSError(
                400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size."
            )
        if len(self._head) < HEAD_SIZE:
            self._head += data[: HEAD_SIZE - len(self._head)]
        self._md5.update(data)
        self._crc = crc64.xz(data, self._crc)
        self._file.write(data)

    def close(self, filename: str, content_type: str) -> SpooledFile:
        self._file.close()
        return SpooledFile(
            path=self.path,
            filename=filename,
            content_type=content_type,
            size=self._size,
            md5=self._md5.digest(),
            crc64=self._crc,
            head=self._head,
        )

    def discard(self) -> None:
        self._file.close()
        os.unlink(self.path)


def boundary_of(content_type: bytes | None) -> bytes:
    """
    The boundary of a multipart/form-data Content-Type.

    @raise OSSError: MalformedPOSTRequest for anything else.
    """
    text = (content_type or b"").decode("latin-1")
    kind, _, rest = text.partition(";")
    if kind.strip().lower() != "multipart/form-data":
        raise malformed()
    for name, quoted, plain in _PARAMETER.findall(";" + rest):
        if name.lower() == "boundary":
            boundary = (quoted or plain).strip()
            if 0 < len(boundary) <= 70:
                return boundary.encode("latin-1")
    raise malformed()


def _disposition(headers: dict[str, str]) -> tuple[str, str | None]:
    value = headers.get("content-disposition", "")
    kind, _, rest = value.partition(";")
    if kind.strip().lower() != "form-data":
        raise malformed()
    params = {
        name.lower(): (quoted.replace('\\"', '"') if quoted else plain.strip())
        for name, quoted, plain in _PARAMETER.findall(";" + rest)
    }
    if "name" not in params:
        raise malformed()
    return params["name"], params.get("filename")


class FormParser:
    """
    Parses a multipart/form-data body fed in chunks of any size.
    """

    def __init__(self, boundary: bytes, spool: Callable[[], FileSpool]) -> None:
        self._delimiter = b"\r\n--" + boundary
        self._spool_factory = spool
        self._buffer = b"\r\n"  # the first delimiter has no CRLF before it
        self._state = "preamble"
        self._name = ""
        self._filename: str | None = None
        self._content_type = ""
        self._spool: FileSpool | None = None
        self._value: list[bytes] = []
        self._value_size = 0
        self._names = 0
        self.form = PostForm()

    def feed(self, data: bytes) -> None:
        """
        Parse the next chunk of the body.

        @raise OSSError: for a malformed form or one over OSS's limits.
        """
        self._buffer += data
        try:
            while self._step():
                pass
        except BaseException:
            self.abort()
            raise

    def finish(self) -> PostForm:
        """
        The form, once the whole body has been fed.

        @raise OSSError: if the body ended early.
        """
        if self._state != "done":
            self.abort()
            raise malformed()
        return self.form

    def abort(self) -> None:
        """
        Remove a partly spooled file.
        """
        if self._spool is not None:
            self._spool.discard()
            self._spool = None
        if self.form.file is not None and os.path.exists(self.form.file.path):
            os.unlink(self.form.file.path)

    def _step(self) -> bool:
        if self._state == "preamble":
            at = self._buffer.find(self._delimiter)
            if at < 0:
                self._buffer = self._buffer[-len(self._delimiter) :]
                return False
            self._buffer = self._buffer[at + len(self._delimiter) :]
            self._state = "after-delimiter"
            return True
        if self._state == "after-delimiter":
            if len(self._buffer) < 2:
                return False
            if self._buffer.startswith(b"--"):
                self._state = "done"
                return False
            end = self._buffer.find(b"\r\n")
            if end < 0 or self._buffer[:end].strip(b" \t"):
                if end >= 0 or len(self._buffer) > 256:
                    raise malformed()
                return False
            self._buffer = self._buffer[end + 2 :]
            self._state = "headers"
            return True
        if self._state == "headers":
            end = self._buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self._buffer) > _MAX_PART_HEADERS:
                    raise malformed()
                return False
            self._start_part(self._buffer[:end])
            self._buffer = self._buffer[end + 4 :]
            self._state = "body"
            return True
        if self._state == "body":
            return self._body()
        if self._state == "done":
            self._buffer = b""
        return False

    def _start_part(self, block: bytes) -> None:
        headers = {}
        for line in block.decode("utf-8", "replace").split("\r\n"):
            name, colon, value = line.partition(":")
            if not colon:
                raise malformed()
            headers[name.strip().lower()] = value.strip()
        self._name, self._filename = _disposition(headers)
        self._content_type = headers.get("content-type", "")
        if self._name.lower() == "file" and self.form.file is None:
            if self.form.get("key") is None:
                raise invalid_argument(
                    "The bucket POST must contain the specified 'key'. If it is "
                    "specified, please check the order of the fields"
                )
            self._spool = self._spool_factory()
        elif self.form.file is None:
            self._names += len(self._name.encode("utf-8"))
            if self._names > MAX_FIELD_NAMES:
                raise too_long()
        elif self._name.lower() == "file":
            raise OSSError(
                400,
                "IncorrectNumberOfFilesInPOSTRequest",
                "POST requires exactly one file upload per request.",
            )

    def _body(self) -> bool:
        # Everything but a possible start of the delimiter leaves the
        # buffer at once, so it stays small whatever the part's size.
        at = self._buffer.find(self._delimiter)
        end = at if at >= 0 else max(0, len(self._buffer) - len(self._delimiter) + 1)
        if end:
            self._take(self._buffer[:end])
            self._buffer = self._buffer[end:]
        if at < 0:
            return False
        self._end_part()
        self._buffer = self._buffer[len(self._delimiter) :]
        self._state = "after-delimiter"
        return True

    def _take(self, data: bytes) -> None:
        if self._spool is not None:
            self._spool.write(data)
            return
        self._value_size += len(data)
        if self._value_size > MAX_FIELD_VALUE:
            raise too_long()
        if self.form.file is None:
            self._value.append(data)

    def _end_part(self) -> None:
        if self._spool is not None:
            self.form.file = self._spool.close(
                os.path.basename((self._filename or "").replace("\\", "/")),
                self._content_type,
            )
            self._spool = None
        elif self.form.file is None:
            self.form.fields.append((self._name, b"".join(self._value).decode("utf-8", "replace")))
        self._value = []
        self._value_size = 0
