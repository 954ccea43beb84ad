# -*- test-case-name: tests.test_hooks -*-
"""
The Python hook: application code named in the configuration, called with
every upload once it is recorded, whose answer OSS relays to the browser.
"""

from typing import Any

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.reflect import namedAny
from zope.interface import Interface
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from osscallback.jsontext import compact_json

# OSS accepts callback answers up to 1 MB; keep well inside it.
MAX_ANSWER = 512 * 1024

log = Logger()


class IUploadHook(Interface):
    """
    Application code that receives verified uploads.
    """

    def uploaded(upload: dict[str, Any]) -> Any:
        """
        Called once per upload, after its record is committed.

        @param upload: the record: key, bucket, size, etag, content_type,
            width, height, user, granted_at, received_at, request_id, id.
        @return: a JSON object for the uploader (OSS relays it to the
            browser), or a Deferred or coroutine of one.  It must come
            within the hook timeout.
        """


class HookError(Exception):
    """
    The configured hook cannot be used.
    """


def load_hook(name: str) -> IUploadHook:
    """
    The hook object named C{package.module.name} or C{package.module:name}.

    @raise HookError: when it cannot be imported or does not provide
        L{IUploadHook}.
    """
    try:
        hook = namedAny(name.replace(":", "."))
    except Exception as e:
        raise HookError(f"cannot import {name}: {e}") from None
    try:
        verifyObject(IUploadHook, hook)
    except Invalid as e:
        raise HookError(f"{name} does not provide IUploadHook: {e}") from None
    return hook


async def hook_answer(
    hook: IUploadHook, upload: dict[str, Any], clock: IReactorTime, timeout: float
) -> dict[str, Any] | None:
    """
    Call C{hook} and return its answer, or L{None} (logged) if it fails,
    takes too long, or is not a JSON object small enough for OSS.
    """
    call: Deferred[Any] = maybeDeferred(hook.uploaded, upload)  # coroutines too
    call.addTimeout(timeout, clock)
    try:
        answer = await call
        if not isinstance(answer, dict):
            raise TypeError(f"it answered {type(answer).__name__}, not a JSON object")
        if len(compact_json(answer)) > MAX_ANSWER:
            raise ValueError("its answer is over 512 KiB")
    except Exception:
        log.failure("the upload hook failed for {key}", key=upload.get("key"))
        return None
    return answer
