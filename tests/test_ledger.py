"""
Tests for L{osscallback.ledger}, run against a real SQLite file and a real
PostgreSQL server with the same schema.
"""

import sqlite3
from dataclasses import replace

from twisted.internet import defer
from twisted.trial.unittest import TestCase

from osscallback.errors import Refusal
from osscallback.ledger import AlreadyRecorded, Ledger, Upload
from tests.helpers import open_ledger, postgresql_url

UPLOAD = Upload(
    grant_id="ab" * 16,
    key="uploads/2026/12/03/ab.png",
    bucket="b-1",
    size=12,
    etag="D41D8CD98F00B204E9800998ECF8427E",
    content_type="image/png",
    width=3,
    height=4,
    user="alice",
    granted_at=1000.0,
    received_at=1010.5,
    request_id="REQ1",
)


class SQLiteLedgerTests(TestCase):
    """
    The ledger on SQLite.
    """

    async def ledger(self) -> Ledger:
        return await open_ledger(self)

    async def test_recordOnce(self) -> None:
        """
        An upload is recorded with a number and found again; recording it
        again raises AlreadyRecorded and leaves one record.
        """
        ledger = await self.ledger()
        recorded = await ledger.record(UPLOAD, None)
        self.assertGreater(recorded.id, 0)
        self.assertEqual(replace(recorded, id=0), UPLOAD)
        self.assertEqual(await ledger.find(UPLOAD.grant_id, UPLOAD.key), recorded)
        with self.assertRaises(AlreadyRecorded):
            await ledger.record(replace(UPLOAD, size=13), None)
        self.assertEqual(await ledger.recent(10, None), [recorded])

    async def test_concurrentRecords(self) -> None:
        """
        Ten concurrent recordings of one upload make exactly one record.
        """
        ledger = await self.ledger()
        results = await defer.DeferredList(
            [defer.Deferred.fromCoroutine(ledger.record(UPLOAD, 0.0)) for _ in range(10)],
            consumeErrors=True,
        )
        successes = [r for ok, r in results if ok]
        failures = [r for ok, r in results if not ok]
        self.assertEqual(len(successes), 1)
        self.assertTrue(all(f.check(AlreadyRecorded) for f in failures))
        self.assertEqual(len(await ledger.recent(10, None)), 1)
        self.assertEqual(await ledger.pending(), 1)

    async def test_batchIds(self) -> None:
        """
        Records written together in one transaction each get the id their
        record has in the ledger, and the outbox entries of those that asked
        for one point at their own record.
        """
        ledger = await self.ledger()
        uploads = [replace(UPLOAD, key=f"k{n}", size=n) for n in range(30)]
        writes = [
            defer.Deferred.fromCoroutine(ledger.record(u, 100.0 + n if n % 3 else None))
            for n, u in enumerate(uploads)
        ]
        recorded = await defer.gatherResults(writes)
        self.assertEqual(len({r.id for r in recorded}), len(uploads))
        for upload, record in zip(uploads, recorded):
            self.assertEqual(replace(record, id=0), upload)
            self.assertEqual(await ledger.find(upload.grant_id, upload.key), record)
        deliveries = await ledger.due(1e9, 100)
        self.assertEqual(
            sorted((d.upload.id, d.upload.size) for d in deliveries),
            sorted((r.id, r.size) for n, r in enumerate(recorded) if n % 3),
        )

    async def test_duplicateInBatch(self) -> None:
        """
        A duplicate written in the same transaction as new records fails
        alone: the new ones are recorded all the same.
        """
        ledger = await self.ledger()
        first = await ledger.record(UPLOAD, None)
        writes = [
            defer.Deferred.fromCoroutine(ledger.record(replace(UPLOAD, key=f"k{n}"), None))
            for n in range(5)
        ]
        duplicate = defer.Deferred.fromCoroutine(ledger.record(UPLOAD, 1.0))
        writes.append(defer.Deferred.fromCoroutine(ledger.record(replace(UPLOAD, key="k5"), None)))
        recorded = await defer.gatherResults(writes)
        with self.assertRaises(AlreadyRecorded):
            await duplicate
        self.assertEqual(
            sorted(u.id for u in await ledger.recent(10, None)),
            sorted([first.id, *(r.id for r in recorded)]),
        )
        self.assertEqual(await ledger.pending(), 0)

    async def test_folderGrantRecordsEachKey(self) -> None:
        """
        One grant may record several keys (a folder grant), each once.
        """
        ledger = await self.ledger()
        await ledger.record(UPLOAD, None)
        await ledger.record(replace(UPLOAD, key="uploads/2026/12/03/other.png"), None)
        self.assertEqual(len(await ledger.recent(10, None)), 2)

    async def test_recentPages(self) -> None:
        """
        Records come newest first, a page at a time.
        """
        ledger = await self.ledger()
        ids = [(await ledger.record(replace(UPLOAD, key=f"k{n}"), None)).id for n in range(5)]
        first = await ledger.recent(2, None)
        self.assertEqual([u.id for u in first], ids[:-3:-1])
        second = await ledger.recent(2, first[-1].id)
        self.assertEqual([u.id for u in second], [ids[2], ids[1]])

    async def test_outbox(self) -> None:
        """
        A recording with an outbox time queues a delivery, due from then;
        a postponed one is due later; a delivered one is gone.
        """
        ledger = await self.ledger()
        recorded = await ledger.record(UPLOAD, 100.0)
        await ledger.record(replace(UPLOAD, key="no-webhook"), None)
        self.assertEqual(await ledger.due(99.0, 10), [])
        (delivery,) = await ledger.due(100.0, 10)
        self.assertEqual((delivery.attempts, delivery.upload), (0, recorded))
        self.assertEqual(await ledger.due(100.0, 10), [])  # claimed for a while
        self.assertEqual(len(await ledger.due(160.0, 10)), 1)  # the claim lapsed
        await ledger.postpone(delivery.id, 1, 104.0, "down")
        self.assertEqual(await ledger.due(103.0, 10), [])
        (again,) = await ledger.due(104.0, 10)
        self.assertEqual(again.attempts, 1)
        await ledger.delivered(again.id, 105.0)
        self.assertEqual(await ledger.due(1e9, 10), [])
        self.assertEqual(await ledger.pending(), 0)

    async def test_migrateTwice(self) -> None:
        """
        Migrating an up-to-date schema changes nothing and keeps records.
        """
        ledger = await self.ledger()
        await ledger.record(UPLOAD, None)
        self.assertEqual(await ledger.migrate(), 1)
        self.assertEqual(len(await ledger.recent(10, None)), 1)

    async def test_unreachable(self) -> None:
        """
        A database that cannot be opened gives 503 refusals, not crashes.
        """
        from twisted.internet import reactor

        ledger = Ledger.open("sqlite:////nonexistent/dir/x.sqlite3", reactor)
        self.addCleanup(ledger.close)
        with self.assertRaises(Refusal) as caught:
            await ledger.record(UPLOAD, None)
        self.assertEqual(caught.exception.status, 503)


class SQLiteWriterTests(TestCase):
    """
    The SQLite ledger's writer process dying does not lose the ledger.
    """

    async def test_writerRestarts(self) -> None:
        """
        When the writer process is killed between records, the next record
        starts a new one; the records written before are kept.
        """
        ledger = await open_ledger(self)
        first = await ledger.record(UPLOAD, None)
        writer = ledger._writer
        assert writer is not None
        ended = writer.close()
        writer.transport.signalProcess("KILL")
        await ended
        second = await ledger.record(replace(UPLOAD, key="k2"), None)
        self.assertGreater(second.id, first.id)
        self.assertEqual(await ledger.recent(10, None), [second, first])

    async def test_writerOutlastsStopSignals(self) -> None:
        """
        The stop signals a terminal or systemd send to the whole process
        group do not end the writer: a record in flight is still written,
        while the server drains.
        """
        from signal import SIGINT, SIGTERM

        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        path = self.mktemp() + ".sqlite3"
        ledger = await open_ledger(self, "sqlite:///" + path)
        blocker = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(blocker.close)
        blocker.execute("BEGIN EXCLUSIVE")
        recording = defer.Deferred.fromCoroutine(ledger.record(UPLOAD, None))
        await deferLater(reactor, 0.2, lambda: None)
        ledger._writer.transport.signalProcess(SIGTERM)
        ledger._writer.transport.signalProcess(SIGINT)
        await deferLater(reactor, 0.2, lambda: None)
        blocker.execute("ROLLBACK")
        recorded = await recording
        self.assertEqual(await ledger.recent(10, None), [recorded])

    async def test_writerGetsNoSecrets(self) -> None:
        """
        The writer process does not inherit the server's environment, where
        credentials may be.
        """
        import os

        os.environ["OSS_ACCESS_KEY_SECRET"] = "not-for-the-writer"
        self.addCleanup(os.environ.pop, "OSS_ACCESS_KEY_SECRET")
        ledger = await open_ledger(self)
        await ledger.record(UPLOAD, None)
        with open(f"/proc/{ledger._writer.transport.pid}/environ", "rb") as environ:
            names = [entry.split(b"=")[0] for entry in environ.read().split(b"\0") if entry]
        self.assertEqual(names, [b"PYTHONPATH"])

    def test_writerImportsNoTwisted(self) -> None:
        """
        The writer process's module loads neither Twisted nor the server's
        request handling, so that each writer stays small.
        """
        import os
        import subprocess
        import sys

        import osscallback

        # The package under test, wherever it was loaded from.
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(osscallback.__file__)))
        loaded = subprocess.run(
            [sys.executable, "-c",
             "import sys, osscallback.ledgerwriter; "
             "print(sorted({m.split('.')[0] for m in sys.modules} & {'twisted', 'treq', 'prometheus_client'}))"],
            capture_output=True, text=True, check=True, env={"PYTHONPATH": package_parent},
        ).stdout.strip()
        self.assertEqual(loaded, "[]")

    async def test_writerDiesMidBatch(self) -> None:
        """
        A record the writer was writing when it died fails with a 503
        refusal, not a hang; the ledger records again afterwards.
        """
        from twisted.internet import reactor
        from twisted.internet.task import deferLater

        path = self.mktemp() + ".sqlite3"
        ledger = await open_ledger(self, "sqlite:///" + path)
        blocker = sqlite3.connect(path, isolation_level=None)
        self.addCleanup(blocker.close)
        blocker.execute("BEGIN EXCLUSIVE")  # the writer waits for the lock
        recording = defer.Deferred.fromCoroutine(ledger.record(UPLOAD, None))
        await deferLater(reactor, 0.2, lambda: None)
        self.assertNoResult(recording)
        ledger._writer.transport.signalProcess("KILL")
        with self.assertRaises(Refusal) as caught:
            await recording
        self.assertEqual(caught.exception.status, 503)
        blocker.execute("ROLLBACK")
        recorded = await ledger.record(UPLOAD, None)
        self.assertEqual(await ledger.recent(10, None), [recorded])


class PostgreSQLLedgerTests(SQLiteLedgerTests):
    """
    The same behaviour on PostgreSQL.
    """

    async def ledger(self) -> Ledger:
        return await open_ledger(self, postgresql_url(self))

    async def test_unreachable(self) -> None:
        """
        A PostgreSQL server that cannot be reached gives 503 refusals.
        """
        from twisted.internet import reactor

        ledger = Ledger.open("postgresql://postgres@127.0.0.1:1/none", reactor)
        self.addCleanup(ledger.close)
        with self.assertRaises(Refusal) as caught:
            await ledger.record(UPLOAD, None)
        self.assertEqual(caught.exception.status, 503)
