# -*- test-case-name: tests.test_ledger -*-
"""
The ledger's schema and the statements that write records, for SQLite and
PostgreSQL.  No I/O framework: the ledger's connection pool and the SQLite
writer process (L{osscallback.ledgerwriter}) both run them.
"""

import sqlite3
from functools import lru_cache
from typing import Any

# A record as written: the upload's twelve columns in COLUMNS' order, then
# when its webhook delivery is due (None for no webhook).
Row = tuple[Any, ...]

COLUMNS = (
    "grant_id, object_key, bucket, size, etag, content_type, width, height, "
    "uploader, granted_at, received_at, request_id"
)


class Dialect:
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
            f"INSERT INTO uploads ({COLUMNS}) VALUES {placeholders(12, len(rows))}", _values(rows)
        )
        last = cursor.lastrowid
        return list(range(last - len(rows) + 1, last + 1))


class PostgreSQL(Dialect):
    module = "psycopg"
    serial = "BIGSERIAL PRIMARY KEY"
    real = "DOUBLE PRECISION"

    def sql(self, statement: str) -> str:
        return statement.replace("?", "%s")

    def insert_uploads(self, cursor: Any, rows: list[Row]) -> list[int]:
        # Other processes take ids from the same sequence meanwhile: ask
        # which row got which, by its unique (grant, key).
        cursor.execute(
            self.sql(f"INSERT INTO uploads ({COLUMNS}) VALUES {placeholders(12, len(rows))} "
                     "RETURNING id, grant_id, object_key"),
            _values(rows),
        )
        ids = {(grant_id, key): id for id, grant_id, key in cursor.fetchall()}
        return [ids[row[0], row[1]] for row in rows]


def migrations(dialect: Dialect) -> list[list[str]]:
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
def placeholders(columns: int, count: int) -> str:
    """
    The placeholders of a VALUES list of C{count} rows.
    """
    row = "(" + ", ".join("?" * columns) + ")"
    return ", ".join([row] * count)


def _values(rows: list[Row]) -> list[Any]:
    # The upload's twelve columns of each row, in one list.
    return [value for row in rows for value in row[:12]]


def insert_rows(cursor: Any, dialect: Dialect, rows: list[Row]) -> list[int]:
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
            dialect.sql(f"INSERT INTO outbox (upload_id, next_attempt_at) VALUES {placeholders(2, len(chunk))}"),
            [value for entry in chunk for value in entry],
        )
    return ids


SQLITE = Dialect()
SQLITE_OPTIONS = {"timeout": 3, "isolation_level": "DEFERRED"}


def sqlite_connected(connection: Any) -> None:
    """
    Set a new SQLite connection up: write-ahead log, every commit flushed
    to disk, foreign keys enforced.
    """
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")


def connect_sqlite(path: str) -> sqlite3.Connection:
    """
    A connection to the SQLite ledger at C{path}, as the pool opens them:
    write-ahead log, every commit flushed to disk.
    """
    connection = sqlite3.connect(path, **SQLITE_OPTIONS)
    sqlite_connected(connection)
    return connection
