# -*- test-case-name: tests.test_operations -*-
"""
Several processes on one port: each worker listens on its own socket with
SO_REUSEPORT, so the kernel spreads connections over them; the first
process starts the others and stops them with itself.
"""

import os
import socket
import sys
from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

WORKER_ENVIRONMENT = "OSSCALLBACK_WORKER"


def tcp_address(description: str) -> tuple[str, int, int]:
    """
    The interface, port and backlog of a C{tcp:} endpoint description.
    """
    parts = description.split(":")
    port = int(parts[1])
    options = dict(p.split("=", 1) for p in parts[2:] if "=" in p)
    return options.get("interface", ""), port, int(options.get("backlog", "128"))


class ReusePortService(Service):
    """
    Listens for C{factory} on a TCP port that other processes share.
    """

    def __init__(self, reactor: Any, description: str, factory: Any) -> None:
        self._reactor = reactor
        self._interface, self._port, self._backlog = tcp_address(description)
        self._factory = factory
        self._listening: Any = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        family = socket.AF_INET6 if ":" in self._interface else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self._interface, self._port))
            sock.listen(self._backlog)
            sock.setblocking(False)
            self._listening = self._reactor.adoptStreamPort(sock.fileno(), family, self._factory)
        except OSError as e:
            raise SystemExit(
                f"twistd osscallback: cannot listen on {self._interface or '*'}:"
                f"{self._port}: {e.strerror}."
            ) from None
        finally:
            sock.close()

    def stopService(self) -> "Deferred[None] | None":
        super().stopService()
        if self._listening is not None:
            return self._listening.stopListening()
        return None


class _Worker(ProcessProtocol):
    def __init__(self) -> None:
        self.ended: Deferred[None] = Deferred()

    def processEnded(self, reason: Failure) -> None:
        self.ended.callback(None)


class WorkerProcesses(Service):
    """
    Runs C{count} more copies of this server (each C{twistd -n osscallback}
    with the same options) and ends them with SIGTERM when it stops.
    """

    log = Logger()

    def __init__(self, reactor: Any, count: int, arguments: list[str], environ: dict[str, str]) -> None:
        self._reactor = reactor
        self._count = count
        self._arguments = arguments
        self._environ = environ
        self._workers: list[tuple[Any, _Worker]] = []

    def startService(self) -> None:
        super().startService()
        twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
        for number in range(self._count):
            worker = _Worker()
            process = self._reactor.spawnProcess(
                worker,
                sys.executable,
                [sys.executable, twistd, "-n", "--pidfile=", "osscallback", *self._arguments],
                env={**self._environ, WORKER_ENVIRONMENT: str(number + 1)},
                childFDs={0: "w", 1: 1, 2: 2},
            )
            self._workers.append((process, worker))
        self.log.info("started {count} more workers", count=self._count)

    def stopService(self) -> "Deferred[Any]":
        super().stopService()
        for process, worker in self._workers:
            if not worker.ended.called:
                try:
                    process.signalProcess("TERM")
                except Exception:
                    pass
        return gatherResults([worker.ended for _, worker in self._workers])
