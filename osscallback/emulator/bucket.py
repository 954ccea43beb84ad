# -*- test-case-name: tests.test_emulator -*-
"""
Putting the embedded OSS together: its callback key, kept in the data
folder, and the key source that trusts that key in local mode.
"""

import os
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from osscallback.credentials import Credentials
from osscallback.emulator.notify import CallbackSender
from osscallback.emulator.postobject import PostObject
from osscallback.emulator.postpolicy import BucketAccess
from osscallback.emulator.resource import KEY_PATH, EmulatedBucket
from osscallback.emulator.store import ObjectStore
from osscallback.keys import PublicKeySource


def callback_key(path: str) -> rsa.RSAPrivateKey:
    """
    The emulator's callback signing key, made once at C{path} with
    owner-only permissions.
    """
    try:
        with open(path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
        if isinstance(key, rsa.RSAPrivateKey):
            return key
    except FileNotFoundError:
        pass
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    fd = os.open(path + ".new", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
    os.replace(path + ".new", path)
    return key


class TrustingOwnKey:
    """
    A public key source that knows the emulator's own key: a key URL whose
    path is the emulator's C{/oss/callback_pub_key.pem} gets that key
    straight from memory, on any host, and is never fetched; other URLs go
    to C{source}.  Only a holder of the emulator's private key can sign
    with it, so this trusts nothing but this process.
    """

    def __init__(self, key: rsa.RSAPublicKey, source: PublicKeySource) -> None:
        self._key = key
        self._source = source

    async def public_key(self, url: str) -> rsa.RSAPublicKey:
        parts = urlsplit(url)
        if parts.scheme in ("http", "https") and parts.path == "/oss/" + KEY_PATH:
            return self._key
        return await self._source.public_key(url)


def emulated_bucket(
    reactor: Any,
    http: Any,
    data_dir: str,
    bucket: str,
    region: str,
    credentials: Credentials,
    cors_origins: tuple[str, ...],
) -> tuple[EmulatedBucket, rsa.RSAPublicKey]:
    """
    The bucket resource for local mode, kept under C{data_dir}, and the
    public key its callbacks are signed with.
    """
    root = os.path.join(data_dir, "oss")
    key = callback_key(os.path.join(root, "callback_key.pem"))
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    store = ObjectStore(os.path.join(root, bucket))
    access = BucketAccess(bucket, region, credentials)
    post_object = PostObject(
        reactor,
        access,
        store,
        CallbackSender(reactor, http, key),
        KEY_PATH,
    )
    resource = EmulatedBucket(reactor, access, store, post_object, public_pem, cors_origins)
    return resource, key.public_key()
