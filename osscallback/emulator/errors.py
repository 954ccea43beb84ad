# -*- test-case-name: tests.test_emulator_errors -*-
"""
OSS's error answers: XML with Code, Message, RequestId, HostId and EC.
"""

from xml.sax.saxutils import escape

# OSS's EC (error-centre) numbers where its documentation names them; the
# rest are not documented and get the placeholder.
_UNDOCUMENTED_EC = "0000-00000000"


class OSSError(Exception):
    """
    An error OSS would answer with.
    """

    def __init__(self, status: int, code: str, message: str, ec: str = _UNDOCUMENTED_EC) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.ec = ec


def error_xml(error: OSSError, request_id: str, host_id: str) -> bytes:
    """
    The XML body of an OSS error answer.
    """
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        "<Error>\n"
        f"  <Code>{escape(error.code)}</Code>\n"
        f"  <Message>{escape(error.message)}</Message>\n"
        f"  <RequestId>{escape(request_id)}</RequestId>\n"
        f"  <HostId>{escape(host_id)}</HostId>\n"
        f"  <EC>{escape(error.ec)}</EC>\n"
        "</Error>\n"
    ).encode("utf-8")


def malformed() -> OSSError:
    return OSSError(
        400,
        "MalformedPOSTRequest",
        "The body of your POST request is not well-formed multipart/form-data.",
    )


def invalid_argument(message: str) -> OSSError:
    return OSSError(400, "InvalidArgument", message)


def access_denied(message: str, ec: str = _UNDOCUMENTED_EC) -> OSSError:
    return OSSError(403, "AccessDenied", message, ec)
