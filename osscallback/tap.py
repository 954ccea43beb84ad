# -*- test-case-name: tests.test_tap -*-
"""
The twistd glue: command-line options and the service they make.
"""

import gc
import os
import signal
import sys
from typing import Any
from urllib.parse import urlsplit

from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import IService, MultiService, Service
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.task import deferLater
from twisted.internet.endpoints import serverFromString
from twisted.internet.error import CannotListenError
from twisted.logger import Logger
from twisted.python import usage
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource

from osscallback.access import Access, RateLimiter
from osscallback.acceptance import CallbackAcceptor
from osscallback.headobject import BucketReader
from osscallback.hooks import HookError, IUploadHook, load_hook
from osscallback.ledger import Ledger
from osscallback.metrics import Metrics
from osscallback.recorder import Recorder
from osscallback.webhook import WebhookOutbox
from osscallback.workers import WORKER_ENVIRONMENT, ReusePortService, WorkerProcesses
from osscallback.config import (
    LOCAL_KEY_ID,
    LOCAL_KEY_SECRET,
    REPEATABLE,
    ConfigError,
    Settings,
    load_settings,
)
from osscallback.grant import GrantRules
from osscallback.issuer import GrantIssuer
from osscallback.emulator.bucket import TrustingOwnKey, emulated_bucket
from osscallback.keys import PublicKeyFetcher, PublicKeySource
from osscallback.policy import V4Signer
from osscallback.resources import (
    APIResource,
    CallbackResource,
    HealthResource,
    LimitsResource,
    MetricsResource,
    PolicyResource,
    ReadyResource,
    UploadsResource,
)
from osscallback.site import UploadSite, limit_connections, make_site, web_root

log = Logger()

# Open connections one process serves at most; more are closed at once.
MAX_CONNECTIONS = 2000
# The key OSS signs callbacks with.
OSS_KEY_URL = "https://gosspublic.alicdn.com/callback_pub_key_v1.pem"


class Options(usage.Options):
    """
    Options of C{twistd osscallback}.  Each also works as a setting of the
    C{[osscallback]} table of the C{--config} file, with C{_} for C{-}.
    """

    synopsis = "[--port PORT] [--config FILE] [options]"
    longdesc = (
        "Hands browsers signed upload grants for an Alibaba Cloud OSS bucket and "
        "verifies the upload callbacks OSS sends back.  Credentials come from "
        "OSS_ACCESS_KEY_ID, OSS_ACCESS_KEY_SECRET and OSS_SESSION_TOKEN; without "
        "them it runs in local mode.  Command line beats environment beats "
        "--config file beats default."
    )
    optFlags = [
        ["local", None, "Local mode: the embedded OSS serves the bucket "
         "(automatic when no credentials are configured)."],
        ["no-confirm", None, "Do not confirm callbacks with HeadObject "
         "(faster, but a record then rests on the callback's word)."],
        ["no-access-log", None, "Write no line per request (saves CPU)."],
    ]
    optParameters = [
        ["port", "p", None, "A port number or endpoint description [default: tcp:1234]."],
        ["config", None, None, "A TOML file with an [osscallback] table."],
        ["bucket", None, None, "The bucket uploads go to [local mode: local-bucket]."],
        ["region", None, None, "The region id, e.g. cn-hangzhou."],
        ["endpoint", None, None,
         "Where browsers POST [default: https://{bucket}.oss-{region}.aliyuncs.com]."],
        ["access-key-id", None, None, "The AccessKey id [env OSS_ACCESS_KEY_ID]."],
        ["access-key-secret-file", None, None,
         "A file holding the AccessKey secret [env OSS_ACCESS_KEY_SECRET]."],
        ["callback-url", None, None,
         "The public base URL OSS calls back [local mode: this server's /callback]."],
        ["upload-dir", None, None, "Every object key starts with this [default: uploads/]."],
        ["expire", None, None, "Grant lifetime in seconds [default: 300]."],
        ["max-size", None, None, "Largest upload in bytes [default: 1073741824]."],
        ["signature-version", None, None, "PostObject signature, 1 or 4 [default: 4]."],
        ["data-dir", None, None, "Where local state lives [default: ./osscallback-data]."],
        ["database", None, None,
         "sqlite:///path or postgresql://user@host/db "
         "[default: sqlite:///{data-dir}/uploads.sqlite3]."],
        ["token-secret-file", None, None,
         "A file holding the callback token secret [default: made once in --data-dir]."],
        ["hook", None, None,
         "package.module.name of an IUploadHook called with every recorded upload."],
        ["webhook-url", None, None, "POST every recorded upload as JSON to this URL."],
        ["webhook-secret-file", None, None,
         "A file holding the key of the webhook's HMAC-SHA256 signature."],
        ["log-format", None, None, "text or json (one JSON object per line) [default: text]."],
        ["auth-token-file", None, None,
         "A file holding the bearer token /policy and /uploads need "
         "[env OSSCALLBACK_AUTH_TOKEN]."],
        ["user-header", None, None,
         "Trust this header (set by a reverse proxy) to name the user."],
        ["rate-limit", None, None, "Grants per minute per client, 0 for no limit [default: 120]."],
        ["workers", None, None, "Processes sharing the port [default: 1]."],
    ]

    def __init__(self, reactor: Any = None, environ: Any = None) -> None:
        super().__init__()
        self._reactor = reactor
        self._environ = os.environ if environ is None else environ
        for name in REPEATABLE:
            self[name] = None

    def opt_allow_type(self, pattern: str) -> None:
        """
        A content type uploads may have, like image/* or application/pdf
        (repeatable) [default: any].
        """
        self["allow_type"] = (self["allow_type"] or []) + [pattern]

    def opt_cors_origin(self, origin: str) -> None:
        """
        An origin whose pages may use the bucket from a browser, or *
        (repeatable) [local mode: *].
        """
        self["cors_origin"] = (self["cors_origin"] or []) + [origin]

    def opt_trust_key_url(self, prefix: str) -> None:
        """
        A trusted prefix of callback public-key URLs (repeatable; replaces
        the defaults) [default: https://gosspublic.alicdn.com/ and
        http://gosspublic.alicdn.com/].
        """
        self["trust_key_url"] = (self["trust_key_url"] or []) + [prefix]

    def parseOptions(self, options: Any = None) -> None:
        """
        Parse, and turn a usage error into one line on standard error and
        exit status 1, instead of twistd's whole help text.
        """
        self.arguments = list(sys.argv[1:] if options is None else options)
        try:
            super().parseOptions(options)
        except usage.UsageError as e:
            raise SystemExit(f"twistd osscallback: {e}") from None

    def postOptions(self) -> None:
        given = {name.replace("-", "_"): value for name, value in self.items()}
        for flag in ("local", "no_confirm", "no_access_log"):
            given[flag] = True if given[flag] else None
        try:
            self.settings = load_settings(given, self._environ)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        self.hook = None
        if self.settings.hook is not None:
            try:
                self.hook = load_hook(self.settings.hook)
            except HookError as e:
                raise usage.UsageError(f"--hook: {e}") from None
        if self.settings.log_format == "json" and self.parent is not None:
            # twistd builds its logger from its own options after this.
            self.parent["logger"] = "osscallback.logs.json_observer"
        reactor = self._reactor
        if reactor is None:
            from twisted.internet import reactor
        port = self.settings.port
        try:
            self.endpoint = serverFromString(reactor, port)
        except (IndexError, KeyError):
            raise usage.UsageError(
                f"--port {port!r}: systemd passed no such socket; start the "
                "server from its .socket unit."
            ) from None
        except (ValueError, TypeError) as e:
            raise usage.UsageError(f"--port {port!r}: {e}") from None


def build_site(
    settings: Settings,
    reactor: Any,
    http: Any,
    ledger: Ledger,
    hook: IUploadHook | None = None,
) -> tuple[UploadSite, WebhookOutbox | None]:
    """
    The web site for C{settings}, and its webhook outbox if one is
    configured.

    @param http: the HTTP client for public keys, HeadObject, the emulator's
        callbacks and the webhook.
    """
    credentials = settings.credentials
    signer = (
        V4Signer(credentials, settings.region)
        if settings.signature_version == 4
        else None
    )
    rules = GrantRules(
        bucket=settings.bucket,
        upload_dir=settings.upload_dir,
        expire=settings.expire,
        max_size=settings.max_size,
        allow_types=settings.allow_types,
        by_prefix=signer is None,
    )
    metrics = Metrics()
    issuer = GrantIssuer(rules, credentials, signer, settings.token_secret)
    keys: PublicKeySource = PublicKeyFetcher(
        reactor, http, settings.trust_key_urls, metrics=metrics
    )
    api: dict[bytes, Resource] = {
        b"policy": PolicyResource(
            issuer, reactor, settings.endpoint, settings.callback_url, metrics
        ),
        b"healthz": HealthResource(),
        b"metrics": MetricsResource(metrics),
    }
    if settings.local:
        api[b"oss"], own_key = emulated_bucket(
            reactor,
            http,
            settings.data_dir,
            settings.bucket,
            settings.region,
            credentials,
            settings.cors_origins,
        )
        keys = TrustingOwnKey(own_key, keys)
    outbox = None
    if settings.webhook_url is not None and settings.webhook_secret is not None:
        outbox = WebhookOutbox(
            reactor, ledger, http, settings.webhook_url, settings.webhook_secret,
            metrics=metrics,
        )
    reader = (
        BucketReader(reactor, http, credentials, settings.region, settings.bucket)
        if settings.confirm
        else None
    )
    recorder = Recorder(
        reactor, ledger, reader, hook, outbox.wake if outbox else None, metrics
    )
    api[b"callback"] = CallbackResource(
        CallbackAcceptor(reactor, keys, settings.token_secret, recorder),
        settings.endpoint,
        metrics,
    )
    # Ready means OSS's own key is at hand, when it is trusted; in local mode
    # the emulator's key is in memory.
    oss_key_trusted = any(OSS_KEY_URL.startswith(p) for p in settings.trust_key_urls)
    ready_key = OSS_KEY_URL if oss_key_trusted and not settings.local else None
    api[b"readyz"] = ReadyResource(ledger, keys, ready_key)
    api[b"uploads"] = UploadsResource(
        ledger, recorder, settings.token_secret, reactor, settings.endpoint
    )
    api[b"limits"] = LimitsResource(
        settings.max_size, settings.allow_types, "oss/" if settings.local else None
    )
    upload_origin = None
    if settings.endpoint is not None:
        parts = urlsplit(settings.endpoint)
        upload_origin = f"{parts.scheme}://{parts.netloc}"
    access = Access(
        auth_token=settings.auth_token,
        user_header=None if settings.user_header is None else settings.user_header.encode(),
        cors_origins=settings.cors_origins,
        limiter=RateLimiter(reactor, settings.rate_limit) if settings.rate_limit else None,
    )
    for resource in api.values():
        if isinstance(resource, APIResource):
            resource.access = access
    site = make_site(
        api,
        web_root(),
        large_bodies=(b"/oss/",),
        upload_origin=upload_origin,
        metrics=metrics,
        access_log=settings.access_log,
    )
    return site, outbox


class LedgerService(Service):
    """
    Opens the ledger: creates or migrates its schema at start, trying again
    every few seconds while the database cannot be reached, and closes it at
    stop.
    """

    log = Logger()

    def __init__(self, ledger: Ledger, clock: Any, retry: float = 5.0) -> None:
        self._ledger = ledger
        self._clock = clock
        self._retry = retry

    def startService(self) -> None:
        super().startService()
        self._migrate()

    def _migrate(self) -> None:
        if not self.running:
            return

        def failed(failure: Any) -> None:
            self.log.error(
                "cannot prepare the ledger ({error}); trying again in {retry:.0f} s",
                error=failure.getErrorMessage()[:300], retry=self._retry,
            )
            self._clock.callLater(self._retry, self._migrate)

        attempt = Deferred.fromCoroutine(self._ledger.migrate())
        attempt.addErrback(failed)

    def stopService(self) -> "Deferred[None]":
        super().stopService()
        return self._ledger.close()


class OrderedServices(MultiService):
    """
    Services that stop one after another, last started first, each done
    before the next is stopped: stop listening, let answers finish, flush
    the outbox, close the ledger.
    """

    def stopService(self) -> "Deferred[None]":
        Service.stopService(self)

        async def stop() -> None:
            for service in reversed(list(self)):
                await maybeDeferred(service.stopService)

        return Deferred.fromCoroutine(stop())


class Listening(StreamServerEndpointService):
    """
    Listens on the endpoint before the program runs, or ends it with one
    line saying why (a port in use, say), not a traceback.
    """

    _raiseSynchronously = True

    def privilegedStartService(self) -> None:
        try:
            super().privilegedStartService()
        except CannotListenError as e:
            reason = getattr(e.socketError, "strerror", None) or str(e.socketError)
            raise SystemExit(
                f"twistd osscallback: cannot listen on {e.interface or '*'}:{e.port}: {reason}."
            ) from None


class StopOnSigterm(Service):
    """
    SIGTERM stops the reactor like a clean stop, so that twistd exits 0
    after the orderly shutdown rather than dying of the signal.
    """

    log = Logger()

    def __init__(self, reactor: Any) -> None:
        self._reactor = reactor
        self._previous: Any = None

    def startService(self) -> None:
        super().startService()

        def stop(signum: int, frame: Any) -> None:
            self.log.info("SIGTERM: stopping in order")
            self._reactor.callFromThread(self._reactor.stop)

        def install() -> None:
            # After the reactor has installed its own handlers.
            if self.running:
                self._previous = signal.signal(signal.SIGTERM, stop)

        self._reactor.callWhenRunning(install)

    def stopService(self) -> None:
        super().stopService()
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)
            self._previous = None


class DrainService(Service):
    """
    At stop, waits (a bounded time) for the answers being worked on.
    """

    def __init__(self, site: UploadSite, clock: Any, timeout: float = 10.0) -> None:
        self._site = site
        self._clock = clock
        self._timeout = timeout

    log = Logger()

    def stopService(self) -> "Deferred[Any]":
        super().stopService()
        self.log.info(
            "stopping: waiting for {count} answers (at most {timeout:.0f} s)",
            count=len(self._site.in_flight), timeout=self._timeout,
        )
        drained = self._site.drained(self._clock, self._timeout)
        # The answers are written; give the sockets a moment to send them
        # before the reactor closes every connection.
        drained.addCallback(lambda _: deferLater(self._clock, 0.2, lambda: None))
        return drained


def makeService(options: Options) -> IService:
    """
    The service twistd runs: the site on the configured endpoint (shared
    with more worker processes when asked), the ledger and the webhook
    outbox; on SIGTERM they stop in order.
    """
    from twisted.internet import reactor
    from treq.client import HTTPClient

    settings = options.settings
    if settings.local:
        log.warn(
            "LOCAL MODE: no OSS credentials configured, so the embedded OSS serves "
            "bucket {bucket} at /oss/ from {data_dir}, with throwaway credentials. "
            "Nothing reaches Alibaba Cloud; set OSS_ACCESS_KEY_ID and "
            "OSS_ACCESS_KEY_SECRET to use a real bucket.",
            bucket=settings.bucket,
            data_dir=os.path.abspath(settings.data_dir),
        )
    http = HTTPClient(Agent(reactor, pool=HTTPConnectionPool(reactor)))
    ledger = Ledger.open(settings.database, reactor)
    site, outbox = build_site(settings, reactor, http, ledger, options.hook)
    # Access lines go to standard output directly, buffered and flushed
    # every second (and at stop), not one system call per request.
    access = os.fdopen(os.dup(1), "w", buffering=64 * 1024)
    site.access_stream = access
    site.access_json = settings.log_format == "json"
    service = OrderedServices()
    # What is loaded by then lives as long as the process: left out of the
    # garbage collector's full passes, which otherwise walk it all every few
    # thousand requests.
    reactor.callWhenRunning(gc.freeze)
    TimerService(1.0, access.flush).setServiceParent(service)
    reactor.addSystemEventTrigger("after", "shutdown", access.flush)
    StopOnSigterm(reactor).setServiceParent(service)
    LedgerService(ledger, reactor).setServiceParent(service)
    if outbox is not None:
        outbox.setServiceParent(service)
    DrainService(site, reactor).setServiceParent(service)
    worker = os.environ.get(WORKER_ENVIRONMENT)
    listening = limit_connections(site, MAX_CONNECTIONS)
    if settings.workers > 1 or worker:
        ReusePortService(reactor, settings.port, listening).setServiceParent(service)
    else:
        Listening(options.endpoint, listening).setServiceParent(service)
    if settings.workers > 1 and not worker:
        environ = dict(os.environ)
        if settings.local:
            # Every worker must sign and check with the same throwaway keys.
            environ[LOCAL_KEY_ID] = settings.credentials.access_key_id
            environ[LOCAL_KEY_SECRET] = settings.credentials.access_key_secret
        WorkerProcesses(reactor, settings.workers - 1, options.arguments, environ).setServiceParent(service)
    return service
