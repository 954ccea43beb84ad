# -*- test-case-name: tests.test_emulator_store -*-
"""
The emulated bucket's objects on disk: each object's bytes and a JSON file
of its metadata, named by a hash of the key so that no key can name a path.
The bytes are stored under a name of their own MD5 and the metadata is
switched to them atomically, so an object survives a crash or a restart
whole, old or new, never half.
"""

import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass


@dataclass(frozen=True)
class StoredObject:
    """
    An object's metadata.

    @ivar etag: quoted uppercase MD5 hex, as OSS writes it.
    @ivar crc64: the CRC-64/ECMA of the bytes, as decimal text.
    @ivar content_md5: base64 MD5 of the bytes.
    @ivar last_modified: seconds since the epoch.
    """

    key: str
    size: int
    etag: str
    content_type: str
    crc64: str
    content_md5: str
    last_modified: float


class ObjectStore:
    """
    The objects of one bucket, in C{root}.
    """

    def __init__(self, root: str) -> None:
        self._objects = os.path.join(root, "objects")
        self.spool = os.path.join(root, "incoming")
        for folder in (self._objects, self.spool):
            os.makedirs(folder, mode=0o700, exist_ok=True)

    def _path(self, key: str) -> str:
        name = hashlib.sha256(key.encode("utf-8")).hexdigest()
        return os.path.join(self._objects, name)

    def head(self, key: str) -> StoredObject | None:
        """
        The metadata of C{key}, or L{None} if there is no such object.
        """
        try:
            with open(self._path(key) + ".json", encoding="utf-8") as f:
                return StoredObject(**json.load(f))
        except FileNotFoundError:
            return None

    def data_path(self, meta: StoredObject) -> str:
        """
        The file holding the bytes of the object C{meta} describes.
        """
        return self._path(meta.key) + "." + meta.etag.strip('"').lower()

    def put(self, spooled: str, meta: StoredObject) -> None:
        """
        Store the file at C{spooled} (in L{spool}) as C{meta.key}, replacing
        any object there.
        """
        previous = self.head(meta.key)
        fd, temporary = tempfile.mkstemp(dir=self.spool, prefix="meta-")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(asdict(meta), f)
        os.replace(spooled, self.data_path(meta))
        os.replace(temporary, self._path(meta.key) + ".json")
        if previous is not None and previous.etag != meta.etag:
            os.unlink(self.data_path(previous))
