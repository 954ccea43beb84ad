# -*- test-case-name: tests.test_ledger -*-
"""
The SQLite ledger's writer: a child process that inserts and commits the
batches of records, one transaction each, and answers with their ids.

Why a process and not a thread: a thread that commits must take the GIL
back after every SQLite call, and while it waits for it every system call
of the busy event loop hands the GIL over and back (bench/NOTES.md: about a
third more CPU per callback).  A process shares no GIL; the event loop only
writes a line and reads one per batch.

The wire: one JSON line per batch each way.  In: a list of rows (the
upload's columns and its webhook's due time).  Out: C{{"ids": [...]}}, or
C{{"error": "duplicate"}} when a row is recorded already (nothing of the
batch is written), or C{{"error": "unavailable", "reason": ...}}.
"""

import os
import signal
import sqlite3
import sys
from collections import deque
from typing import Any

from twisted.internet.defer import Deferred, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.python.failure import Failure

import osscallback
from osscallback.jsontext import compact_json, parse_json

# A record as sent: the upload's columns, then its webhook's due time.
Row = tuple[Any, ...]

# One line holds a batch of at most 256 records of small fields; a line
# without its end beyond this is not an answer.
_MAX_LINE = 16 * 1024 * 1024


class LedgerWriter(ProcessProtocol):
    """
    The parent's end: starts the writer, sends it batches, and fires each
    batch's Deferred with its answer, in order.
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


def _write(connection: sqlite3.Connection, rows: list[Row]) -> dict[str, Any]:
    # Only the child needs the SQL, and the ledger imports this module.
    from osscallback.ledger import SQLITE, insert_rows

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
    from osscallback.ledger import connect_sqlite

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
