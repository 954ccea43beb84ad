# -*- test-case-name: tests.test_operations -*-
"""
Log output for journald and log shippers: one JSON object per line.
"""

import json
import sys
from datetime import datetime, timezone
from typing import IO, Any

from twisted.logger import ILogObserver, formatEvent
from zope.interface import implementer

# Event keys that are Twisted's bookkeeping, not fields worth shipping.
_INTERNAL = {"format", "message", "system", "isError", "time", "why", "failure", "printed"}


@implementer(ILogObserver)
class JSONLines:
    """
    Writes each log event as one line of JSON: time (UTC), level,
    namespace, the formatted message, and the event's own fields.
    """

    def __init__(self, out: IO[str]) -> None:
        self._out = out

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level")
        record: dict[str, Any] = {
            "time": datetime.fromtimestamp(
                event.get("log_time", 0), timezone.utc
            ).isoformat(timespec="milliseconds"),
            "level": getattr(level, "name", "info"),
            "namespace": event.get("log_namespace", "-"),
            "message": formatEvent(event),
        }
        for key, value in event.items():
            if key.startswith("log_") or key in _INTERNAL:
                continue
            if isinstance(value, (str, int, float, bool)) or value is None:
                record[key] = value
        failure = event.get("log_failure")
        if failure is not None:
            record["traceback"] = failure.getTraceback()
        self._out.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._out.flush()


def json_observer() -> ILogObserver:
    """
    The observer C{twistd --logger} uses for C{--log-format json}.
    """
    return JSONLines(sys.stdout)
