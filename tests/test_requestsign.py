"""
Tests for L{osscallback.requestsign}, against the signer of Alibaba's Python
SDK (alibabacloud-oss-v2).
"""

from datetime import datetime, timezone

from twisted.trial.unittest import SynchronousTestCase

from osscallback.credentials import Credentials
from osscallback.requestsign import signed_headers

NOW = datetime(2026, 12, 3, 23, 59, 58, tzinfo=timezone.utc)


class SDKCrossCheckTests(SynchronousTestCase):
    """
    Our HeadObject signature equals the SDK's.
    """

    def sdk_authorization(self, credentials: Credentials, region: str, bucket: str, key: str) -> str:
        try:
            from alibabacloud_oss_v2.credentials import StaticCredentialsProvider
            from alibabacloud_oss_v2.signer.v4 import SignerV4
            from alibabacloud_oss_v2.types import HttpRequest, SigningContext
        except ImportError:
            raise self.skipTest("alibabacloud-oss-v2 is not installed") from None
        from urllib.parse import quote

        request = HttpRequest(
            "HEAD", f"https://{bucket}.oss-{region}.aliyuncs.com/{quote(key)}"
        )
        context = SigningContext(
            product="oss",
            region=region,
            bucket=bucket,
            key=key,
            request=request,
            credentials=StaticCredentialsProvider(
                credentials.access_key_id,
                credentials.access_key_secret,
                credentials.security_token,
            ).get_credentials(),
            signing_time=NOW,
        )
        SignerV4().sign(context)
        return request.headers["Authorization"]

    def test_matchesSDK(self) -> None:
        """
        For plain, STS, and non-ASCII or space-holding keys, the
        Authorization header equals the SDK's.
        """
        for credentials, region, key in [
            (Credentials("LTAIKEY", "secret"), "cn-hangzhou", "uploads/2026/12/03/a.png"),
            (Credentials("STS.KEY", "secret2", "CAIS.TOKEN=="), "cn-beijing", "上传/a b+c.txt"),
            (Credentials("LTAIKEY", "secret"), "ap-southeast-1", "x~y_z-1.2"),
        ]:
            ours = signed_headers(credentials, region, "HEAD", "example-bucket", key, NOW)
            self.assertEqual(
                ours["authorization"],
                self.sdk_authorization(credentials, region, "example-bucket", key),
                key,
            )
            if credentials.security_token:
                self.assertEqual(ours["x-oss-security-token"], credentials.security_token)
