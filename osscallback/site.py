# -*- test-case-name: tests.test_site -*-
"""
The web site: the browser client at C{/}, the API beside it, and requests
whose bodies are read with a cap.
"""

import json
import re
import time
from datetime import datetime, timezone
from io import BytesIO
from typing import IO, Any

from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import LoopingCall
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.python.failure import Failure
from twisted.python.filepath import FilePath
from twisted.web import pages
from twisted.web.resource import Resource
from twisted.web.server import Request, Site
from twisted.web.static import File

from osscallback.errors import Refusal
from osscallback.metrics import Metrics
from osscallback.resources import redacted, refusal_body

# OSS callback bodies are small, and no other API endpoint takes a body.
MAX_BODY = 1024 * 1024
# Uploads to the embedded OSS: its largest object plus room for the form.
MAX_UPLOAD_BODY = 5 * 1024**3 + 16 * 1024**2


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
    content_security_policy = b""

    def createSimilarFile(self, path: str) -> "WebClient":
        similar = super().createSimilarFile(path)
        similar.content_security_policy = self.content_security_policy
        return similar

    def directoryListing(self) -> Resource:
        return pages.notFound()

    def render_GET(self, request: Request) -> bytes | int:
        request.setHeader(b"x-content-type-options", b"nosniff")
        request.setHeader(b"content-security-policy", self.content_security_policy)
        request.setHeader(b"referrer-policy", b"same-origin")
        return super().render_GET(request)


def content_security_policy(upload_origin: str | None) -> bytes:
    """
    The client's Content-Security-Policy: everything from this server only,
    except uploads, which may also go to C{upload_origin} (the bucket).
    """
    connect = "'self'" + (f" {upload_origin}" if upload_origin else "")
    return (
        "default-src 'self'; script-src 'self'; style-src 'self'; "
        "img-src 'self' blob: data:; "
        f"connect-src {connect}; object-src 'none'; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ).encode("ascii")


class UploadSite(Site):
    """
    The site, knowing which paths take large bodies, timing every request,
    and writing the access log unless told not to.

    @ivar large_bodies: path prefixes allowed L{MAX_UPLOAD_BODY} bytes of
        body instead of L{MAX_BODY}.
    @ivar access_log: whether to write a line per request.
    @ivar access_stream: where those lines go straight to, bypassing the
        log system (a tenth of the cost); L{None} for Twisted's way.
    @ivar access_json: write them as JSON objects rather than text.
    @ivar header_deadline: seconds a client has to send its request line
        and headers.
    """

    large_bodies: tuple[bytes, ...] = ()
    header_deadline = 10.0
    access_log = True
    access_stream: IO[str] | None = None
    access_json = False
    metrics: Metrics
    in_flight: "set[Deferred[Any]]"
    awaiting: "dict[BoundedRequest, float]"
    _sweeping: LoopingCall | None = None

    def startFactory(self) -> None:
        super().startFactory()
        # One timer for all connections rather than one per request.
        self._sweeping = LoopingCall(self.sweep)
        self._sweeping.clock = self.reactor
        self._sweeping.start(self.header_deadline / 4, now=False)

    def stopFactory(self) -> None:
        if self._sweeping is not None and self._sweeping.running:
            self._sweeping.stop()
        super().stopFactory()

    def sweep(self) -> None:
        """
        Cut the connections whose request line and headers have taken longer
        than C{header_deadline}.
        """
        too_old = time.perf_counter() - self.header_deadline
        for request in [r for r, started in self.awaiting.items() if started < too_old]:
            del self.awaiting[request]
            if request.channel is not None and request.channel.transport is not None:
                request.channel.transport.abortConnection()

    def drained(self, clock: Any, timeout: float) -> "Deferred[Any]":
        """
        Fires when the answers being worked on now are all given, or after
        C{timeout} seconds, whichever comes first.
        """

        def observe(answer: "Deferred[Any]") -> "Deferred[None]":
            given: Deferred[None] = Deferred()
            answer.addBoth(lambda result: (given.called or given.callback(None), result)[1])
            return given

        waiting = DeferredList([observe(a) for a in self.in_flight], consumeErrors=True)
        return waiting.addTimeout(timeout, clock, onTimeoutCancel=lambda *_: None)

    def body_limit(self, path: bytes) -> int:
        return MAX_UPLOAD_BODY if path.startswith(self.large_bodies) else MAX_BODY

    def log(self, request: Request) -> None:
        elapsed = time.perf_counter() - getattr(request, "started", time.perf_counter())
        self.metrics.time(request.path, elapsed)
        if not self.access_log:
            return
        if self.access_stream is None:
            super().log(request)
            return
        line = access_log_line(self._logDateTime, request)
        if self.access_json:
            line = json.dumps(
                {"time": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
                 "level": "info", "namespace": "osscallback.access", "message": line}
            )
        self.access_stream.write(line + "\n")


class BoundedRequest(Request):
    """
    A request whose body is kept only up to its site's limit for its path.
    A larger body is read and dropped, and the request is answered 413
    without reaching any resource.  (Bodies over 100 kB are spooled to a
    temporary file by Twisted, never held in memory.)
    """

    body_too_large = False
    _received = 0
    _limit = MAX_BODY

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.started = time.perf_counter()
        # A client must send its request line and headers within the site's
        # deadline, however slowly it trickles them (see UploadSite.sweep).
        self.channel.site.awaiting[self] = self.started

    def gotLength(self, length: int | None) -> None:
        self.channel.site.awaiting.pop(self, None)
        # The request line is parsed but not yet handed to the request; the
        # channel holds its path.
        self._limit = self.channel.site.body_limit(self.channel._path)
        self.body_too_large = length is not None and length > self._limit
        super().gotLength(length if not self.body_too_large else 0)

    def connectionLost(self, reason: Failure) -> None:
        if self.channel is not None:
            self.channel.site.awaiting.pop(self, None)
        super().connectionLost(reason)

    def handleContentChunk(self, data: bytes) -> None:
        self._received += len(data)
        if self._received > self._limit:
            self.body_too_large = True
        if not self.body_too_large:
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
                    f"The request body is larger than {self._limit} bytes.",
                ),
            )
        )
        self.finish()


_UNSAFE = re.compile(r'[\x00-\x1f\x7f"\\]')


def _escape(value: bytes) -> str:
    text = value.decode("utf-8", "backslashreplace")
    return _UNSAFE.sub(lambda m: "\\x%02x" % ord(m.group()), text)


def access_log_line(timestamp: str, request: Request) -> str:
    """
    The combined log format line for C{request}, with callback tokens
    hidden and every value escaped so no request can forge a log line.
    """
    uri = redacted(request.uri)
    address = request.getClientAddress()
    return '"%s" - - %s "%s %s %s" %d %s "%s" "%s"' % (
        getattr(address, "host", "-"),
        timestamp,
        _escape(request.method),
        _escape(uri),
        _escape(request.clientproto),
        request.code,
        request.sentLength or "-",
        _escape(request.getHeader(b"referer") or b"-"),
        _escape(request.getHeader(b"user-agent") or b"-"),
    )


class _Connection(ProtocolWrapper):
    """
    One accepted connection.  Its addresses never change, so they are read
    from the socket once rather than by a system call per request; and it
    notes when it last moved data, for L{ConnectionLimit.close_idle}.
    """

    _host: Any = None
    _peer: Any = None
    active = 0.0

    def makeConnection(self, transport: Any) -> None:
        self.active = time.monotonic()
        super().makeConnection(transport)

    def dataReceived(self, data: bytes) -> None:
        self.active = time.monotonic()
        self.wrappedProtocol.dataReceived(data)

    def write(self, data: bytes) -> None:
        self.active = time.monotonic()
        self.transport.write(data)

    def writeSequence(self, data: Any) -> None:
        self.active = time.monotonic()
        self.transport.writeSequence(data)

    def getHost(self) -> Any:
        if self._host is None:
            self._host = self.transport.getHost()
        return self._host

    def getPeer(self) -> Any:
        if self._peer is None:
            self._peer = self.transport.getPeer()
        return self._peer


class ConnectionLimit(WrappingFactory):
    """
    The factory to listen with: it closes new connections at once while
    C{limit} are open, and closes connections idle for C{idle_timeout}
    seconds.  One periodic sweep does that for all of them, where Twisted's
    own idle timeout set and cancelled a timer at every request.

    @ivar idle_timeout: seconds without data in or out; a connection that
        does not close within L{ABORT_AFTER} more seconds is aborted.
    """

    protocol = _Connection
    idle_timeout = 60.0
    ABORT_AFTER = 15.0
    _sweeping: LoopingCall | None = None

    def __init__(self, wrapped: Any, limit: int) -> None:
        super().__init__(wrapped)
        self.limit = limit

    def startFactory(self) -> None:
        super().startFactory()
        self._sweeping = LoopingCall(self.close_idle)
        self._sweeping.clock = self.wrappedFactory.reactor
        self._sweeping.start(self.idle_timeout / 12, now=False)

    def stopFactory(self) -> None:
        if self._sweeping is not None and self._sweeping.running:
            self._sweeping.stop()
        super().stopFactory()

    def buildProtocol(self, addr: Any) -> Any:
        if len(self.protocols) >= self.limit:
            return None
        return super().buildProtocol(addr)

    def close_idle(self) -> None:
        """
        Close the connections that moved no data for C{idle_timeout}
        seconds, and abort those still open L{ABORT_AFTER} seconds later.
        """
        now = time.monotonic()
        for connection in list(self.protocols):
            idle = now - connection.active
            if idle > self.idle_timeout + self.ABORT_AFTER:
                connection.transport.abortConnection()
            elif idle > self.idle_timeout:
                connection.transport.loseConnection()


def limit_connections(site: UploadSite, limit: int) -> ConnectionLimit:
    """
    The factory to listen with: C{site}, refusing connections beyond
    C{limit} open ones and closing idle ones (which the site's own timers
    then need not).
    """
    site.timeOut = None
    return ConnectionLimit(site, limit)


def make_site(
    api: dict[bytes, Resource],
    client: FilePath[str],
    large_bodies: tuple[bytes, ...] = (),
    upload_origin: str | None = None,
    metrics: Metrics | None = None,
    access_log: bool = True,
    access_stream: IO[str] | None = None,
    access_json: bool = False,
) -> UploadSite:
    """
    The site: the browser client in C{client} at C{/} and the API resources
    in C{api} beside it.

    @param large_bodies: path prefixes that take uploads.
    @param upload_origin: the bucket's origin, when browsers upload to
        another origin than this server's.
    """
    root = WebClient(client.path)
    root.content_security_policy = content_security_policy(upload_origin)
    for name, resource in api.items():
        root.putChild(name, resource)
    # Without parsePOSTFormSubmission=False Twisted reads whole form bodies
    # into request.args (a 1 GB upload into memory), and its Content-Type
    # parser raises on some hostile values.  Nothing here wants it: callbacks
    # need the raw bytes, and uploads are parsed as a stream.
    site = UploadSite(
        root,
        requestFactory=BoundedRequest,
        logFormatter=access_log_line,
        parsePOSTFormSubmission=False,
    )
    site.large_bodies = large_bodies
    site.in_flight = set()
    site.awaiting = {}
    site.metrics = metrics or Metrics()
    site.access_log = access_log
    site.access_stream = access_stream
    site.access_json = access_json
    site.displayTracebacks = False
    return site
