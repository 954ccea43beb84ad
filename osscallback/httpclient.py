"""
The parts of treq's HTTP client this server uses, as protocols, so that
tests can hand in StubTreq or a real client alike.
"""

from typing import Any, Protocol

from twisted.internet.defer import Deferred


class HTTPGetter(Protocol):
    """
    Fetches (public keys).
    """

    def get(self, url: str, **kwargs: Any) -> "Deferred[Any]": ...


class HTTPPoster(Protocol):
    """
    Posts (the emulator's callbacks, the webhook).
    """

    def post(self, url: str, **kwargs: Any) -> "Deferred[Any]": ...


class HTTPHeader(Protocol):
    """
    Asks for headers only (HeadObject).
    """

    def head(self, url: str, **kwargs: Any) -> "Deferred[Any]": ...
