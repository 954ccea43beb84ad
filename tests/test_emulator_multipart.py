"""
Tests for L{osscallback.emulator.multipart}: the streaming form parser.
"""

import hashlib
import os
import tracemalloc

from fastcrc import crc64
from twisted.trial.unittest import SynchronousTestCase

from osscallback.emulator.errors import OSSError
from osscallback.emulator.multipart import (
    MAX_FIELD_VALUE,
    FileSpool,
    FormParser,
    PostForm,
    boundary_of,
)
from tests.helpers import form_body


def crc64_model(data: bytes) -> int:
    """
    CRC-64/ECMA-182 as OSS computes it (reflected, init and xor-out all
    ones), bit by bit: an independent model of the fast implementation.
    """
    poly = 0xC96C5795D7870F42  # 0x42F0E1EBA9EA3693 reflected
    crc = 0xFFFFFFFFFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ poly if crc & 1 else crc >> 1
    return crc ^ 0xFFFFFFFFFFFFFFFF


class ParserTests(SynchronousTestCase):
    """
    L{FormParser}.
    """

    def setUp(self) -> None:
        self.folder = self.mktemp()
        os.makedirs(self.folder)

    def parse(self, content_type: bytes, body: bytes, chunk: int = 7) -> PostForm:
        parser = FormParser(boundary_of(content_type), lambda: FileSpool(self.folder))
        for at in range(0, len(body), chunk):
            parser.feed(body[at : at + chunk])
        return parser.finish()

    def refused(self, content_type: bytes, body: bytes) -> OSSError:
        with self.assertRaises(OSSError) as caught:
            self.parse(content_type, body)
        self.assertEqual(os.listdir(self.folder), [])
        return caught.exception

    def test_fieldsAndFile(self) -> None:
        """
        Fields before the file are kept in order; the file is spooled to
        disk with its name, type, size, MD5 and CRC-64; fields after it
        are ignored; any chunk size gives the same result.
        """
        data = os.urandom(5000) + b"\r\n--" + b"\r\n"
        header, body = form_body(
            [("key", "k/${filename}"), ("x:a", "1")],
            ("dir/photo.png", "image/png", data),
            after=(("submit", "Upload"),),
        )
        for chunk in (1, 7, 64, 100000):
            form = self.parse(header, body, chunk)
            self.assertEqual(form.fields, [("key", "k/${filename}"), ("x:a", "1")])
            assert form.file is not None
            self.assertEqual(form.file.filename, "photo.png")
            self.assertEqual(form.file.content_type, "image/png")
            self.assertEqual(form.file.size, len(data))
            self.assertEqual(form.file.md5, hashlib.md5(data).digest())
            self.assertEqual(form.file.crc64, crc64_model(data))
            with open(form.file.path, "rb") as f:
                self.assertEqual(f.read(), data)
            os.unlink(form.file.path)

    def test_crc64CheckValue(self) -> None:
        """
        The CRC-64 used is CRC-64/ECMA with OSS's parameters: check value
        0x995DC9BBDF1939FA, equal to the bitwise model.
        """
        self.assertEqual(crc64.xz(b"123456789"), 0x995DC9BBDF1939FA)
        self.assertEqual(crc64_model(b"123456789"), 0x995DC9BBDF1939FA)

    def test_caseInsensitiveNames(self) -> None:
        """
        Field lookups ignore case, as OSS does.
        """
        header, body = form_body([("Key", "k"), ("SIGNATURE", "s")], ("a", "text/plain", b"x"))
        form = self.parse(header, body)
        self.assertEqual((form.get("key"), form.get("Signature")), ("k", "s"))
        os.unlink(form.file.path)  # type: ignore[union-attr]

    def test_keyAfterFile(self) -> None:
        """
        A file before the key is refused before any of it is spooled.
        """
        header, body = form_body([("policy", "p")], ("a", "text/plain", b"x"), after=(("key", "k"),))
        self.assertEqual(self.refused(header, body).code, "InvalidArgument")

    def test_twoFiles(self) -> None:
        """
        A second file part is refused and the first is removed.
        """
        header, first = form_body([("key", "k")], ("a", "text/plain", b"x"))
        _, second = form_body([], ("b", "text/plain", b"y"))
        end = first.rindex(b"--" + header.split(b"boundary=")[1] + b"--")
        self.assertEqual(
            self.refused(header, first[:end] + second).code,
            "IncorrectNumberOfFilesInPOSTRequest",
        )

    def test_malformed(self) -> None:
        """
        A body that is not multipart, has no boundary, ends early or has a
        part without a name is MalformedPOSTRequest.
        """
        header, body = form_body([("key", "k")], ("a", "text/plain", b"data"))
        for content_type, text in [
            (b"application/x-www-form-urlencoded", body),
            (b"multipart/form-data", body),
            (header, body[:-10]),
            (header, body.replace(b'name="key"', b'title="key"')),
            (header, b"no delimiter at all"),
        ]:
            with self.assertRaises(OSSError) as caught:
                self.parse(content_type, text)
            self.assertEqual(caught.exception.code, "MalformedPOSTRequest")
        self.assertEqual(os.listdir(self.folder), [])

    def test_fieldTooLong(self) -> None:
        """
        A field value over 2 MB is FieldItemTooLong.
        """
        header, body = form_body([("key", "k"), ("x:big", "v" * (MAX_FIELD_VALUE + 1))], None)
        self.assertEqual(self.refused(header, body).code, "FieldItemTooLong")

    def test_largeFileStreamsInBoundedMemory(self) -> None:
        """
        A 16 MB file passes through the parser without being held in
        memory: the parser's peak allocation stays under 2 MB.
        """
        header, head = form_body([("key", "k")], ("big.bin", "application/octet-stream", b""))
        boundary = header.split(b"boundary=")[1]
        opening, closing = head.split(b"\r\n--" + boundary + b"--")
        chunk = os.urandom(64 * 1024)
        parser = FormParser(boundary_of(header), lambda: FileSpool(self.folder))
        tracemalloc.start()
        try:
            parser.feed(opening)
            for _ in range(256):
                parser.feed(chunk)
            parser.feed(b"\r\n--" + boundary + b"--" + closing)
            form = parser.finish()
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert form.file is not None
        self.assertEqual(form.file.size, 16 * 1024 * 1024)
        self.assertLess(peak, 2 * 1024 * 1024)
        os.unlink(form.file.path)
