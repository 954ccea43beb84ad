"""
Tests for L{osscallback.lru}.
"""

from twisted.trial.unittest import SynchronousTestCase

from osscallback.lru import LRUCache


class LRUCacheTests(SynchronousTestCase):
    """
    L{LRUCache}.
    """

    def test_expiry(self) -> None:
        """
        A value is returned until its expiry time, then dropped.
        """
        cache: LRUCache[str, int] = LRUCache(2)
        cache.put("a", 1, expires=10)
        self.assertEqual(cache.get("a", now=9.9), 1)
        self.assertIsNone(cache.get("a", now=10))
        self.assertEqual(len(cache), 0)

    def test_evictsLeastRecentlyUsed(self) -> None:
        """
        When full, the entry used longest ago goes; a get counts as use.
        """
        cache: LRUCache[str, int] = LRUCache(2)
        cache.put("a", 1, 100)
        cache.put("b", 2, 100)
        cache.get("a", 0)
        cache.put("c", 3, 100)
        self.assertEqual(
            [cache.get(k, 0) for k in "abc"], [1, None, 3]
        )
