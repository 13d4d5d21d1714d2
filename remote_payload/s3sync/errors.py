"""The sync's failures, each with one clear message and a hint, and how a botocore or OS exception becomes one."""

from __future__ import annotations

import errno

EXIT_OK, EXIT_FAIL, EXIT_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class SyncError(Exception):
    """A failure with one clear message (and a hint); exit status 1."""

    exit_code = EXIT_FAIL
    kind = "failed"

    def __init__(self, message: str, hint: str | None = None, kind: str | None = None):
        super().__init__(message)
        self.message, self.hint = message, hint
        if kind:
            self.kind = kind


class InputProblem(SyncError):
    """Bad input (URI, bucket, prefix, destination, options): exit status 2."""

    exit_code = EXIT_INPUT
    kind = "input"


class Interrupted(Exception):
    """SIGINT / SIGTERM / SIGHUP, or the reader of our output went away."""


class Stop(Exception):
    """Raised inside a worker when the sync is being stopped."""


class ShortBody(Exception):
    """The body ended early or the server sent a different length: the part is fetched again."""


def transient_errors() -> tuple:
    """Errors after which a part is fetched again: the body broke off, the connection dropped or timed out.
    (Builtin ConnectionError/TimeoutError come from the socket read; a full disk (ENOSPC) is not one.)"""
    import http.client

    from botocore.exceptions import ConnectionError as BotoConnectionError
    from botocore.exceptions import (
        IncompleteReadError,
        ReadTimeoutError,
        ResponseStreamingError,
    )
    return (IncompleteReadError, ResponseStreamingError, ReadTimeoutError, BotoConnectionError, ShortBody,
            ConnectionError, TimeoutError, http.client.HTTPException)


def classify(exc: BaseException, what: str, bucket: str, endpoint: str | None) -> SyncError:
    """Turn a botocore / OS exception into one clear SyncError."""
    from botocore.exceptions import (
        ClientError,
        NoCredentialsError,
        PartialCredentialsError,
        ReadTimeoutError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError

    where = endpoint or "AWS S3"
    if isinstance(exc, SyncError):
        return exc
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return SyncError(f"no AWS credentials for {what}",
                         hint="give the instance an IAM role or profile that can read the bucket, or set "
                              "`s3_credentials: forward` on the job to pass the controller's credentials",
                         kind="credentials")
    if isinstance(exc, ReadTimeoutError):
        return SyncError(f"S3 endpoint {where} stopped answering during {what}: {exc}",
                         hint="re-run to resume; check the network", kind="network")
    if isinstance(exc, BotoConnectionError):
        return SyncError(f"cannot reach the S3 endpoint {where} for {what}: {exc}",
                         hint="check the endpoint URL (AWS_ENDPOINT_URL / s3_endpoint) and the network",
                         kind="unreachable")
    if isinstance(exc, ClientError):
        return _client_error(exc, what, bucket, where)
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return SyncError(f"disk full while writing {what}", kind="disk-full")
    if isinstance(exc, OSError):
        return SyncError(f"{what}: {exc.strerror or exc}", kind="os")
    return SyncError(f"{what}: {type(exc).__name__}: {exc}", kind="internal")


def _client_error(exc, what: str, bucket: str, where: str) -> SyncError:
    err = exc.response.get("Error", {})
    code = str(err.get("Code") or "")
    status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    msg = err.get("Message") or code
    if code == "NoSuchBucket":
        return InputProblem(f"bucket {bucket!r} does not exist ({where})",
                            hint="check the job's weights URI", kind="no-bucket")
    if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken",
                "InvalidToken", "AllAccessDisabled", "AccountProblem", "403") or status == 403:
        return SyncError(f"access denied for {what} ({code or status}: {msg})",
                         hint="the credentials in use cannot read this bucket: check the instance role's "
                              "s3:ListBucket and s3:GetObject permissions, or use `s3_credentials: forward`",
                         kind="access-denied")
    if code in ("PreconditionFailed", "412") or status == 412:
        return SyncError(f"{what}: the object changed on S3 during the sync",
                         hint="re-run the sync", kind="changed")
    if code in ("NoSuchKey", "404") or status == 404:
        return SyncError(f"{what}: the object disappeared from S3 during the sync",
                         hint="re-run the sync", kind="changed")
    return SyncError(f"S3 error during {what}: {code or status}: {msg}", kind="s3")
