# -*- test-case-name: tests.test_ledger -*-
"""
The ledger: every accepted upload, recorded once and durably, and the
outbox of webhook deliveries, in SQLite or PostgreSQL through
L{twisted.enterprise.adbapi}.

Recording is one transaction guarded by a unique constraint on (grant,
object key): a replayed or doubly delivered callback can never make a
second record, whatever the timing.
"""

import sqlite3
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

from twisted.enterprise.adbapi import ConnectionLost, ConnectionPool, Transaction
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from osscallback.errors import Refusal
from osscallback.ledgerwriter import LedgerWriter, Row


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
        return Upload(
            self.grant_id, self.key, self.bucket, self.size, self.etag, self.content_type,
            self.width, self.height, self.user, self.granted_at, self.received_at,
            self.request_id, id,
        )

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

_COLUMNS = (
    "grant_id, object_key, bucket, size, etag, content_type, width, height, "
    "uploader, granted_at, received_at, request_id"
)


class _Dialect:
    """
    What differs between SQLite and PostgreSQL here.
    """

    module = "sqlite3"
    serial = "INTEGER PRIMARY KEY AUTOINCREMENT"
    real = "REAL"

    def sql(self, statement: str) -> str:
        return statement

    def insert_uploads(self, cursor: Any, rows: list[Row]) -> list[int]:
        """
        Insert the uploads of C{rows} with one statement; their ids, in
        their order.
        """
        # One statement for the batch and no rows to fetch back.  The
        # transaction holds the write lock and the ids are AUTOINCREMENT, so
        # the rows get consecutive ids in their order.
        cursor.execute(
            f"INSERT INTO uploads ({_COLUMNS}) VALUES {_rows(12, len(rows))}", _values(rows)
        )
        last = cursor.lastrowid
        return list(range(last - len(rows) + 1, last + 1))


class _PostgreSQL(_Dialect):
    module = "psycopg"
    serial = "BIGSERIAL PRIMARY KEY"
    real = "DOUBLE PRECISION"

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def insert_uploads(self, cursor: Any, rows: list[Row]) -> list[int]:
        # Other processes take ids from the same sequence meanwhile: ask
        # which row got which, by its unique (grant, key).
        cursor.execute(
            self.sql(f"INSERT INTO uploads ({_COLUMNS}) VALUES {_rows(12, len(rows))} "
                     "RETURNING id, grant_id, object_key"),
            _values(rows),
        )
        ids = {(grant_id, key): id for id, grant_id, key in cursor.fetchall()}
        return [ids[row[0], row[1]] for row in rows]


def _migrations(dialect: _Dialect) -> list[list[str]]:
    """
    The schema, as steps; step N brings the schema to version N + 1.
    """
    return [
        [
            f"""CREATE TABLE uploads (
                id {dialect.serial},
                grant_id TEXT NOT NULL,
                object_key TEXT NOT NULL,
                bucket TEXT NOT NULL,
                size BIGINT NOT NULL,
                etag TEXT NOT NULL,
                content_type TEXT NOT NULL,
                width INTEGER,
                height INTEGER,
                uploader TEXT,
                granted_at {dialect.real} NOT NULL,
                received_at {dialect.real} NOT NULL,
                request_id TEXT NOT NULL,
                UNIQUE (grant_id, object_key)
            )""",
            f"""CREATE TABLE outbox (
                id {dialect.serial},
                upload_id BIGINT NOT NULL REFERENCES uploads (id),
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at {dialect.real} NOT NULL,
                delivered_at {dialect.real},
                last_error TEXT
            )""",
            "CREATE INDEX outbox_due ON outbox (next_attempt_at) "
            "WHERE delivered_at IS NULL",
        ],
    ]


def _chunks(items: list[Any]) -> list[list[Any]]:
    """
    C{items} cut into runs whose lengths are powers of two, longest first.
    """
    chunks = []
    while items:
        size = 1 << (len(items).bit_length() - 1)
        chunks.append(items[:size])
        items = items[size:]
    return chunks


@lru_cache(maxsize=32)
def _rows(columns: int, count: int) -> str:
    """
    The placeholders of a VALUES list of C{count} rows.
    """
    row = "(" + ", ".join("?" * columns) + ")"
    return ", ".join([row] * count)


def _values(rows: list[Row]) -> list[Any]:
    # The upload's twelve columns of each row, in one list.
    return [value for row in rows for value in row[:12]]


def insert_rows(cursor: Any, dialect: _Dialect, rows: list[Row]) -> list[int]:
    """
    Insert a batch of records and their outbox entries, in the caller's
    transaction; their ids.

    Each statement writes a power of two of rows, so that there are a
    few statement shapes to prepare and keep, not one per batch size.

    @param rows: each an upload's twelve columns and when its webhook is
        due (L{None} for no webhook).
    """
    ids: list[int] = []
    for chunk in _chunks(rows):
        ids += dialect.insert_uploads(cursor, chunk)
    queued = [(id, row[12]) for id, row in zip(ids, rows) if row[12] is not None]
    for chunk in _chunks(queued):
        cursor.execute(
            dialect.sql(f"INSERT INTO outbox (upload_id, next_attempt_at) VALUES {_rows(2, len(chunk))}"),
            [value for entry in chunk for value in entry],
        )
    return ids


def _upload(row: tuple[Any, ...]) -> Upload:
    (id, grant_id, key, bucket, size, etag, content_type, width, height, user,
     granted_at, received_at, request_id) = row
    return Upload(
        grant_id=grant_id, key=key, bucket=bucket, size=size, etag=etag,
        content_type=content_type, width=width, height=height, user=user,
        granted_at=granted_at, received_at=received_at, request_id=request_id,
        id=id,
    )


SQLITE = _Dialect()
_SQLITE_OPTIONS = {"timeout": 3, "isolation_level": "DEFERRED"}


def _sqlite_connected(connection: Any) -> None:
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")


def connect_sqlite(path: str) -> sqlite3.Connection:
    """
    A connection to the SQLite ledger at C{path}, as the pool opens them:
    write-ahead log, every commit flushed to disk.
    """
    connection = sqlite3.connect(path, **_SQLITE_OPTIONS)
    _sqlite_connected(connection)
    return connection


log = Logger()


def _unavailable(reason: Exception) -> Refusal:
    log.warn("the ledger is unavailable: {error}", error=repr(reason)[:300])
    return Refusal(
        503,
        "ledger_unavailable",
        "The upload ledger cannot be written just now; the upload can be "
        "confirmed later.",
    )


class Ledger:
    """
    The upload records and the webhook outbox.
    """

    def __init__(self, pool: ConnectionPool, dialect: _Dialect, clock: IReactorTime,
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
                cp_openfun=_sqlite_connected,
                cp_reactor=reactor,
                cp_noisy=False,
                **_SQLITE_OPTIONS,
            )
            return cls(pool, SQLITE, reactor, LedgerWriter(reactor, path))
        else:
            dialect = _PostgreSQL()
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
        steps = _migrations(self._dialect)

        def migrate(cursor: Transaction) -> int:
            if isinstance(self._dialect, _PostgreSQL):
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
                f"SELECT id, {_COLUMNS} FROM uploads WHERE grant_id = ? AND object_key = ?",
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
                f"SELECT id, {_COLUMNS} FROM uploads {where}ORDER BY id DESC LIMIT ?",
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
                + ", ".join(f"uploads.{c.strip()}" for c in ("id", *_COLUMNS.split(",")))
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
