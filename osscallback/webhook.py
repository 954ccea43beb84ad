# -*- test-case-name: tests.test_webhook -*-
"""
The webhook: each recorded upload POSTed as JSON to the application, signed
with HMAC-SHA256 over a timestamp and the body, from the ledger's durable
outbox, retried with growing delays until the receiver takes it.
"""

import hashlib
import hmac
import json

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from osscallback.errors import Refusal
from osscallback.httpclient import HTTPPoster
from osscallback.ledger import Delivery, Ledger
from osscallback.metrics import Metrics

SIGNATURE_HEADER = b"x-osscallback-signature"
TIMESTAMP_HEADER = b"x-osscallback-timestamp"
DELIVERY_HEADER = b"x-osscallback-delivery"


def webhook_signature(secret: bytes, timestamp: str, body: bytes) -> str:
    """
    The signature header's value: C{sha256=} and the hex HMAC-SHA256 of
    C{timestamp + "." + body} under C{secret}.  Receivers recompute it, and
    reject old timestamps to stop replays.
    """
    digest = hmac.new(secret, timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return "sha256=" + digest.hexdigest()


def retry_delay(attempts: int) -> float:
    """
    Seconds before the next try after C{attempts} failures: 2, 4, 8, ...
    up to ten minutes.
    """
    return float(min(2 ** attempts, 600))


class WebhookOutbox(Service):
    """
    Delivers the outbox: at start, whenever an upload is recorded, and when
    a postponed delivery falls due.
    """

    log = Logger()

    def __init__(
        self,
        clock: IReactorTime,
        ledger: Ledger,
        http: HTTPPoster,
        url: str,
        secret: bytes,
        timeout: float = 10.0,
        idle: float = 30.0,
        metrics: Metrics | None = None,
    ) -> None:
        self._clock = clock
        self._ledger = ledger
        self._http = http
        self._url = url
        self._secret = secret
        self._timeout = timeout
        self._idle = idle
        self._running: Deferred[None] | None = None
        self._again = False
        self._timer: IDelayedCall | None = None
        self._metrics = metrics or Metrics()

    def startService(self) -> None:
        super().startService()
        self.wake()

    def stopService(self) -> "Deferred[None] | None":
        super().stopService()
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        return self._running

    def wake(self) -> None:
        """
        Deliver what is due now; if a round is running, run another after.
        """
        if not self.running:
            return
        if self._running is not None:
            self._again = True
            return
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._running = Deferred.fromCoroutine(self._round())
        self._running.addErrback(
            lambda f: self.log.failure("webhook delivery round failed", f)
        )
        self._running.addBoth(self._done)

    def _done(self, _: object) -> None:
        self._running = None
        if not self.running:
            return
        if self._again:
            self._again = False
            self.wake()
        else:
            self._timer = self._clock.callLater(self._next_wake, self.wake)

    async def _round(self) -> None:
        self._next_wake = self._idle
        while True:
            try:
                due = await self._ledger.due(self._clock.seconds(), 20)
            except Refusal:
                self._next_wake = 5.0  # the ledger is down; it logged why
                return
            for delivery in due:
                await self._deliver(delivery)
            if len(due) < 20:
                break
        try:
            self._metrics.outbox.set(await self._ledger.pending())
        except Refusal:
            pass

    async def _deliver(self, delivery: Delivery) -> None:
        body = json.dumps(
            {"event": "upload", "upload": delivery.upload.as_json()},
            separators=(",", ":"),
            ensure_ascii=False,
        ).encode("utf-8")
        timestamp = str(int(self._clock.seconds()))
        headers = {
            b"content-type": [b"application/json"],
            TIMESTAMP_HEADER: [timestamp.encode()],
            SIGNATURE_HEADER: [webhook_signature(self._secret, timestamp, body).encode()],
            DELIVERY_HEADER: [str(delivery.id).encode()],
        }
        attempt = self._http.post(self._url, data=body, headers=headers, allow_redirects=False)
        attempt.addTimeout(self._timeout, self._clock)
        try:
            response = await attempt
            await response.content()
            ok = 200 <= response.code < 300
            error = f"the receiver answered {response.code}"
        except Exception as e:
            ok, error = False, repr(e)
        now = self._clock.seconds()
        if ok:
            await self._ledger.delivered(delivery.id, now)
            self.log.info("webhook delivered upload {key}", key=delivery.upload.key)
            return
        delay = retry_delay(delivery.attempts)
        self.log.warn(
            "webhook for {key} failed ({error}); next try in {delay:.0f} s",
            key=delivery.upload.key, error=error, delay=delay,
        )
        await self._ledger.postpone(delivery.id, delivery.attempts + 1, now + delay, error)
        self._next_wake = min(self._next_wake, delay)
