"""
Tests for L{osscallback.emulator.notify} and
L{osscallback.emulator.imageinfo}: the callback parameter, the body
template, and image sizes.
"""

import base64
import json
import struct

from twisted.trial.unittest import SynchronousTestCase

from osscallback.emulator.errors import OSSError
from osscallback.emulator.imageinfo import ImageInfo, image_info
from osscallback.emulator.notify import (
    FORM,
    JSON,
    CallbackSpec,
    parse_callback,
    render_body,
)
from tests.helpers import png


def parameter(document: object) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


VALUES = {
    "bucket": "b-1",
    "object": "headSculpture/jikang2.jpg",
    "size": 108904,
    "mimeType": "image/jpeg",
    "imageInfo.width": 200,
    "imageInfo.height": 278,
    "x:fname": 'a "quoted" name.jpg',
}


class ParseCallbackTests(SynchronousTestCase):
    """
    L{parse_callback}.
    """

    def test_valid(self) -> None:
        """
        URLs split on ';', the body and its type are read.
        """
        spec = parse_callback(
            parameter({"callbackUrl": "http://a.test/cb;https://b.test/cb",
                       "callbackBody": "o=${object}&u=${x:uid}",
                       "callbackBodyType": JSON, "callbackHost": "h.test"}),
            {"x:uid": "1"},
        )
        self.assertEqual(spec.urls, ("http://a.test/cb", "https://b.test/cb"))
        self.assertEqual((spec.body_type, spec.host), (JSON, "h.test"))

    def test_refusals(self) -> None:
        """
        Everything OSS refuses in a callback parameter is InvalidArgument.
        """
        good = {"callbackUrl": "http://a.test/cb", "callbackBody": "b=${bucket}"}
        for document, custom in [
            ("not base64!", {}),
            (parameter([1]), {}),
            (parameter({**good, "callbackUrl": ""}), {}),
            (parameter({**good, "callbackUrl": ";".join(["http://a.test/"] * 6)}), {}),
            (parameter({**good, "callbackUrl": "http://a.test:99999/"}), {}),
            (parameter({**good, "callbackUrl": "ftp://a.test/"}), {}),
            (parameter({**good, "callbackBody": ""}), {}),
            (parameter({**good, "callbackBodyType": "text/plain"}), {}),
            (parameter({**good, "callbackBody": "${nonsense}"}), {}),
            (parameter(good), {"x:Upper": "1"}),
        ]:
            with self.assertRaises(OSSError) as caught:
                parse_callback(document, custom)
            self.assertEqual((caught.exception.status, caught.exception.code), (400, "InvalidArgument"))


class RenderBodyTests(SynchronousTestCase):
    """
    L{render_body}.
    """

    def test_form(self) -> None:
        """
        Form mode URL-encodes every value, '/' included, as the real
        callback CB-2 shows.
        """
        spec = CallbackSpec(("http://a/",), None,
                            "filename=${object}&size=${size}&mimeType=${mimeType}"
                            "&height=${imageInfo.height}&width=${imageInfo.width}", FORM)
        self.assertEqual(
            render_body(spec, VALUES),
            b"filename=headSculpture%2Fjikang2.jpg&size=108904&mimeType=image%2Fjpeg"
            b"&height=278&width=200",
        )

    def test_json(self) -> None:
        """
        JSON mode gives the body of the real callback CB-3 for its template:
        strings quoted, numbers bare, values inside a string literal raw.
        """
        spec = CallbackSpec(("http://a/",), None,
                            '{"name":${x:fname},"source_name":${object},"size":${size},'
                            '"pic_info":"${imageInfo.width},${imageInfo.height}"}', JSON)
        body = render_body(spec, VALUES)
        self.assertEqual(
            json.loads(body),
            {"name": 'a "quoted" name.jpg', "source_name": "headSculpture/jikang2.jpg",
             "size": 108904, "pic_info": "200,278"},
        )
        self.assertIn(b'"source_name":"headSculpture/jikang2.jpg"', body)

    def test_jsonMissingImage(self) -> None:
        """
        A non-image's empty sizes stay valid JSON (null).
        """
        spec = CallbackSpec(("http://a/",), None, '{"w":${imageInfo.width}}', JSON)
        self.assertEqual(json.loads(render_body(spec, {})), {"w": None})


class ImageInfoTests(SynchronousTestCase):
    """
    L{image_info}.
    """

    def test_formats(self) -> None:
        """
        PNG, GIF, JPEG and the three WebP kinds give their sizes; other
        bytes give None.
        """
        jpeg = (b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + b"\x00" * 9
                + b"\xff\xc0" + struct.pack(">HBHH", 17, 8, 480, 640) + b"\x03")
        webp_lossy = (b"RIFF\x00\x00\x00\x00WEBPVP8 \x00\x00\x00\x00" + b"\x00\x00\x00"
                      + b"\x9d\x01\x2a" + struct.pack("<HH", 320, 240))
        bits = (99) | (49 << 14)
        webp_lossless = b"RIFF\x00\x00\x00\x00WEBPVP8L\x00\x00\x00\x00\x2f" + bits.to_bytes(4, "little") + b"\x00" * 8
        webp_extended = (b"RIFF\x00\x00\x00\x00WEBPVP8X\x00\x00\x00\x00" + b"\x00" * 4
                         + (1023).to_bytes(3, "little") + (767).to_bytes(3, "little"))
        for data, info in [
            (png(7, 5), ImageInfo(7, 5, "png")),
            (b"GIF89a" + struct.pack("<HH", 10, 20) + b"\x00" * 10, ImageInfo(10, 20, "gif")),
            (jpeg, ImageInfo(640, 480, "jpg")),
            (webp_lossy, ImageInfo(320, 240, "webp")),
            (webp_lossless, ImageInfo(100, 50, "webp")),
            (webp_extended, ImageInfo(1024, 768, "webp")),
            (b"plain text", None),
            (png(1, 1)[:20], None),
            (b"\xff\xd8\xff", None),
        ]:
            self.assertEqual(image_info(data), info)
