# -*- test-case-name: tests.test_emulator_imageinfo -*-
"""
Image width, height and format from the first bytes of a PNG, JPEG, GIF or
WebP file: enough for OSS's C{${imageInfo.*}} callback variables, with no
image library.

Pure.
"""

import struct
from typing import NamedTuple


class ImageInfo(NamedTuple):
    width: int
    height: int
    format: str


def _png(data: bytes) -> ImageInfo | None:
    if data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR" and len(data) >= 24:
        width, height = struct.unpack(">II", data[16:24])
        return ImageInfo(width, height, "png")
    return None


def _gif(data: bytes) -> ImageInfo | None:
    if data[:6] in (b"GIF87a", b"GIF89a") and len(data) >= 10:
        width, height = struct.unpack("<HH", data[6:10])
        return ImageInfo(width, height, "gif")
    return None


def _webp(data: bytes) -> ImageInfo | None:
    if data[:4] != b"RIFF" or data[8:12] != b"WEBP" or len(data) < 30:
        return None
    chunk = data[12:16]
    if chunk == b"VP8 " and data[23:26] == b"\x9d\x01\x2a":
        width, height = struct.unpack("<HH", data[26:30])
        return ImageInfo(width & 0x3FFF, height & 0x3FFF, "webp")
    if chunk == b"VP8L" and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return ImageInfo((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1, "webp")
    if chunk == b"VP8X":
        width = int.from_bytes(data[24:27], "little") + 1
        height = int.from_bytes(data[27:30], "little") + 1
        return ImageInfo(width, height, "webp")
    return None


def _jpeg(data: bytes) -> ImageInfo | None:
    if data[:2] != b"\xff\xd8":
        return None
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            return None
        marker = data[at + 1]
        if marker == 0xFF:
            at += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if at + 9 > len(data):
                return None
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return ImageInfo(width, height, "jpg")
        at += 2 + length
    return None


def image_info(head: bytes) -> ImageInfo | None:
    """
    The size and format of the image whose first bytes are C{head}, or
    L{None} when they are not a readable PNG, JPEG, GIF or WebP header.
    """
    for reader in (_png, _jpeg, _gif, _webp):
        info = reader(head)
        if info is not None:
            return info if info.width > 0 and info.height > 0 else None
    return None
