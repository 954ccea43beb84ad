"""
A test hook that takes a second, to hold an answer in flight.
"""

from typing import Any

from twisted.internet import reactor
from twisted.internet.task import deferLater
from zope.interface import implementer

from osscallback.hooks import IUploadHook


@implementer(IUploadHook)
class SlowHook:
    """
    Answers after a second.
    """

    async def uploaded(self, upload: dict[str, Any]) -> dict[str, Any]:
        await deferLater(reactor, 1.0, lambda: None)
        return {"Status": "OK", "slow": True}


hook = SlowHook()
