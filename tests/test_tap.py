"""
Tests for L{osscallback.tap} and the twistd plugin.
"""

from twisted.application.service import IServiceMaker
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import getPlugins
from twisted.trial.unittest import SynchronousTestCase

from osscallback import tap


class OptionsTests(SynchronousTestCase):
    """
    L{tap.Options}.
    """

    def parse(self, *args: str) -> tap.Options:
        options = tap.Options(reactor=MemoryReactorClock(), environ={})
        options.parseOptions(["--data-dir", self.mktemp(), *args])
        return options

    def test_barePort(self) -> None:
        """
        A bare port number means TCP on that port.
        """
        self.assertEqual(self.parse("--port", "1234").settings.port, "tcp:1234")

    def test_endpointDescription(self) -> None:
        """
        An endpoint description is accepted as it is.
        """
        options = self.parse("-p", "tcp:0:interface=127.0.0.1")
        self.assertEqual(options.settings.port, "tcp:0:interface=127.0.0.1")

    def test_systemdEndpointWithoutSocket(self) -> None:
        """
        The socket-activation endpoint without a socket from systemd is a
        clear usage error, not a traceback.
        """
        with self.assertRaises(SystemExit) as caught:
            self.parse("--port", "systemd:domain=INET:index=0")
        self.assertIn("systemd passed no such socket", str(caught.exception.code))

    def test_repeatable(self) -> None:
        """
        --allow-type and --trust-key-url repeat, and replace the defaults.
        """
        settings = self.parse(
            "--allow-type", "image/*", "--allow-type", "application/pdf",
            "--trust-key-url", "https://keys.example/",
        ).settings
        self.assertEqual(settings.allow_types, ("image/*", "application/pdf"))
        self.assertEqual(settings.trust_key_urls, ("https://keys.example/",))

    def test_local(self) -> None:
        """
        --local forces local mode even with credentials.
        """
        options = tap.Options(
            reactor=MemoryReactorClock(),
            environ={"OSS_ACCESS_KEY_ID": "a", "OSS_ACCESS_KEY_SECRET": "b"},
        )
        options.parseOptions(["--data-dir", self.mktemp(), "--local"])
        self.assertTrue(options.settings.local)

    def test_usageErrorIsOneLine(self) -> None:
        """
        A bad value exits with one line naming the option, not a traceback
        or the whole help.
        """
        for args, words in [
            (["--port", "abc"], "--port 'abc': Unknown endpoint type"),
            (["--expire", "x"], "--expire must be a whole number"),
            (["--no-such-option"], "no-such-option"),
            (["--access-key-secret", "x"], "access-key-secret"),
        ]:
            with self.assertRaises(SystemExit) as caught:
                self.parse(*args)
            message = str(caught.exception.code)
            self.assertIn(words, message)
            self.assertNotIn("\n", message)
            self.assertTrue(message.startswith("twistd osscallback: "))


class ServiceTests(SynchronousTestCase):
    """
    L{tap.makeService}.
    """

    def test_listens(self) -> None:
        """
        The service listens on the configured endpoint with the site.
        """
        reactor = MemoryReactorClock()
        options = tap.Options(reactor=reactor, environ={})
        options.parseOptions(
            ["--data-dir", self.mktemp(), "--port", "tcp:8123:interface=127.0.0.1"]
        )
        service = tap.makeService(options)
        service.startService()
        self.addCleanup(service.stopService)
        port, factory, _, interface = reactor.tcpServers[0]
        self.assertEqual((port, interface), (8123, "127.0.0.1"))
        site = factory.wrappedFactory  # behind the connection limit
        self.assertEqual(factory.limit, tap.MAX_CONNECTIONS)
        self.assertIn(b"policy", site.resource.children)
        self.assertIn(b"callback", site.resource.children)


class PluginTests(SynchronousTestCase):
    """
    The twistd plugin.
    """

    def test_discovered(self) -> None:
        """
        twistd finds the osscallback plugin, and it uses L{tap}.
        """
        from twisted import plugins

        makers = {p.tapname: p for p in getPlugins(IServiceMaker, plugins)}
        self.assertIn("osscallback", makers)
        self.assertIs(makers["osscallback"].options, tap.Options)
