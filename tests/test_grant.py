"""
Tests for L{osscallback.grant}: query parsing, key choice, limits and the
callback token.
"""

from datetime import datetime, timezone

from twisted.trial.unittest import SynchronousTestCase

from osscallback.errors import Refusal
from osscallback.grant import (
    CALLBACK_GRACE,
    Grant,
    GrantQuery,
    GrantRules,
    NoncePool,
    new_grant,
    parse_query,
    safe_extension,
    seal,
    unseal,
)

NOW = datetime(2026, 12, 3, 23, 59, 30, tzinfo=timezone.utc)
SECRET = b"s" * 64
RULES = GrantRules(
    bucket="b-1",
    upload_dir="uploads/",
    expire=300,
    max_size=1000,
    allow_types=(),
    by_prefix=False,
)


class ParseQueryTests(SynchronousTestCase):
    """
    L{parse_query}.
    """

    def test_all(self) -> None:
        """
        name, size and type are read; the type is lowercased.
        """
        self.assertEqual(
            parse_query({b"name": [b"a.png"], b"size": [b"12"], b"type": [b"Image/PNG"]}),
            GrantQuery("a.png", 12, "image/png"),
        )

    def test_none(self) -> None:
        """
        All three are optional; empty values count as absent.
        """
        self.assertEqual(parse_query({}), GrantQuery())
        self.assertEqual(parse_query({b"name": [b""]}), GrantQuery())

    def test_malformed(self) -> None:
        """
        A malformed parameter that is present is a 400 naming it.
        """
        for args, code in [
            ({b"size": [b"abc"]}, "bad_size"),
            ({b"size": [b"-1"]}, "bad_size"),
            ({b"size": [b"1.5"]}, "bad_size"),
            ({b"size": ["٣".encode()]}, "bad_size"),
            ({b"size": [b"9" * 30]}, "bad_size"),
            ({b"type": [b"png"]}, "bad_type"),
            ({b"type": [b"image/png\r\nx: y"]}, "bad_type"),
            ({b"name": [b"\xff"]}, "bad_parameter"),
            ({b"size": [b"1", b"2"]}, "bad_parameter"),
        ]:
            with self.assertRaises(Refusal) as caught:
                parse_query(args)
            self.assertEqual(
                (caught.exception.status, caught.exception.code), (400, code), args
            )


class SafeExtensionTests(SynchronousTestCase):
    """
    L{safe_extension}.
    """

    def test_cases(self) -> None:
        """
        Only a short alphanumeric extension of the base name survives,
        lowercased; path tricks and odd names give none.
        """
        for name, extension in [
            ("photo.PNG", ".png"),
            ("archive.tar.gz", ".gz"),
            ("../../etc/passwd", ""),
            ("..\\..\\evil.exe", ".exe"),
            ("a/b.c/d", ""),
            (".bashrc", ""),
            ("x.", ""),
            ("x.<script>", ""),
            ("x.verylongextension", ""),
            ("x.ünï", ""),
            (None, ""),
        ]:
            self.assertEqual(safe_extension(name), extension, name)


class NewGrantTests(SynchronousTestCase):
    """
    L{new_grant}.
    """

    def test_exactKey(self) -> None:
        """
        A grant pins one key under the upload folder and the day, made
        unique by the nonce, with the file's extension; the policy pins it
        with eq, the status and the requested size.
        """
        grant, conditions, fields = new_grant(
            RULES, GrantQuery("../x.PNG", 10, None), NOW, b"\x01" * 16
        )
        self.assertEqual(grant.key, "uploads/2026/12/03/" + "01" * 16 + ".png")
        self.assertIsNone(grant.folder)
        self.assertEqual(grant.max_size, 10)
        self.assertEqual(grant.expires, int(NOW.timestamp()) + 300)
        self.assertEqual((grant.id, grant.issued), ("01" * 16, int(NOW.timestamp())))
        self.assertEqual(
            conditions,
            [
                ["eq", "$key", grant.key],
                ["eq", "$success_action_status", "200"],
                ["content-length-range", 0, 10],
            ],
        )
        self.assertEqual(fields, {})

    def test_uniqueKeys(self) -> None:
        """
        Two nonces give two keys.
        """
        first, _, _ = new_grant(RULES, GrantQuery(), NOW, b"\x01" * 16)
        second, _, _ = new_grant(RULES, GrantQuery(), NOW, b"\x02" * 16)
        self.assertNotEqual(first.key, second.key)

    def test_prefix(self) -> None:
        """
        A by-prefix grant pins its own unique folder with starts-with.
        """
        rules = GrantRules("b-1", "up/", 60, 1000, (), by_prefix=True)
        grant, conditions, _ = new_grant(rules, GrantQuery(), NOW, b"\xab" * 16)
        self.assertEqual(grant.folder, "up/2026/12/03/" + "ab" * 16 + "/")
        self.assertTrue(grant.key.startswith(grant.folder))
        self.assertEqual(conditions[0], ["starts-with", "$key", grant.folder])
        self.assertEqual(conditions[2], ["content-length-range", 0, 1000])

    def test_tooLarge(self) -> None:
        """
        A size over the maximum is refused with 400 and both numbers.
        """
        with self.assertRaises(Refusal) as caught:
            new_grant(RULES, GrantQuery(size=1001), NOW, b"\x00" * 16)
        self.assertEqual(caught.exception.status, 400)
        self.assertIn("1001", caught.exception.message)
        self.assertIn("1000", caught.exception.message)

    def test_types(self) -> None:
        """
        An allowed type is pinned with eq and sent as Content-Type; one
        wildcard becomes starts-with; exact types become in; a type outside
        the allowed ones is refused.
        """
        rules = GrantRules("b-1", "u/", 60, 10, ("image/*", "application/pdf"), False)
        _, conditions, fields = new_grant(
            rules, GrantQuery(type="image/png"), NOW, b"\x00" * 16
        )
        self.assertEqual(conditions[-1], ["eq", "$content-type", "image/png"])
        self.assertEqual(fields, {"Content-Type": "image/png"})
        for mime in ("text/html", "image"):
            with self.assertRaises(Refusal) as caught:
                new_grant(rules, GrantQuery(type=mime), NOW, b"\x00" * 16)
            self.assertEqual(caught.exception.code, "type_not_allowed")
        with self.assertRaises(Refusal) as caught:
            new_grant(rules, GrantQuery(), NOW, b"\x00" * 16)
        self.assertEqual(caught.exception.code, "type_required")
        wildcard = GrantRules("b-1", "u/", 60, 10, ("image/*",), False)
        _, conditions, _ = new_grant(wildcard, GrantQuery(), NOW, b"\x00" * 16)
        self.assertEqual(conditions[-1], ["starts-with", "$content-type", "image/"])
        exact = GrantRules("b-1", "u/", 60, 10, ("image/png", "image/gif"), False)
        _, conditions, _ = new_grant(exact, GrantQuery(), NOW, b"\x00" * 16)
        self.assertEqual(conditions[-1], ["in", "$content-type", ["image/png", "image/gif"]])


class TokenTests(SynchronousTestCase):
    """
    L{seal} and L{unseal}.
    """

    grant = Grant("0a" * 16, "uploads/k.png", None, "b-1", 10, 999_700, 1_000_000, "alice")

    def test_roundTrip(self) -> None:
        """
        A sealed grant unseals to itself, and its token is path-safe.
        """
        token = seal(self.grant, SECRET)
        self.assertRegex(token, r"^[A-Za-z0-9_-]+$")
        self.assertEqual(unseal(token, SECRET, 1_000_000), self.grant)

    def test_forged(self) -> None:
        """
        A token changed anywhere, made with another secret, or garbage, is
        refused with 403.
        """
        token = seal(self.grant, SECRET)
        other = seal(Grant("0b" * 16, "uploads/other", None, "b-1", 10**9, 0, 2_000_000), b"x" * 64)
        flipped = token[:5] + ("A" if token[5] != "A" else "B") + token[6:]
        for bad in [flipped, token[:-1] + "?", other, "", "x" * 43, "é" * 60, token + "A"]:
            with self.assertRaises(Refusal) as caught:
                unseal(bad, SECRET, 1_000_000)
            self.assertEqual(
                (caught.exception.status, caught.exception.code), (403, "bad_token")
            )

    def test_expiry(self) -> None:
        """
        A token is accepted until the grace period after its grant's expiry.
        """
        token = seal(self.grant, SECRET)
        unseal(token, SECRET, 1_000_000 + CALLBACK_GRACE)
        with self.assertRaises(Refusal) as caught:
            unseal(token, SECRET, 1_000_001 + CALLBACK_GRACE)
        self.assertEqual(caught.exception.code, "grant_expired")


class AdmitsTests(SynchronousTestCase):
    """
    L{Grant.admits}.
    """

    def test_exact(self) -> None:
        """
        An exact grant admits its key in its bucket within its size only.
        """
        grant = Grant("0c" * 16, "u/k", None, "b-1", 10, 0, 0)
        self.assertIsNone(grant.admits("b-1", "u/k", 10))
        self.assertIn("bucket", grant.admits("b-2", "u/k", 1) or "")
        self.assertIn("key", grant.admits("b-1", "u/k2", 1) or "")
        self.assertIn("larger", grant.admits("b-1", "u/k", 11) or "")

    def test_folder(self) -> None:
        """
        A folder grant admits any key under its folder, not the folder
        itself or a sibling.
        """
        grant = Grant("0d" * 16, "u/f/upload", "u/f/", "b-1", 10, 0, 0)
        self.assertIsNone(grant.admits("b-1", "u/f/photo.jpg", 1))
        self.assertIsNotNone(grant.admits("b-1", "u/f/", 1))
        self.assertIsNotNone(grant.admits("b-1", "u/f2/x", 1))


class NoncePoolTests(SynchronousTestCase):
    """
    L{NoncePool}.
    """

    def test_slicesFreshBytes(self) -> None:
        """
        Nonces are consecutive, never reused slices of the source's bytes,
        read 4 KiB at a time.
        """
        reads: list[int] = []

        def source(size: int) -> bytes:
            reads.append(size)
            return bytes(range(256)) * (size // 256)

        pool = NoncePool(source)
        nonces = [pool(16) for _ in range(257)]
        self.assertEqual(nonces[0], bytes(range(16)))
        self.assertEqual(nonces[1], bytes(range(16, 32)))
        self.assertEqual(reads, [4096, 4096])
