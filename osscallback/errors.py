"""
The one exception that turns into an HTTP error answer.
"""


class Refusal(Exception):
    """
    A request this server will not honour, with the answer to give.

    @ivar status: the HTTP status code.
    @ivar code: a short machine-readable error code.
    @ivar message: one sentence a person can act on.
    @ivar headers: headers the answer needs (Retry-After, WWW-Authenticate).
    """

    def __init__(
        self, status: int, code: str, message: str, headers: dict[bytes, bytes] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def __repr__(self) -> str:
        return f"Refusal({self.status}, {self.code!r}, {self.message!r})"
