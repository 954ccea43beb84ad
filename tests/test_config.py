"""
Tests for L{osscallback.config}: where each setting comes from, and the
one-line errors for wrong ones.
"""

import os
import stat
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from osscallback.config import ConfigError, Settings, load_settings

REAL_ENV = {"OSS_ACCESS_KEY_ID": "LTAIenv", "OSS_ACCESS_KEY_SECRET": "env-secret"}


class LoadSettingsTests(SynchronousTestCase):
    """
    L{load_settings}.
    """

    def setUp(self) -> None:
        self.data = self.mktemp()

    def load(self, given: dict[str, Any] | None = None, environ: dict[str, str] | None = None) -> Settings:
        return load_settings({"data_dir": self.data, **(given or {})}, environ or {})

    def write(self, text: str) -> str:
        path = self.mktemp()
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path

    def refused(self, given: dict[str, Any], environ: dict[str, str] | None = None) -> str:
        with self.assertRaises(ConfigError) as caught:
            self.load(given, environ)
        message = str(caught.exception)
        self.assertNotIn("\n", message)
        return message

    def test_localByDefault(self) -> None:
        """
        Without credentials the server runs in local mode with throwaway
        credentials, the local bucket and the contract's defaults.
        """
        settings = self.load()
        self.assertTrue(settings.local)
        self.assertEqual(settings.bucket, "local-bucket")
        self.assertEqual(settings.port, "tcp:1234")
        self.assertEqual((settings.expire, settings.max_size), (300, 1073741824))
        self.assertEqual(settings.signature_version, 4)
        self.assertEqual(settings.upload_dir, "uploads/")
        self.assertEqual(
            settings.trust_key_urls,
            ("https://gosspublic.alicdn.com/", "http://gosspublic.alicdn.com/"),
        )
        self.assertTrue(settings.database.startswith("sqlite:///"))
        self.assertTrue(settings.database.endswith("uploads.sqlite3"))
        self.assertNotEqual(
            settings.credentials.access_key_secret, self.load().credentials.access_key_secret
        )

    def test_realBucket(self) -> None:
        """
        With credentials from the environment the server uses the real
        bucket, with the default endpoint and the STS token.
        """
        settings = self.load(
            {"bucket": "b-1", "region": "oss-cn-hangzhou", "callback_url": "https://a.example/cb/"},
            {**REAL_ENV, "OSS_SESSION_TOKEN": "sts"},
        )
        self.assertFalse(settings.local)
        self.assertEqual(settings.region, "cn-hangzhou")
        self.assertEqual(settings.endpoint, "https://b-1.oss-cn-hangzhou.aliyuncs.com")
        self.assertEqual(settings.callback_url, "https://a.example/cb")
        self.assertEqual(settings.credentials.access_key_id, "LTAIenv")
        self.assertEqual(settings.credentials.security_token, "sts")
        self.assertNotIn("env-secret", repr(settings))
        self.assertNotIn("sts", repr(settings.credentials))

    def test_precedence(self) -> None:
        """
        Command line beats environment beats file beats default.
        """
        secret_file = self.write("file-secret\n")
        config = self.write(
            "[osscallback]\n"
            'bucket = "file-bucket"\nregion = "cn-beijing"\nexpire = 60\n'
            'access_key_id = "LTAIfile"\n'
            f'access_key_secret_file = "{secret_file}"\n'
            'callback_url = "https://file.example/cb"\n'
            'allow_type = ["image/*"]\n'
        )
        settings = self.load({"config": config})
        self.assertEqual(
            (settings.bucket, settings.expire, settings.credentials.access_key_id),
            ("file-bucket", 60, "LTAIfile"),
        )
        self.assertEqual(settings.credentials.access_key_secret, "file-secret")
        self.assertEqual(settings.allow_types, ("image/*",))
        settings = self.load({"config": config}, REAL_ENV)
        self.assertEqual(settings.credentials.access_key_id, "LTAIenv")
        self.assertEqual(settings.credentials.access_key_secret, "env-secret")
        cli_secret = self.write("cli-secret")
        settings = self.load(
            {"config": config, "bucket": "cli-bucket", "expire": "90",
             "access_key_secret_file": cli_secret},
            REAL_ENV,
        )
        self.assertEqual((settings.bucket, settings.expire), ("cli-bucket", 90))
        self.assertEqual(settings.credentials.access_key_secret, "cli-secret")

    def test_badValues(self) -> None:
        """
        Each malformed value gives one line naming the option.
        """
        for given, words in [
            ({"expire": "soon"}, "--expire"),
            ({"expire": "0"}, "--expire"),
            ({"max_size": str(6 * 1024**3)}, "--max-size"),
            ({"port": "99999"}, "--port"),
            ({"bucket": "Bad_Bucket"}, "--bucket"),
            ({"region": "cn hangzhou"}, "--region"),
            ({"upload_dir": "/abs/"}, "--upload-dir"),
            ({"upload_dir": "a/../b"}, "--upload-dir"),
            ({"allow_type": ["images"]}, "--allow-type"),
            ({"signature_version": "2"}, "--signature-version"),
            ({"trust_key_url": ["https://gosspublic.alicdn.com"]}, "--trust-key-url"),
            ({"trust_key_url": ["ftp://x/"]}, "--trust-key-url"),
            ({"callback_url": "https://a.example/cb?x=1"}, "--callback-url"),
            ({"callback_url": "https://a.example/c%20b"}, "--callback-url"),
            ({"endpoint": "not a url"}, "--endpoint"),
            ({"database": "mysql://x"}, "--database"),
            ({"config": "/nonexistent/osscallback.toml"}, "--config"),
        ]:
            self.assertIn(words, self.refused(given), given)

    def test_configFileErrors(self) -> None:
        """
        A config file that is not TOML, lacks the table, names an unknown
        setting or holds the secret itself is refused.
        """
        for text, words in [
            ("[osscallback\n", "not valid TOML"),
            ("[other]\nx = 1\n", "no [osscallback] table"),
            ("[osscallback]\nbukcet = 'x'\n", "unknown setting 'bukcet'"),
            ("[osscallback]\naccess_key_secret = 'x'\n", "must not hold the secret"),
            ("[osscallback]\nexpire = true\n", "--expire"),
            ("[osscallback]\nlocal = 'yes'\n", "--local"),
        ]:
            self.assertIn(words, self.refused({"config": self.write(text)}))

    def test_incompleteRealSetup(self) -> None:
        """
        Half the credentials, or a real bucket without bucket, callback URL
        or region, is refused with what to add.
        """
        self.assertIn("both", self.refused({}, {"OSS_ACCESS_KEY_ID": "x"}))
        self.assertIn("both", self.refused({"access_key_id": "x"}))
        self.assertIn("--bucket", self.refused({"callback_url": "https://a.example/cb"}, REAL_ENV))
        self.assertIn("--callback-url", self.refused({"bucket": "b-1"}, REAL_ENV))
        self.assertIn(
            "--region",
            self.refused({"bucket": "b-1", "callback_url": "https://a.example/cb"}, REAL_ENV),
        )
        self.assertIn(
            "--access-key-secret-file",
            self.refused({"access_key_id": "x", "access_key_secret_file": "/nonexistent"}),
        )

    def test_tokenSecretKept(self) -> None:
        """
        The token secret is made once in the data folder, owner-only, and
        reused; a copy readable by others is refused.
        """
        first = self.load().token_secret
        path = os.path.join(self.data, "token-secret")
        self.assertEqual(stat.S_IMODE(os.stat(path).st_mode), 0o600)
        self.assertGreaterEqual(len(first), 64)
        self.assertEqual(self.load().token_secret, first)
        os.chmod(path, 0o644)
        self.assertIn("chmod 600", self.refused({}))

    def test_tokenSecretFile(self) -> None:
        """
        A token secret file is used as given, and must be long enough; the
        data folder is made all the same, for the ledger.
        """
        path = self.write("x" * 40)
        self.assertEqual(self.load({"token_secret_file": path}).token_secret, b"x" * 40)
        self.assertTrue(os.path.isdir(self.data))
        self.assertIn("32", self.refused({"token_secret_file": self.write("short")}))
