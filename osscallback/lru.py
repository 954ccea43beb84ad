# -*- test-case-name: tests.test_lru -*-
"""
A small least-recently-used cache whose entries also expire.

Pure: the caller passes the time.
"""

from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class LRUCache(Generic[K, V]):
    """
    At most C{capacity} values, each valid until its own expiry time.
    """

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K, now: float) -> V | None:
        """
        The live value for C{key}, or L{None}; a hit makes it the most
        recently used.
        """
        entry = self._entries.get(key)
        if entry is None:
            return None
        expires, value = entry
        if now >= expires:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return value

    def put(self, key: K, value: V, expires: float) -> None:
        """
        Store C{value} until C{expires}, evicting the least recently used
        entry when full.
        """
        self._entries[key] = (expires, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self._capacity:
            self._entries.popitem(last=False)
