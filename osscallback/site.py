# -*- test-case-name: tests.test_site -*-
"""
The web site: the browser client at C{/}, the API beside it, and requests
whose bodies are read with a cap.
"""

import re
from io import BytesIO
from typing import Any

from twisted.python.filepath import FilePath
from twisted.web import pages
from twisted.web.resource import Resource
from twisted.web.http import combinedLogFormatter
from twisted.web.server import Request, Site
from twisted.web.static import File

from osscallback.errors import Refusal
from osscallback.resources import refusal_body

# OSS callback bodies are small, and no other endpoint takes a body yet.
MAX_BODY = 1024 * 1024


def web_root() -> FilePath[str]:
    """
    The browser client's folder: inside the package when installed, at the
    top of the checkout otherwise.
    """
    package = FilePath(__file__).parent()
    installed = package.child("web")
    if installed.isdir():
        return installed
    return package.parent().child("web")


class WebClient(File):
    """
    Static files of the browser client, with no directory listings and
    content types that do not depend on the platform's mime.types.
    """

    contentTypes = {
        **File.contentTypes,
        ".html": "text/html; charset=utf-8",
        ".js": "text/javascript; charset=utf-8",
        ".css": "text/css; charset=utf-8",
        ".svg": "image/svg+xml",
        ".json": "application/json",
    }
    childNotFound = pages.notFound()
    forbidden = pages.forbidden()

    def directoryListing(self) -> Resource:
        return pages.notFound()

    def render_GET(self, request: Request) -> bytes | int:
        request.setHeader(b"x-content-type-options", b"nosniff")
        return super().render_GET(request)


class BoundedRequest(Request):
    """
    A request whose body is kept only up to L{MAX_BODY} bytes.  A larger
    body is read and dropped, and the request is answered 413 without
    reaching any resource.
    """

    body_too_large = False
    _received = 0

    def gotLength(self, length: int | None) -> None:
        self.body_too_large = length is not None and length > MAX_BODY
        super().gotLength(None if self.body_too_large else length)

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        if self._received > MAX_BODY:
            self.body_too_large = True
            return
        super().handleContentChunk(data)

    def process(self) -> None:
        if not self.body_too_large:
            return super().process()
        self.site = self.channel.site
        self.content = BytesIO()
        self.write(
            refusal_body(
                self,
                Refusal(
                    413,
                    "body_too_large",
                    f"The request body is larger than {MAX_BODY} bytes.",
                ),
            )
        )
        self.finish()


class _RedactedURI:
    """
    A request as the access log sees it: callback tokens hidden.
    """

    def __init__(self, request: Request) -> None:
        self._request = request
        self.uri = re.sub(rb"^/callback/[^?]*", b"/callback/<token>", request.uri)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._request, name)


def access_log_line(timestamp: str, request: Request) -> str:
    """
    The combined log format line for C{request}, without callback tokens.
    """
    return combinedLogFormatter(timestamp, _RedactedURI(request))


def make_site(api: dict[bytes, Resource], client: FilePath[str]) -> Site:
    """
    The site: the browser client in C{client} at C{/} and the API resources
    in C{api} beside it.
    """
    root = WebClient(client.path)
    for name, resource in api.items():
        root.putChild(name, resource)
    site = Site(root, requestFactory=BoundedRequest, logFormatter=access_log_line)
    site.displayTracebacks = False
    return site
