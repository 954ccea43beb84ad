# -*- test-case-name: tests.test_ledger -*-
"""
The SQLite ledger's writer: a child process of the server that inserts and
commits the batches of records, one transaction each, and answers with
their ids.  The server's end is L{osscallback.ledger.LedgerWriter}.

Why a process and not a thread: a thread that commits must take the GIL
back after every SQLite call, and while it waits for it every system call
of the busy event loop hands the GIL over and back (bench/NOTES.md: about a
third more CPU per callback).  A process shares no GIL; the event loop only
writes a line and reads one per batch.  It imports no more than it needs
(no Twisted), to stay small.

The wire: one JSON line per batch each way.  In: a list of rows
(L{osscallback.ledgersql.Row}).  Out: C{{"ids": [...]}}, or
C{{"error": "duplicate"}} when a row is recorded already (nothing of the
batch is written), or C{{"error": "unavailable", "reason": ...}}.
"""

import signal
import sqlite3
import sys
from typing import Any

from osscallback.jsontext import compact_json, parse_json
from osscallback.ledgersql import SQLITE, Row, connect_sqlite, insert_rows


def _write(connection: sqlite3.Connection, rows: list[Row]) -> dict[str, Any]:
    try:
        ids = insert_rows(connection.cursor(), SQLITE, rows)
        connection.commit()
    except sqlite3.IntegrityError:
        connection.rollback()
        return {"error": "duplicate"}
    except sqlite3.Error as e:
        connection.rollback()
        return _unavailable(e)
    return {"ids": ids}


def _unavailable(error: Exception) -> dict[str, Any]:
    return {"error": "unavailable", "reason": repr(error)[:300]}


def main(path: str) -> None:
    """
    The writer: batches from standard input, answers to standard output,
    until standard input ends.  A database that cannot be opened fails
    the batches until it can.
    """
    # A terminal's Ctrl-C and systemd's stop signal reach the whole process
    # group; the server then drains, and this writer must finish what it
    # is sent meanwhile.  It ends when the server closes its input.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    connection = None
    answers = sys.stdout.buffer
    for line in sys.stdin.buffer:
        rows = parse_json(line)
        try:
            connection = connection or connect_sqlite(path)
        except sqlite3.Error as e:
            answer = _unavailable(e)
        else:
            answer = _write(connection, rows)
        answers.write(compact_json(answer) + b"\n")
        answers.flush()
    if connection is not None:
        connection.close()


if __name__ == "__main__":
    main(sys.argv[1])
