"""
OSS access credentials, kept out of every repr and log line.
"""

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Credentials:
    """
    An AccessKey pair with an optional STS security token.
    """

    access_key_id: str
    access_key_secret: str = field(repr=False)
    security_token: str | None = field(default=None, repr=False)
