# -*- test-case-name: tests.test_ledger -*-
"""
The ledger: every accepted upload, recorded once and durably, and the
outbox of webhook deliveries, in SQLite or PostgreSQL through
L{twisted.enterprise.adbapi}; SQLite's records are written by a child
process (L{LedgerWriter}, L{osscallback.ledgerwriter}).  The statements
that write records are in L{osscallback.ledgersql}.

Recording is one transaction guarded by a unique constraint on (grant,
object key): a replayed or doubly delivered callback can never make a
second record, whatever the timing.
"""

import os
import sqlite3
import sys
import time
from collections import deque
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from twisted.enterprise.adbapi import ConnectionLost, ConnectionPool, Transaction
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

import osscallback
from osscallback.errors import Refusal
from osscallback.jsontext import compact_json, parse_json
from osscallback.ledgersql import (
    COLUMNS,
    SQLITE,
    SQLITE_OPTIONS,
    Dialect,
    PostgreSQL,
    Row,
    insert_rows,
    migrations,
    sqlite_connected,
)


class AlreadyRecorded(Exception):
    """
    The upload was recorded before.
    """


@dataclass(frozen=True)
class Upload:
    """
    One verified upload.

    @ivar id: the ledger's number for it, in recording order (0 before it
        is recorded).
    @ivar granted_at: when its grant was issued, seconds since the epoch.
    @ivar received_at: when it was recorded.
    @ivar request_id: OSS's request id for the upload.
    """

    grant_id: str
    key: str
    bucket: str
    size: int
    etag: str
    content_type: str
    width: int | None
    height: int | None
    user: str | None
    granted_at: float
    received_at: float
    request_id: str
    id: int = 0

    def numbered(self, id: int) -> "Upload":
        """
        This upload as the ledger's record C{id}.
        """
        # Half the time of dataclasses.replace, which checks every field.
        # The columns are the fields but the id, in their order.
        return Upload(*self.row(None)[:-1], id)

    def row(self, outbox_at: float | None) -> Row:
        """
        The upload's columns, in the ledger's order, and when its webhook
        delivery is due.
        """
        return (
            self.grant_id, self.key, self.bucket, self.size, self.etag, self.content_type,
            self.width, self.height, self.user, self.granted_at, self.received_at,
            self.request_id, outbox_at,
        )

    def as_json(self) -> dict[str, Any]:
        """
        The record as a JSON object.
        """
        # Every field is a plain value: a shallow copy is the whole record.
        document = dict(vars(self))
        del document["grant_id"]
        return document


@dataclass(frozen=True)
class Delivery:
    """
    A webhook delivery waiting in the outbox.
    """

    id: int
    attempts: int
    upload: Upload


# Records written in one transaction at most (12 parameters each: well
# within SQLite's 32766).
_BATCH = 256
# Tries of an interaction whose pooled connection turns out to be dead, and
# how long into them another try is still worth it.
_RECONNECTS = 6
_RETRY_WINDOW = 1.0

def _upload(row: tuple[Any, ...]) -> Upload:
    (id, grant_id, key, bucket, size, etag, content_type, width, height, user,
     granted_at, received_at, request_id) = row
    return Upload(
        grant_id=grant_id, key=key, bucket=bucket, size=size, etag=etag,
        content_type=content_type, width=width, height=height, user=user,
        granted_at=granted_at, received_at=received_at, request_id=request_id,
        id=id,
    )


log = Logger()


def _unavailable(reason: Exception) -> Refusal:
    log.warn("the ledger is unavailable: {error}", error=repr(reason)[:300])
    return Refusal(
        503,
        "ledger_unavailable",
        "The upload ledger cannot be written just now; the upload can be "
        "confirmed later.",
    )


# One answer line of the writer holds the ids of a batch; a line without
# its end beyond this is not an answer.
_MAX_LINE = 1024 * 1024


class LedgerWriter(ProcessProtocol):
    """
    The server's end of the SQLite ledger's writer process
    (L{osscallback.ledgerwriter}): starts it, sends it batches, and fires
    each batch's Deferred with its answer, in order.
    """

    def __init__(self, reactor: Any, path: str) -> None:
        self._reactor = reactor
        self._path = path
        self._pending: deque[Deferred[list[int]]] = deque()
        self._buffer = b""
        self._ended: list[Deferred[None]] = []
        self.running = False

    def start(self) -> None:
        """
        Start the writer process unless it runs.
        """
        if self.running:
            return
        self.running = True
        self._buffer = b""
        # The child imports this very package, wherever it was loaded from.
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(osscallback.__file__)))
        path = os.pathsep.join(filter(None, [package_parent, os.environ.get("PYTHONPATH")]))
        self._reactor.spawnProcess(
            self,
            sys.executable,
            [sys.executable, "-m", "osscallback.ledgerwriter", self._path],
            # Nothing else of the server's environment: it holds secrets.
            env={"PYTHONPATH": path},
            childFDs={0: "w", 1: "r", 2: 2},
        )

    def insert(self, rows: list[Row]) -> "Deferred[list[int]]":
        """
        Write C{rows} in one transaction.

        @return: their ids, in their order.
        @raise sqlite3.IntegrityError: (through the Deferred) when one of
            them is recorded already; none of them is written then.
        @raise sqlite3.OperationalError: when the database cannot be
            written.
        """
        self.start()
        written: Deferred[list[int]] = Deferred()
        self._pending.append(written)
        self.transport.write(compact_json(rows) + b"\n")
        return written

    def outReceived(self, data: bytes) -> None:
        *lines, self._buffer = (self._buffer + data).split(b"\n")
        for line in lines:
            self._answer(parse_json(line))
        if len(self._buffer) > _MAX_LINE:
            self.transport.signalProcess("KILL")

    def _answer(self, answer: dict[str, Any]) -> None:
        written = self._pending.popleft()
        if "ids" in answer:
            written.callback(answer["ids"])
        elif answer.get("error") == "duplicate":
            written.errback(sqlite3.IntegrityError("a record of the batch exists"))
        else:
            written.errback(sqlite3.OperationalError(answer.get("reason", "unknown")))

    def processEnded(self, reason: Failure) -> None:
        # Taken out first: a failed batch's caller may send the next one,
        # to a new writer, while these fail.
        self.running = False
        pending, self._pending = self._pending, deque()
        ended, self._ended = self._ended, []
        why = sqlite3.OperationalError(f"the ledger writer ended: {reason.getErrorMessage()}")
        for written in pending:
            written.errback(why)
        for closed in ended:
            closed.callback(None)

    def close(self) -> "Deferred[None]":
        """
        Let the writer finish what it was sent and end.
        """
        if not self.running:
            return succeed(None)
        ended: Deferred[None] = Deferred()
        self._ended.append(ended)
        self.transport.closeStdin()
        return ended


class Ledger:
    """
    The upload records and the webhook outbox.
    """

    def __init__(self, pool: ConnectionPool, dialect: Dialect, clock: IReactorTime,
                 writer: LedgerWriter | None = None) -> None:
        self._pool = pool
        self._dialect = dialect
        self._clock = clock
        self._writer = writer
        self._waiting: list[tuple[Upload, float | None, Deferred[int]]] = []
        self._writing = False

    @classmethod
    def open(cls, url: str, reactor: Any) -> "Ledger":
        """
        A ledger for a C{sqlite:///path} or C{postgresql://} URL.  Nothing
        connects until it is used.

        SQLite records are written by a child process (L{LedgerWriter}),
        PostgreSQL's by the connection pool's threads.
        """
        if url.startswith("sqlite:///"):
            path = url[len("sqlite:///") :]
            pool = ConnectionPool(
                SQLITE.module,
                path,
                check_same_thread=False,
                cp_min=1,
                cp_max=1,
                cp_openfun=sqlite_connected,
                cp_reactor=reactor,
                cp_noisy=False,
                **SQLITE_OPTIONS,
            )
            return cls(pool, SQLITE, reactor, LedgerWriter(reactor, path))
        else:
            dialect = PostgreSQL()
            pool = ConnectionPool(
                dialect.module,
                url.replace("postgres://", "postgresql://", 1),
                connect_timeout=2,
                cp_min=1,
                cp_max=5,
                cp_reconnect=True,
                cp_reactor=reactor,
                cp_noisy=False,
            )
        return cls(pool, dialect, reactor)

    @staticmethod
    def describe(url: str) -> str:
        """
        The database's URL without any password, for logs.
        """
        parts = urlsplit(url)
        if parts.password is None:
            return url
        return url.replace(f":{parts.password}@", ":***@", 1)

    def close(self) -> "Deferred[None]":
        """
        Close the pool's connections and end the writer; fires when it has
        ended.
        """
        self._pool.close()
        if self._writer is None:
            return succeed(None)
        return self._writer.close()

    async def _run(self, interaction: Any, *args: Any) -> Any:
        # A pooled connection the database dropped (a restart, a network
        # cut) fails once, and the pool then reopens it: try again, on
        # another or the reopened one, as long as failures come fast.  A
        # database that is really down fails every try, or slowly.
        lost = (ConnectionLost, self._pool.dbapi.OperationalError)
        started = time.monotonic()
        for _ in range(_RECONNECTS - 1):
            try:
                return await self._pool.runInteraction(interaction, *args)
            except lost:
                if time.monotonic() - started > _RETRY_WINDOW:
                    raise
        return await self._pool.runInteraction(interaction, *args)

    def _execute(self, cursor: Transaction, statement: str, *args: Any) -> None:
        cursor.execute(self._dialect.sql(statement), args)

    async def migrate(self) -> int:
        """
        Create or bring the schema up to date.

        @return: the schema version.
        """
        steps = migrations(self._dialect)

        def migrate(cursor: Transaction) -> int:
            if isinstance(self._dialect, PostgreSQL):
                # One migrating process at a time.
                self._execute(cursor, "SELECT pg_advisory_xact_lock(?)", 0x0055CA11)
            self._execute(
                cursor,
                "CREATE TABLE IF NOT EXISTS osscallback_schema (version INTEGER NOT NULL)",
            )
            self._execute(cursor, "SELECT version FROM osscallback_schema")
            row = cursor.fetchone()
            version = 0 if row is None else row[0]
            if row is None:
                self._execute(cursor, "INSERT INTO osscallback_schema VALUES (0)")
            for step in steps[version:]:
                for statement in step:
                    self._execute(cursor, statement)
            self._execute(cursor, "UPDATE osscallback_schema SET version = ?", len(steps))
            return len(steps)

        version = await self._run(migrate)
        if self._writer is not None:
            # Ready before the first record, not started by it.
            self._writer.start()
        return version

    async def record(self, upload: Upload, outbox_at: float | None) -> Upload:
        """
        Record C{upload} and, when C{outbox_at} is given, queue its webhook
        delivery for then; committed before this returns.

        Records that arrive in the same turn of the reactor, or while a
        commit is under way, are written together in the next transaction
        (group commit: one disk flush for many).

        @raise AlreadyRecorded: if this grant's upload of this key is
            recorded already.
        @raise Refusal: 503 if the database cannot be written.
        """
        written: Deferred[int] = Deferred()
        self._waiting.append((upload, outbox_at, written))
        if not self._writing:
            # After the requests read in this turn, not before them: a burst
            # of callbacks is one transaction, not one alone and then the
            # rest.
            self._writing = True
            self._clock.callLater(0, self._write_next)
        id = await written
        return upload.numbered(id)

    def _write_next(self) -> None:
        batch, self._waiting = self._waiting[:_BATCH], self._waiting[_BATCH:]
        self._writing = True
        writing = Deferred.fromCoroutine(self._write(batch))
        writing.addBoth(lambda _: self._written())

    def _written(self) -> None:
        self._writing = False
        if self._waiting:
            self._write_next()

    async def _insert(self, rows: list[Row]) -> list[int]:
        if self._writer is not None:
            return await self._writer.insert(rows)
        return await self._run(insert_rows, self._dialect, rows)

    async def _write(self, batch: list[tuple[Upload, float | None, "Deferred[int]"]]) -> None:
        """
        Write a batch in one transaction; if one of them is a duplicate,
        write each alone, so that only the duplicate fails.
        """
        integrity = self._pool.dbapi.IntegrityError

        try:
            ids = await self._insert([upload.row(at) for upload, at, _ in batch])
        except integrity:
            if len(batch) > 1:
                for one in batch:
                    await self._write([one])
                return
            batch[0][2].errback(AlreadyRecorded())
            return
        except Exception as e:
            refusal = _unavailable(e)
            for _, _, written in batch:
                written.errback(refusal)
            return
        for (_, _, written), id in zip(batch, ids):
            written.callback(id)

    async def ping(self) -> None:
        """
        Check that the database answers.

        @raise Refusal: 503 when it does not.
        """

        def ping(cursor: Transaction) -> None:
            self._execute(cursor, "SELECT COUNT(*) FROM osscallback_schema")
            cursor.fetchone()

        await self._reading(ping)

    async def find(self, grant_id: str, key: str) -> Upload | None:
        """
        The record of this grant's upload of C{key}, if there is one.
        """

        def find(cursor: Transaction) -> Upload | None:
            self._execute(
                cursor,
                f"SELECT id, {COLUMNS} FROM uploads WHERE grant_id = ? AND object_key = ?",
                grant_id, key,
            )
            row = cursor.fetchone()
            return None if row is None else _upload(row)

        return await self._reading(find)

    async def recent(self, limit: int, before: int | None) -> list[Upload]:
        """
        Up to C{limit} records, newest first, older than record C{before}.
        """

        def recent(cursor: Transaction) -> list[Upload]:
            where = "" if before is None else "WHERE id < ? "
            arguments = () if before is None else (before,)
            self._execute(
                cursor,
                f"SELECT id, {COLUMNS} FROM uploads {where}ORDER BY id DESC LIMIT ?",
                *arguments, limit,
            )
            return [_upload(row) for row in cursor.fetchall()]

        return await self._reading(recent)

    async def due(self, now: float, limit: int, lease: float = 60.0) -> list[Delivery]:
        """
        Claim the webhook deliveries whose time has come, oldest first, for
        C{lease} seconds: another process (or host) asking meanwhile does
        not get them, and gets them again if the claimer dies.
        """

        def due(cursor: Transaction) -> list[Delivery]:
            self._execute(
                cursor,
                "SELECT outbox.id, outbox.attempts, outbox.next_attempt_at, "
                + ", ".join(f"uploads.{c.strip()}" for c in ("id", *COLUMNS.split(",")))
                + " FROM outbox JOIN uploads ON uploads.id = outbox.upload_id"
                " WHERE outbox.delivered_at IS NULL AND outbox.next_attempt_at <= ?"
                " ORDER BY outbox.next_attempt_at, outbox.id LIMIT ?",
                now, limit,
            )
            claimed = []
            for row in cursor.fetchall():
                self._execute(
                    cursor,
                    "UPDATE outbox SET next_attempt_at = ? "
                    "WHERE id = ? AND next_attempt_at = ? AND delivered_at IS NULL",
                    now + lease, row[0], row[2],
                )
                if cursor.rowcount == 1:
                    claimed.append(Delivery(row[0], row[1], _upload(row[3:])))
            return claimed

        return await self._reading(due)

    async def pending(self) -> int:
        """
        How many webhook deliveries are waiting.
        """

        def pending(cursor: Transaction) -> int:
            self._execute(cursor, "SELECT COUNT(*) FROM outbox WHERE delivered_at IS NULL")
            return int(cursor.fetchone()[0])

        return await self._reading(pending)

    async def delivered(self, delivery: int, now: float) -> None:
        """
        Mark a webhook delivery done.
        """
        await self._run(
            self._execute, "UPDATE outbox SET delivered_at = ? WHERE id = ?", now, delivery
        )

    async def postpone(self, delivery: int, attempts: int, at: float, error: str) -> None:
        """
        Note a failed webhook delivery and when to try again.
        """
        await self._run(
            self._execute,
            "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?",
            attempts, at, error[:500], delivery,
        )

    async def _reading(self, interaction: Any) -> Any:
        try:
            return await self._run(interaction)
        except Exception as e:
            raise _unavailable(e) from e
