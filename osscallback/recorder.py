# -*- test-case-name: tests.test_acceptance -*-
"""
Recording an upload: confirm it with the bucket, write it to the ledger
exactly once, and hand it to the application.
"""

import time
from typing import Any, Callable

from twisted.internet.interfaces import IReactorTime

from osscallback.callback import CallbackClaims
from osscallback.errors import Refusal
from osscallback.grant import Grant
from osscallback.headobject import BucketReader, ObjectFacts
from osscallback.hooks import IUploadHook, hook_answer
from osscallback.ledger import AlreadyRecorded, Ledger, Upload
from osscallback.metrics import Metrics

HOOK_TIMEOUT = 3.0


def _not_confirmed(why: str) -> Refusal:
    return Refusal(
        403, "not_confirmed", f"The bucket does not confirm this upload: {why}."
    )


def _compare(claims: CallbackClaims, facts: ObjectFacts | None) -> None:
    if facts is None:
        raise _not_confirmed("there is no such object")
    if facts.size != claims.size:
        raise _not_confirmed("its size differs")
    if claims.etag and facts.etag != claims.etag.strip('"').upper():
        raise _not_confirmed("its ETag differs")
    if claims.mime_type and facts.content_type and facts.content_type != claims.mime_type:
        raise _not_confirmed("its content type differs")


class Recorder:
    """
    Turns accepted uploads into records and answers.

    @ivar reader: the bucket's HeadObject client, or L{None} when
        confirmation is switched off.
    @ivar delivered: called after each new record, to wake the webhook.
    """

    def __init__(
        self,
        clock: IReactorTime,
        ledger: Ledger,
        reader: BucketReader | None,
        hook: IUploadHook | None,
        webhook: Callable[[], None] | None,
        metrics: Metrics | None = None,
    ) -> None:
        self._clock = clock
        self._ledger = ledger
        self.reader = reader
        self._hook = hook
        self._webhook = webhook
        self._metrics = metrics or Metrics()

    def _upload(self, grant: Grant, key: str, size: int, etag: str, content_type: str,
                request_id: str, width: int | None = None, height: int | None = None) -> Upload:
        return Upload(
            grant_id=grant.id, key=key, bucket=grant.bucket, size=size,
            etag=etag.strip('"').upper(), content_type=content_type,
            width=width, height=height, user=grant.user,
            granted_at=float(grant.issued), received_at=self._clock.seconds(),
            request_id=request_id,
        )

    async def _write(self, upload: Upload) -> Upload:
        outbox_at = self._clock.seconds() if self._webhook is not None else None
        started = time.perf_counter()
        recorded = await self._ledger.record(upload, outbox_at)
        self._metrics.ledger_writes.observe(time.perf_counter() - started)
        if self._webhook is not None:
            self._webhook()
        return recorded

    async def record_callback(
        self, grant: Grant, claims: CallbackClaims, bucket_url: str
    ) -> dict[str, Any]:
        """
        Confirm a verified callback's claims with the bucket, record the
        upload, and give the answer for OSS.

        @raise Refusal: 403 when the bucket does not confirm it, 409 when it
            is recorded already, 503 when bucket or ledger cannot answer.
        """
        if self.reader is not None:
            _compare(claims, await self.reader.head(bucket_url, claims.key))
        upload = self._upload(
            grant, claims.key, claims.size, claims.etag, claims.mime_type,
            claims.request_id, claims.width, claims.height,
        )
        try:
            recorded = await self._write(upload)
        except AlreadyRecorded:
            raise Refusal(
                409, "already_recorded",
                "This upload was recorded already; a callback counts only once.",
            ) from None
        return await self.answer(recorded)

    async def reconcile(self, grant: Grant, key: str, bucket_url: str) -> tuple[Upload, bool]:
        """
        Record an upload whose callback failed, if the bucket holds it and
        it matches the grant.

        @return: the record, and whether it is new.
        @raise Refusal: 404 when the bucket has no such object, 403 when it
            does not match the grant, 503 when bucket or ledger cannot
            answer, 409 when confirmation is switched off.
        """
        existing = await self._ledger.find(grant.id, key)
        if existing is not None:
            return existing, False
        if self.reader is None:
            raise Refusal(
                409, "confirmation_off",
                "This server does not ask the bucket (confirmation is switched off), "
                "so it cannot confirm uploads after the fact.",
            )
        facts = await self.reader.head(bucket_url, key)
        if facts is None:
            raise Refusal(
                404, "not_in_bucket",
                "The bucket has no such object; upload the file again with a new grant.",
            )
        mismatch = grant.admits(grant.bucket, key, facts.size)
        if mismatch is not None:
            raise Refusal(403, "not_granted", f"The object does not match its grant: {mismatch}.")
        upload = self._upload(grant, key, facts.size, facts.etag, facts.content_type, facts.request_id)
        try:
            return await self._write(upload), True
        except AlreadyRecorded:
            found = await self._ledger.find(grant.id, key)
            assert found is not None
            return found, False

    async def answer(self, upload: Upload) -> dict[str, Any]:
        """
        The answer for an upload: the hook's, or the record.
        """
        record = upload.as_json()
        if self._hook is not None:
            answer = await hook_answer(self._hook, record, self._clock, HOOK_TIMEOUT)
            if answer is not None:
                return answer
        return {"Status": "OK", "upload": record}
