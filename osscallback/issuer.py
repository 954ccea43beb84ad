# -*- test-case-name: tests.test_issuer -*-
"""
Issuing upload grants: the answer to C{GET /policy}.

Pure: time, randomness and the request's origin come in as arguments.
"""

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from osscallback.callback import callback_parameter
from osscallback.credentials import Credentials
from osscallback.grant import GrantQuery, GrantRules, new_grant, seal
from osscallback.policy import V4Signer, signed_form


@dataclass
class GrantIssuer:
    """
    Turns a browser's request into a signed PostObject grant.

    @ivar signer: the V4 signer, or L{None} to sign with V1.
    @ivar secret: the server secret that makes callback tokens.
    """

    rules: GrantRules
    credentials: Credentials
    signer: V4Signer | None
    secret: bytes = field(repr=False)

    def issue(
        self,
        query: GrantQuery,
        now: datetime,
        nonce: bytes,
        upload_url: str,
        callback_base: str,
        user: str | None = None,
    ) -> dict[str, Any]:
        """
        The grant answer: the URL to POST to (and the method, as Uppy's
        AwsS3 plugin reads it), the object key, the form fields in sending
        order, the expiry in seconds since the epoch, and the path that
        confirms the upload if its callback fails.

        @param callback_base: the URL OSS calls back, without the token.
        @param user: the user the grant is for, if known: their uploads get
            keys of their own and records that name them.
        @raise osscallback.errors.Refusal: 400 when the query asks for more
            than the rules allow.
        """
        grant, conditions, type_fields = new_grant(self.rules, query, now, nonce, user)
        image = (query.type or "").startswith("image/")
        token = seal(grant, self.secret)
        callback = callback_parameter(f"{callback_base}/{token}", image)
        expires = datetime.fromtimestamp(grant.expires, timezone.utc)
        form = signed_form(
            self.credentials,
            self.signer,
            now,
            expires,
            grant.bucket,
            [{"callback": callback}, *conditions],
        )
        fields = {"key": grant.key, **type_fields, **form}
        fields["success_action_status"] = "200"
        fields["callback"] = callback
        fields["x-oss-forbid-overwrite"] = "true"
        answer: dict[str, Any] = {
            "url": upload_url,
            "method": "POST",
            "key": grant.key,
            "fields": fields,
            "expire": grant.expires,
            "confirm": f"uploads/{token}/confirm",
        }
        if self.signer is None:
            # The seven fields Alibaba's sample browser client reads.
            answer.update(
                accessid=self.credentials.access_key_id,
                host=upload_url,
                policy=form["policy"],
                signature=form["Signature"],
                callback=callback,
                dir=grant.folder or "",
            )
        return answer
