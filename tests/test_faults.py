"""
Faults in what the server depends on, over real loopback: a misbehaving key
server, a database that stops, and slow clients.  Each fault gets a quick,
designed answer, the server stays healthy meanwhile, and it recovers by
itself when the fault clears.
"""

import socket
import sqlite3
import time
from typing import Any

import treq
from treq.client import HTTPClient
from twisted.enterprise.adbapi import ConnectionLost
from twisted.internet import reactor
from twisted.internet.endpoints import TCP4ServerEndpoint
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import deferLater
from twisted.protocols.portforward import ProxyFactory
from twisted.trial.unittest import TestCase
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.resource import Resource
from twisted.web.server import Site

from osscallback.errors import Refusal
from osscallback.keys import PublicKeyFetcher
from osscallback.site import limit_connections, make_site, web_root
from tests.fixtures import callback_public_pem, ec_public_pem
from tests.helpers import POSTGRESQL, open_ledger, postgresql_url
from tests.test_ledger import UPLOAD


class Silent(Protocol):
    """
    Accepts a connection and never says a word.
    """


class Answers(Resource):
    """
    A key server whose answer the test sets.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.answer: tuple[int, dict[bytes, bytes], bytes] = (200, {}, callback_public_pem())

    def render_GET(self, request: Any) -> bytes:
        status, headers, body = self.answer
        request.setResponseCode(status)
        for name, value in headers.items():
            request.setHeader(name, value)
        return body


class KeyServerFaultTests(TestCase):
    """
    The public key fetcher against real, faulty key servers.
    """

    async def listen(self, factory: Any) -> int:
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def fetcher(self, *prefixes: str) -> PublicKeyFetcher:
        pool = HTTPConnectionPool(reactor, persistent=False)
        return PublicKeyFetcher(reactor, HTTPClient(Agent(reactor, pool=pool)), prefixes, failure_ttl=0.2)

    async def refused_quickly(self, fetcher: PublicKeyFetcher, url: str, status: int = 503) -> None:
        started = time.monotonic()
        with self.assertRaises(Refusal) as caught:
            await fetcher.public_key(url)
        self.assertEqual(caught.exception.status, status)
        self.assertLess(time.monotonic() - started, 2.5)  # well inside OSS's 5 s

    async def test_unreachable(self) -> None:
        """
        A refused connection, a name that does not resolve, TLS to a server
        that does not speak it, and a server that never answers each give a
        503 within about 2 s.
        """
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            closed = s.getsockname()[1]
        plain = await self.listen(Site(Answers()))
        silent = await self.listen(Factory.forProtocol(Silent))
        for url in [
            f"http://127.0.0.1:{closed}/k.pem",
            "http://keys.invalid/k.pem",
            f"https://127.0.0.1:{plain}/k.pem",
            f"http://127.0.0.1:{silent}/k.pem",
        ]:
            prefix = url.rsplit("/", 1)[0] + "/"
            await self.refused_quickly(self.fetcher(prefix), url)

    async def test_badAnswersThenRecovery(self) -> None:
        """
        A 500, a redirect (not followed), a 10 MB body, a body that is not
        PEM and a key of another type each give 503; when the key server
        serves the key again, the fetcher uses it without a restart.
        """
        server = Answers()
        port = await self.listen(Site(server))
        prefix = f"http://127.0.0.1:{port}/"
        fetcher = self.fetcher(prefix)
        for answer in [
            (500, {}, b"oops"),
            (302, {b"location": prefix + "other.pem"}, b""),
            (200, {}, b"A" * (10 * 1024 * 1024)),
            (200, {}, b"not a key"),
            (200, {}, ec_public_pem()),
        ]:
            server.answer = answer
            await self.refused_quickly(fetcher, prefix + "k.pem")
            await deferLater(reactor, 0.25, lambda: None)  # past the failure cache
        server.answer = (200, {}, callback_public_pem())
        key = await fetcher.public_key(prefix + "k.pem")
        self.assertEqual(key.key_size, 512)

    async def test_untrustedNeverFetched(self) -> None:
        """
        A key URL outside the trusted prefixes is refused with 403 and no
        connection is made.
        """
        connections: list[Any] = []

        class Counting(Protocol):
            def connectionMade(self) -> None:
                connections.append(self)

        port = await self.listen(Factory.forProtocol(Counting))
        await self.refused_quickly(self.fetcher("https://gosspublic.alicdn.com/"),
                                   f"http://127.0.0.1:{port}/k.pem", 403)
        self.assertEqual(connections, [])


class DatabaseFaultTests(TestCase):
    """
    The ledger when its database fails.
    """

    async def test_sqliteLocked(self) -> None:
        """
        While another process holds the SQLite database locked, recording
        answers 503 within a few seconds and writes nothing; when the lock
        is gone, recording works again.
        """
        path = self.mktemp() + ".sqlite3"
        ledger = await open_ledger(self, "sqlite:///" + path)
        blocker = sqlite3.connect(path, isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        started = time.monotonic()
        with self.assertRaises(Refusal) as caught:
            await ledger.record(UPLOAD, None)
        self.assertEqual(caught.exception.status, 503)
        self.assertLess(time.monotonic() - started, 5)
        blocker.execute("ROLLBACK")
        blocker.close()
        self.assertEqual(await ledger.recent(10, None), [])
        recorded = await ledger.record(UPLOAD, None)
        self.assertEqual(await ledger.recent(10, None), [recorded])

    async def test_postgresqlStopped(self) -> None:
        """
        When the PostgreSQL server goes away mid-run (the network path to it
        is cut, its connections dropped), recording answers 503 and writes
        nothing; when it is back, the ledger reconnects by itself.
        """
        from dataclasses import replace
        from urllib.parse import urlsplit

        url = postgresql_url(self)
        target = urlsplit(POSTGRESQL)
        proxy = CuttableProxy(target.hostname, target.port or 5432)
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(proxy)
        number = port.getHost().port
        ledger = await open_ledger(
            self, url.replace(f"@{target.netloc.split('@')[-1]}", f"@127.0.0.1:{number}")
        )
        first = await ledger.record(UPLOAD, None)
        await port.stopListening()
        proxy.cut()
        second = replace(UPLOAD, key="second")
        started = time.monotonic()
        with self.assertRaises(Refusal) as caught:
            await ledger.record(second, None)
        self.assertEqual(caught.exception.status, 503)
        self.assertLess(time.monotonic() - started, 5)
        port = await TCP4ServerEndpoint(reactor, number, interface="127.0.0.1").listen(proxy)
        self.addCleanup(port.stopListening)
        self.addCleanup(proxy.cut)
        for _ in range(10):  # the pool drops the dead connection, then reconnects
            try:
                await ledger.record(second, None)
                break
            except Refusal:
                await deferLater(reactor, 0.2, lambda: None)
        self.assertEqual([u.key for u in await ledger.recent(10, None)], ["second", first.key])
        # adbapi itself logs the connection it lost while rolling back.
        import psycopg

        self.flushLoggedErrors(ConnectionLost, psycopg.OperationalError)


class CuttableProxy(ProxyFactory):
    """
    A TCP proxy whose connections the test can cut.
    """

    def __init__(self, host: str, port: int) -> None:
        super().__init__(host, port)
        self.open: list[Any] = []

    def buildProtocol(self, addr: Any) -> Any:
        protocol = super().buildProtocol(addr)
        self.open.append(protocol)
        return protocol

    def cut(self) -> None:
        for protocol in self.open:
            if protocol.transport is not None:
                protocol.transport.abortConnection()
        self.open.clear()


def closed(connection: socket.socket) -> bool:
    """
    Whether the server has closed or reset C{connection}.
    """
    connection.setblocking(False)
    try:
        return connection.recv(100) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


class SlowClientTests(TestCase):
    """
    Clients that trickle or hog connections.
    """

    async def test_tricklersDoNotStarveOthers(self) -> None:
        """
        Connections that send their headers a byte at a time are cut after
        the header deadline, and meanwhile other clients are answered; past
        the connection limit new connections are closed at once.
        """
        site = make_site({}, web_root())
        site.header_deadline = 0.5
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            limit_connections(site, 12)
        )
        self.addCleanup(port.stopListening)
        number = port.getHost().port
        tricklers = []
        for _ in range(10):
            s = socket.create_connection(("127.0.0.1", number))
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            tricklers.append(s)
        self.addCleanup(lambda: [s.close() for s in tricklers])
        started = time.monotonic()
        response = await treq.get(f"http://127.0.0.1:{number}/", persistent=False)
        await response.content()
        self.assertEqual(response.code, 200)
        self.assertLess(time.monotonic() - started, 0.5)
        idle = [socket.create_connection(("127.0.0.1", number)) for _ in range(2)]
        self.addCleanup(lambda: [s.close() for s in idle])
        await deferLater(reactor, 0.1, lambda: None)
        refused = socket.create_connection(("127.0.0.1", number))  # the 13th
        self.addCleanup(refused.close)
        await deferLater(reactor, 0.2, lambda: None)
        self.assertTrue(closed(refused))  # at once
        self.assertFalse(any(closed(s) for s in idle))
        await deferLater(reactor, 1.0, lambda: None)
        self.assertTrue(all(closed(s) for s in tricklers))  # cut at the deadline

    async def test_idleConnectionsClosed(self) -> None:
        """
        A connection that moves no data for the idle timeout is closed; one
        that keeps asking is not, however long it lives.
        """
        limited = limit_connections(make_site({}, web_root()), 10)
        limited.idle_timeout = 0.6
        port = await TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(limited)
        self.addCleanup(port.stopListening)
        number = port.getHost().port
        idle = socket.create_connection(("127.0.0.1", number))
        busy = socket.create_connection(("127.0.0.1", number))
        self.addCleanup(idle.close)
        self.addCleanup(busy.close)
        for _ in range(8):  # 1.2 s in all
            busy.sendall(b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
            await deferLater(reactor, 0.15, lambda: None)
            self.assertIn(b"HTTP/1.1 404", busy.recv(65536))
        self.assertTrue(closed(idle))
        self.assertFalse(closed(busy))
