"""S3 on the controller: the settings a job's S3 calls use (resolved by the inventory, each with its origin),
and the one client factory every controller-side S3 call goes through (weights listing, preflight, the
`orch plan` config read, forwarded credentials, adapter uploads).

Where each setting comes from, first match wins (`Inventory.s3_settings`):

    endpoint   jobs.J.s3_endpoint > instances.I.s3_endpoint > s3.endpoint > AWS_ENDPOINT_URL_S3 > AWS_ENDPOINT_URL
    region     jobs.J.s3_region > s3.region > AWS_REGION > AWS_DEFAULT_REGION            (else us-east-1)
    profile    s3.profile > AWS_PROFILE
    keys       s3.access_key_id / secret_access_key / session_token
               > AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY / AWS_SESSION_TOKEN            (else boto3's chain)

Every `AWS_*` variable is read from `.env` first, then the environment, like every other value. The key
values are registered as secrets whatever the variable they came from is called.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import CheckFailed, InputError

FIELDS = ("endpoint", "region", "profile", "access_key_id", "secret_access_key", "session_token")
SECRET_FIELDS = ("access_key_id", "secret_access_key", "session_token")


@dataclass
class S3Settings:
    endpoint: str | None = None
    region: str | None = None
    profile: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    origins: dict[str, str] = field(default_factory=dict)

    def shown(self) -> dict:
        """For `orch show`: every value (secrets masked by the output path) and where it came from."""
        return {**{name: getattr(self, name) for name in FIELDS}, "origins": dict(self.origins)}

    def session(self):
        import boto3
        from botocore.exceptions import ProfileNotFound

        keys = {"aws_access_key_id": self.access_key_id, "aws_secret_access_key": self.secret_access_key,
                "aws_session_token": self.session_token} if self.access_key_id else {}
        try:
            return boto3.session.Session(profile_name=self.profile or None, region_name=self.region or None, **keys)
        except ProfileNotFound:
            raise InputError(f"AWS profile {self.profile!r} does not exist on this machine",
                             hint=f"it comes from {self.origins.get('profile')}; fix it or run "
                                  f"`aws configure --profile {self.profile}`") from None

    def client(self, *, connect_timeout: float = 5, read_timeout: float = 30, attempts: int = 3):
        """The boto3 S3 client for these settings (path-style addressing on a custom endpoint)."""
        from botocore.config import Config

        options = dict(region_name=self.region or "us-east-1", connect_timeout=connect_timeout,
                       read_timeout=read_timeout, retries={"mode": "standard", "max_attempts": attempts},
                       s3={"addressing_style": "path"} if self.endpoint else {},
                       # S3-compatible servers (MinIO, rclone, R2) may not take the default CRC trailers
                       request_checksum_calculation="when_required",
                       response_checksum_validation="when_required")
        return self.session().client("s3", endpoint_url=self.endpoint or None, config=Config(**options))

    def credentials(self) -> dict[str, str]:
        """The credentials these settings resolve to (env, .env, profile, SSO...), for `s3_credentials: forward`."""
        from .settings import register_secret

        creds = self.session().get_credentials()
        if creds is None:
            raise CheckFailed("the job forwards the controller's AWS credentials (s3_credentials: forward), "
                              "but this machine has none",
                              hint="put AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY in .env (or configure a profile), "
                                   "or set `s3_credentials: instance` to use the instance's own role")
        frozen = creds.get_frozen_credentials()
        doc = {"aws_access_key_id": frozen.access_key, "aws_secret_access_key": frozen.secret_key}
        if frozen.token:
            doc["aws_session_token"] = frozen.token
        for value in doc.values():
            register_secret(value)
        return doc
