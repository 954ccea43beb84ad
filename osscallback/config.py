# -*- test-case-name: tests.test_config -*-
"""
The server's settings: one frozen object built from the command line, the
environment and a TOML file, in that order of precedence, over defaults.
"""

import importlib.util
import os
import re
import secrets
import stat
import tomllib
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit

from osscallback.credentials import Credentials

DEFAULT_TRUSTED_KEY_URLS = (
    "https://gosspublic.alicdn.com/",
    "http://gosspublic.alicdn.com/",
)
MAX_OBJECT_SIZE = 5 * 1024**3
LOCAL_BUCKET = "local-bucket"
# The throwaway local-mode credentials a first process hands its workers.
LOCAL_KEY_ID = "OSSCALLBACK_LOCAL_KEY_ID"
LOCAL_KEY_SECRET = "OSSCALLBACK_LOCAL_KEY_SECRET"
LOCAL_REGION = "local"


class ConfigError(Exception):
    """
    A setting is missing, malformed or contradicts another; the message is
    one line a person can act on.
    """


@dataclass(frozen=True)
class Settings:
    """
    Everything the server needs to know, checked and in its final types.

    @ivar endpoint: where browsers POST uploads, or L{None} in local mode,
        where it is this server's own C{/oss/}.
    @ivar callback_url: the base URL OSS calls back, or L{None} in local
        mode without one, where it is this server's own C{/callback}.
    @ivar token_secret: the key of the callback tokens' MACs.
    """

    port: str
    local: bool
    bucket: str
    region: str
    endpoint: str | None
    credentials: Credentials
    callback_url: str | None
    upload_dir: str
    expire: int
    max_size: int
    allow_types: tuple[str, ...]
    signature_version: int
    trust_key_urls: tuple[str, ...]
    cors_origins: tuple[str, ...]
    data_dir: str
    database: str
    confirm: bool
    hook: str | None
    webhook_url: str | None
    token_secret: bytes = field(repr=False)
    webhook_secret: bytes | None = field(default=None, repr=False)
    log_format: str = "text"
    access_log: bool = True
    auth_token: bytes | None = field(default=None, repr=False)
    user_header: str | None = None
    rate_limit: int = 120
    workers: int = 1


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError("must be a non-empty text")
    return value.strip()


def _integer(low: int, high: int) -> Callable[[Any], int]:
    def coerce(value: Any) -> int:
        text = str(value).strip()
        if isinstance(value, bool) or not re.fullmatch(r"[0-9]{1,12}", text):
            raise ValueError(f"must be a whole number from {low} to {high}")
        number = int(text)
        if not low <= number <= high:
            raise ValueError(f"must be a whole number from {low} to {high}")
        return number

    return coerce


def port(value: Any) -> str:
    """
    A bare port number becomes C{tcp:N}; anything else is an endpoint
    description, parsed later.
    """
    text = _text(str(value))
    if text.isdigit():
        return f"tcp:{_integer(1, 65535)(text)}"
    return text


def bucket(value: Any) -> str:
    text = _text(value)
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{1,61}[a-z0-9]", text):
        raise ValueError(
            "must be an OSS bucket name: 3-63 lowercase letters, digits and hyphens"
        )
    return text


def region(value: Any) -> str:
    text = _text(value).removeprefix("oss-")
    if not re.fullmatch(r"[a-z0-9]+(-[a-z0-9]+)*", text):
        raise ValueError("must be a region id such as cn-hangzhou")
    return text


def _url(value: Any, query_allowed: bool = False) -> str:
    text = _text(value)
    try:
        parts = urlsplit(text)
        parts.port
    except ValueError:
        raise ValueError("must be an http:// or https:// URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an http:// or https:// URL")
    if parts.fragment or (parts.query and not query_allowed):
        raise ValueError("must be a URL without a query or fragment")
    return text


def endpoint(value: Any) -> str:
    return _url(value)


def callback_url(value: Any) -> str:
    text = _url(value).rstrip("/")
    if not re.fullmatch(r"[A-Za-z0-9_./-]*", urlsplit(text).path):
        raise ValueError(
            "must have a path of only letters, digits and _ . / - "
            "(OSS signs the decoded path)"
        )
    return text


def upload_dir(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("must be a text")
    text = value if not value or value.endswith("/") else value + "/"
    segments = text.split("/")[:-1]
    if (
        text.startswith("/")
        or "\\" in text
        or any(s in ("", ".", "..") for s in segments)
        or not text.isprintable()
        or len(text.encode("utf-8")) > 512
    ):
        raise ValueError(
            "must be a relative key prefix such as uploads/ "
            "(no leading /, no empty, . or .. parts)"
        )
    return text


def content_type_pattern(value: Any) -> str:
    text = _text(value).lower()
    if not re.fullmatch(r"[a-z0-9!#$&^_.+-]+/(\*|[a-z0-9!#$&^_.+-]+)", text):
        raise ValueError("must be a content type such as image/png or image/*")
    return text


def signature_version(value: Any) -> int:
    text = str(value).strip()
    if text not in ("1", "4"):
        raise ValueError("must be 1 or 4")
    return int(text)


def trusted_prefix(value: Any) -> str:
    text = _url(value)
    scheme, rest = text.split("://", 1)
    if "/" not in rest:
        raise ValueError(
            "must end its host with a slash, as in https://gosspublic.alicdn.com/, "
            "so that no other host matches it"
        )
    return text


def log_format(value: Any) -> str:
    text = _text(value)
    if text not in ("text", "json"):
        raise ValueError("must be text or json")
    return text


def header_name(value: Any) -> str:
    text = _text(value)
    if not re.fullmatch(r"[A-Za-z0-9-]{1,64}", text):
        raise ValueError("must be an HTTP header name such as X-Remote-User")
    return text


def webhook_url(value: Any) -> str:
    return _url(value, query_allowed=True)


def cors_origin(value: Any) -> str:
    text = _text(value)
    if text == "*":
        return text
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.path or parts.query:
        raise ValueError("must be * or an origin such as https://app.example.com")
    return text


def database(value: Any) -> str:
    text = _text(value)
    if text.startswith(("postgresql://", "postgres://")):
        if importlib.util.find_spec("psycopg") is None:
            raise ValueError(
                "needs PostgreSQL support: pip install 'osscallback[postgresql]'"
            )
        return text
    if not text.startswith("sqlite:///") or len(text) == len("sqlite:///"):
        raise ValueError("must be sqlite:///path or postgresql://user@host/db")
    return text


def _flag(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError("must be true or false")
    return value


# Every setting: its coerce function and default (already coerced).
# Repeatable settings take a list.
_SETTINGS: dict[str, tuple[Callable[[Any], Any], Any]] = {
    "port": (port, "tcp:1234"),
    "bucket": (bucket, None),
    "region": (region, None),
    "endpoint": (endpoint, None),
    "access_key_id": (_text, None),
    "access_key_secret_file": (_text, None),
    "callback_url": (callback_url, None),
    "upload_dir": (upload_dir, "uploads/"),
    "expire": (_integer(1, 7 * 86400), 300),
    "max_size": (_integer(0, MAX_OBJECT_SIZE), 1024**3),
    "allow_type": (content_type_pattern, ()),
    "signature_version": (signature_version, 4),
    "trust_key_url": (trusted_prefix, DEFAULT_TRUSTED_KEY_URLS),
    "cors_origin": (cors_origin, None),
    "data_dir": (_text, "./osscallback-data"),
    "database": (database, None),
    "token_secret_file": (_text, None),
    "local": (_flag, False),
    "no_confirm": (_flag, False),
    "hook": (_text, None),
    "webhook_url": (webhook_url, None),
    "webhook_secret_file": (_text, None),
    "log_format": (log_format, "text"),
    "no_access_log": (_flag, False),
    "auth_token_file": (_text, None),
    "user_header": (header_name, None),
    "rate_limit": (_integer(0, 1_000_000), 120),
    "workers": (_integer(1, 64), 1),
}
REPEATABLE = ("allow_type", "trust_key_url", "cors_origin")


def _option(name: str) -> str:
    return "--" + name.replace("_", "-")


def _coerce(name: str, value: Any) -> Any:
    coerce = _SETTINGS[name][0]
    try:
        if name in REPEATABLE:
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, (list, tuple)):
                raise ValueError("must be a list of texts")
            return tuple(coerce(v) for v in values)
        return coerce(value)
    except ValueError as e:
        raise ConfigError(f"{_option(name)} {e}.") from None


def read_config_file(path: str) -> dict[str, Any]:
    """
    The C{[osscallback]} table of a TOML file.
    """
    try:
        with open(path, "rb") as f:
            document = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"--config: cannot read {path}: {e.strerror}.") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"--config: {path} is not valid TOML: {e}.") from None
    table = document.get("osscallback")
    if not isinstance(table, dict):
        raise ConfigError(f"--config: {path} has no [osscallback] table.")
    for name in table:
        if name == "access_key_secret":
            raise ConfigError(
                f"--config: {path} must not hold the secret itself; put it in a "
                "file named by access_key_secret_file, or in OSS_ACCESS_KEY_SECRET."
            )
        if name not in _SETTINGS:
            raise ConfigError(f"--config: {path} has an unknown setting {name!r}.")
    return table


def _read_secret(path: str, what: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read().strip()
    except (OSError, UnicodeDecodeError) as e:
        reason = getattr(e, "strerror", None) or "not UTF-8 text"
        raise ConfigError(f"{what}: cannot read {path}: {reason}.") from None
    if not text:
        raise ConfigError(f"{what}: {path} is empty.")
    return text


def token_secret(data_dir: str, path: str | None) -> bytes:
    """
    The callback tokens' secret: from C{path} if given, otherwise from
    C{token-secret} in the data folder, made there once with owner-only
    permissions.
    """
    if path is not None:
        text = _read_secret(path, "--token-secret-file")
        if len(text) < 32:
            raise ConfigError(
                f"--token-secret-file: {path} must hold at least 32 characters."
            )
        return text.encode("utf-8")
    path = os.path.join(data_dir, "token-secret")
    try:
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            mode = os.stat(path).st_mode
            if mode & (stat.S_IRWXG | stat.S_IRWXO):
                raise ConfigError(
                    f"--data-dir: {path} is readable by others; chmod 600 it."
                ) from None
        else:
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32) + "\n")
    except OSError as e:
        raise ConfigError(
            f"--data-dir: cannot keep the token secret in {data_dir}: {e.strerror}."
        ) from None
    return _read_secret(path, "--data-dir").encode("utf-8")


def load_settings(given: Mapping[str, Any], environ: Mapping[str, str]) -> Settings:
    """
    Build the settings.

    @param given: the command line's values by setting name (C{_} for
        C{-}), only for options that were given.
    @param environ: the process environment.
    @raise ConfigError: for any setting that is wrong, with one line saying
        what to do.
    """
    values = {name: default for name, (_, default) in _SETTINGS.items()}
    if given.get("config"):
        for name, value in read_config_file(given["config"]).items():
            values[name] = _coerce(name, value)
    secret = None
    if environ.get("OSS_ACCESS_KEY_ID"):
        values["access_key_id"] = environ["OSS_ACCESS_KEY_ID"]
    if environ.get("OSS_ACCESS_KEY_SECRET"):
        secret = environ["OSS_ACCESS_KEY_SECRET"]
        values["access_key_secret_file"] = None
    for name, value in given.items():
        if name != "config" and value is not None:
            values[name] = _coerce(name, value)
    if given.get("access_key_secret_file") or secret is None:
        path = values["access_key_secret_file"]
        secret = None if path is None else _read_secret(path, "--access-key-secret-file")
    key_id = values["access_key_id"]
    if (key_id is None) != (secret is None):
        raise ConfigError(
            "Give both the AccessKey id (OSS_ACCESS_KEY_ID or --access-key-id) and "
            "its secret (OSS_ACCESS_KEY_SECRET or --access-key-secret-file), "
            "or neither for local mode."
        )
    local = values["local"] or key_id is None
    if local:
        credentials = Credentials(
            environ.get(LOCAL_KEY_ID) or "LTAILOCAL" + secrets.token_hex(8),
            environ.get(LOCAL_KEY_SECRET) or secrets.token_urlsafe(24),
        )
        values["bucket"] = values["bucket"] or LOCAL_BUCKET
        values["region"] = values["region"] or LOCAL_REGION
    else:
        assert secret is not None
        credentials = Credentials(
            key_id, secret, environ.get("OSS_SESSION_TOKEN") or None
        )
        for name in ("bucket", "callback_url"):
            if values[name] is None:
                raise ConfigError(
                    f"{_option(name)} is required with a real bucket "
                    f"(see --help), or leave out the credentials for local mode."
                )
        if values["region"] is None and (
            values["signature_version"] == 4 or values["endpoint"] is None
        ):
            raise ConfigError(
                "--region is required with a real bucket, e.g. --region cn-hangzhou."
            )
        if values["endpoint"] is None:
            values["endpoint"] = (
                f"https://{values['bucket']}.oss-{values['region']}.aliyuncs.com"
            )
    webhook_secret = None
    if values["webhook_url"] is not None:
        if values["webhook_secret_file"] is None:
            raise ConfigError(
                "--webhook-url needs --webhook-secret-file, the key receivers "
                "check the signature with."
            )
        webhook_secret = _read_secret(
            values["webhook_secret_file"], "--webhook-secret-file"
        ).encode("utf-8")
    auth_token = None
    if values["auth_token_file"] is not None:
        auth_token = _read_secret(values["auth_token_file"], "--auth-token-file")
    elif environ.get("OSSCALLBACK_AUTH_TOKEN"):
        auth_token = environ["OSSCALLBACK_AUTH_TOKEN"]
    if auth_token is not None and len(auth_token) < 16:
        raise ConfigError("The auth token must be at least 16 characters long.")
    if values["workers"] > 1 and not values["port"].startswith("tcp:"):
        raise ConfigError("--workers above 1 needs a tcp: port, which the workers share.")
    data_dir = values["data_dir"]
    try:
        os.makedirs(data_dir, mode=0o700, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"--data-dir: cannot create {data_dir}: {e.strerror}.") from None
    return Settings(
        port=values["port"],
        local=local,
        bucket=values["bucket"],
        region=values["region"] or "",
        endpoint=None if local else values["endpoint"],
        credentials=credentials,
        callback_url=values["callback_url"],
        upload_dir=values["upload_dir"],
        expire=values["expire"],
        max_size=values["max_size"],
        allow_types=values["allow_type"],
        signature_version=values["signature_version"],
        trust_key_urls=values["trust_key_url"],
        cors_origins=values["cors_origin"] or (("*",) if local else ()),
        data_dir=data_dir,
        database=values["database"]
        or "sqlite:///" + os.path.join(os.path.abspath(data_dir), "uploads.sqlite3"),
        confirm=not values["no_confirm"],
        hook=values["hook"],
        webhook_url=values["webhook_url"],
        token_secret=token_secret(data_dir, values["token_secret_file"]),
        webhook_secret=webhook_secret,
        log_format=values["log_format"],
        access_log=not values["no_access_log"],
        auth_token=None if auth_token is None else auth_token.encode("utf-8"),
        user_header=values["user_header"],
        rate_limit=values["rate_limit"],
        workers=values["workers"],
    )
