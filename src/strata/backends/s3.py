"""The s3 backend: state objects in a bucket, locks in DynamoDB and/or an S3 lock file.

strata accepts both the old (< 1.6) and the new setting names and writes the ones the Terraform in
use understands: flat ``endpoint``/``dynamodb_endpoint``/``force_path_style`` before 1.6,
``endpoints = {...}``/``use_path_style`` from 1.6, ``use_lockfile`` from 1.10.

:class:`S3Store` opens a stack's state with boto3 and speaks Terraform's s3 backend protocol exactly
(the DynamoDB lock and ``-md5`` digest items, the ``.tflock`` lock file, the encryption headers), so
strata and Terraform lock each other out and read each other's writes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from strata.backends.base import (
    BOOL,
    DURATION,
    INTEGER,
    LIST,
    MAP,
    STRING,
    Backend,
    BackendError,
    Kind,
    LockInfo,
    Problem,
    SettingType,
    StateLocked,
    StateObject,
    StateStore,
    StateVersion,
)
from strata.terraform.version import (
    S3_ENDPOINTS_BLOCK,
    S3_SKIP_REQUESTING_ACCOUNT_ID,
    S3_SKIP_S3_CHECKSUM,
    S3_USE_LOCKFILE,
    Version,
    format_version,
)

# flat (< 1.6) endpoint setting -> key in the endpoints map (>= 1.6)
_FLAT_ENDPOINTS = {"endpoint": "s3", "dynamodb_endpoint": "dynamodb", "iam_endpoint": "iam",
                   "sts_endpoint": "sts"}
_ENDPOINT_KEYS = frozenset({"s3", "dynamodb", "iam", "sts", "sso"})
_ROLE_KEYS = ("role_arn", "session_name", "external_id", "policy", "policy_arns", "duration", "tags",
              "transitive_tag_keys")
_FLAT_ROLE = {"role_arn": "role_arn", "session_name": "session_name", "external_id": "external_id",
              "assume_role_policy": "policy", "assume_role_policy_arns": "policy_arns",
              "assume_role_duration_seconds": "duration", "assume_role_tags": "tags",
              "assume_role_transitive_tag_keys": "transitive_tag_keys"}


def _seconds_to_duration(value: Any) -> Any:
    return f"{value}s" if isinstance(value, int) and not isinstance(value, bool) else value


def _duration_to_seconds(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    parts = re.findall(r"(\d+)(h|m|s)", value)
    if not parts or "".join(n + u for n, u in parts) != value:
        return value  # not a duration strata understands: leave it for Terraform to judge
    return sum(int(n) * {"h": 3600, "m": 60, "s": 1}[u] for n, u in parts)


def aws_client(values: dict[str, Any], service: str) -> Any:
    """A boto3 client for ``service`` configured from a stack's s3 backend settings.

    Region, credentials (static keys or profile, else boto3's usual chain) and endpoints come from the
    backend block (either spelling): ``endpoints.s3``/``endpoint`` for S3, ``endpoints.dynamodb``/
    ``dynamodb_endpoint`` for DynamoDB, ``endpoints.sts`` for STS. Services the s3 backend has no
    endpoint setting for (KMS) follow boto3's own ``AWS_ENDPOINT_URL_<SERVICE>``/``AWS_ENDPOINT_URL``
    environment variables, as do the others when the block sets none. ``skip_s3_checksum`` turns off
    the optional request checksums (as Terraform does), ``insecure``/``custom_ca_bundle`` set TLS
    verification. Timeouts are short and retries few (:func:`timeouts`), so an unreachable or stalled
    endpoint fails in seconds.
    boto3 is imported here only (``pip install 'strata[aws]'``).
    """
    try:
        import boto3
        from botocore.config import Config
    except ImportError:
        from strata.errors import StrataError

        raise StrataError("the s3 backend needs boto3: pip install 'strata[aws]'") from None
    norm = BACKEND.normalize(values)
    endpoints = norm.get("endpoints") if isinstance(norm.get("endpoints"), dict) else {}
    assert isinstance(endpoints, dict)
    kwargs: dict[str, Any] = {"region_name": norm.get("region")}
    if endpoints.get(service):
        kwargs["endpoint_url"] = endpoints[service]
    if norm.get("access_key") and norm.get("secret_key"):
        kwargs.update(aws_access_key_id=norm["access_key"], aws_secret_access_key=norm["secret_key"],
                      aws_session_token=norm.get("token"))
    if norm.get("insecure") is True:
        kwargs["verify"] = False
    elif isinstance(norm.get("custom_ca_bundle"), str) and norm["custom_ca_bundle"]:
        kwargs["verify"] = norm["custom_ca_bundle"]
    s3_options: Any = {"addressing_style": "path"} if norm.get("use_path_style") else {}
    options: dict[str, Any] = {}
    if norm.get("skip_s3_checksum") is True:  # S3-compatible stores that refuse the checksum headers
        options.update(request_checksum_calculation="when_required", response_checksum_validation="when_required")
    connect_timeout, read_timeout, attempts = timeouts(norm)
    # A refused connection is retried with a sub-second backoff, so it fails within about a second; a
    # silent endpoint costs connect_timeout (or, once connected, read_timeout) per attempt.
    config = Config(retries={"max_attempts": attempts, "mode": "standard"}, connect_timeout=connect_timeout,
                    read_timeout=read_timeout, s3=s3_options, **options)
    # Building a session and a client parses the service models (tens of milliseconds each): a run that
    # reads many states shares one session per profile and one client per configuration. boto3 clients
    # are thread-safe; sessions are not, so they are only used under the lock.
    environment = sorted((k, v) for k, v in os.environ.items() if k.startswith("AWS_"))  # credentials, endpoints
    key = json.dumps([service, norm.get("profile"), kwargs, s3_options, options, attempts, connect_timeout,
                      read_timeout, environment], sort_keys=True, default=str)
    with _clients_guard:
        client = _clients.get(key)
        if client is None:
            profile = norm.get("profile") or None
            session_key = json.dumps([profile, environment])  # a session keeps the credentials it resolved
            session = _sessions.get(session_key)
            if session is None:
                session = boto3.session.Session(profile_name=profile) if profile else boto3.session.Session()
                _sessions[session_key] = session
            make: Any = session.client  # the service name is a runtime value here, not a literal
            client = _clients[key] = make(service, config=config, **kwargs)
    return client


# How long strata waits for AWS (seconds), and how often it retries: a stalled endpoint costs
# (retries + 1) x read_timeout per call, not minutes. The environment overrides; see the README.
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 10.0
RETRIES = 2


def timeouts(values: dict[str, Any]) -> tuple[float, float, int]:
    """(connect timeout, read timeout, retries after the first attempt) for strata's AWS calls.

    ``STRATA_S3_CONNECT_TIMEOUT``, ``STRATA_S3_READ_TIMEOUT`` and ``STRATA_S3_RETRIES`` win; else the
    backend's ``max_retries`` gives the retries; else the defaults above.
    """
    from strata.errors import StrataError

    def number(name: str, default: float, whole: bool = False) -> float:
        text = os.environ.get(name, "").strip()
        if not text:
            return default
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            value = -1
        if value < 0 or (not whole and value == 0) or value != value or value == float("inf"):
            kind = "a whole number, 0 or more" if whole else "a number of seconds above 0"
            raise StrataError(f"{name}={text!r} is not valid: give {kind}")
        return value

    default_retries = RETRIES
    setting = values.get("max_retries")  # the backend's own setting, as Terraform uses it
    if setting is not None and not isinstance(setting, bool):
        with contextlib.suppress(TypeError, ValueError):
            default_retries = max(0, int(setting))
    return (number("STRATA_S3_CONNECT_TIMEOUT", CONNECT_TIMEOUT), number("STRATA_S3_READ_TIMEOUT", READ_TIMEOUT),
            int(number("STRATA_S3_RETRIES", default_retries, whole=True)))


_clients: dict[str, Any] = {}
_sessions: dict[str, Any] = {}
_clients_guard = threading.Lock()


class S3Backend(Backend):
    name = "s3"
    cloud = "aws"
    schema = {  # internal/backend/remote-state/s3/backend.go (1.11), plus the flat names of < 1.6
        **dict.fromkeys((
            "bucket", "key", "region", "kms_key_id", "acl", "dynamodb_table", "workspace_key_prefix", "profile",
            "shared_credentials_file", "access_key", "secret_key", "token", "sse_customer_key", "http_proxy",
            "https_proxy", "no_proxy", "retry_mode", "custom_ca_bundle", "ec2_metadata_service_endpoint",
            *_FLAT_ENDPOINTS, "role_arn", "session_name", "external_id", "assume_role_policy"), STRING),
        **dict.fromkeys((
            "encrypt", "use_lockfile", "skip_credentials_validation", "skip_region_validation",
            "skip_metadata_api_check", "skip_requesting_account_id", "skip_s3_checksum", "force_path_style",
            "use_path_style", "insecure", "use_fips_endpoint", "use_dualstack_endpoint"), BOOL),
        **dict.fromkeys(("shared_credentials_files", "shared_config_files", "allowed_account_ids",
                         "forbidden_account_ids", "assume_role_policy_arns", "assume_role_transitive_tag_keys"),
                        LIST),
        "max_retries": INTEGER,
        "assume_role_duration_seconds": INTEGER,
        "assume_role_tags": MAP,
        "endpoints": SettingType(Kind.BLOCK, "endpoints { s3, dynamodb, iam, sts, sso }",
                                 dict.fromkeys(sorted(_ENDPOINT_KEYS), STRING)),
        "assume_role": SettingType(Kind.BLOCK, "assume_role { role_arn, ... }", {
            **dict.fromkeys(("role_arn", "session_name", "external_id", "policy", "source_identity"), STRING),
            "policy_arns": LIST, "transitive_tag_keys": LIST, "tags": MAP, "duration": DURATION}),
        "assume_role_with_web_identity": SettingType(Kind.BLOCK, "assume_role_with_web_identity { role_arn, ... }", {
            **dict.fromkeys(("role_arn", "session_name", "policy", "web_identity_token", "web_identity_token_file"),
                            STRING),
            "policy_arns": LIST, "duration": DURATION}),
    }
    required = ("bucket", "key", "region")
    key_attribute = "key"

    def normalize(self, values: dict[str, Any]) -> dict[str, Any]:
        """One spelling for settings that have two: the >= 1.6 names."""
        out = {k: v for k, v in values.items() if v is not None}
        if not isinstance(out.get("endpoints", {}), dict) or not isinstance(out.get("assume_role", {}), dict):
            return out  # check() reports the wrong type; nothing to translate
        endpoints = dict(out.pop("endpoints", None) or {})
        for flat, key in _FLAT_ENDPOINTS.items():
            if flat in out:
                endpoints.setdefault(key, out.pop(flat))
        if endpoints:
            out["endpoints"] = endpoints
        if "force_path_style" in out:
            out.setdefault("use_path_style", out.pop("force_path_style"))
        role = dict(out.pop("assume_role", None) or {})
        for flat, key in _FLAT_ROLE.items():
            if flat in out:
                role.setdefault(key, out.pop(flat))
        if "duration" in role:
            role["duration"] = _seconds_to_duration(role["duration"])
        if role:
            out["assume_role"] = role
        return out

    def check(self, values: dict[str, Any], version: Version | None) -> list[Problem]:
        problems = super().check(values, version)
        key = values.get("key")
        if isinstance(key, str) and key.startswith("/"):
            problems.append(Problem("key must not start with /", "key"))
        prefix = values.get("workspace_key_prefix")
        if isinstance(prefix, str) and (prefix.startswith("/") or prefix.endswith("/")):
            problems.append(Problem("workspace_key_prefix must not start or end with /", "workspace_key_prefix"))
        if values.get("kms_key_id") and values.get("sse_customer_key"):
            problems.append(Problem("kms_key_id and sse_customer_key cannot both be set", "kms_key_id"))
        if values.get("kms_key_id") and values.get("encrypt") is not True:
            problems.append(Problem("kms_key_id is used only when encrypt = true", "kms_key_id"))
        norm = self.normalize(values)
        if not isinstance(norm.get("endpoints", {}), dict) or not isinstance(norm.get("assume_role", {}), dict):
            return problems
        if version is not None:
            old = version < S3_ENDPOINTS_BLOCK
            if old and "sso" in norm.get("endpoints", {}):
                problems.append(Problem(f"endpoints.sso needs Terraform >= 1.6 (found "
                                        f"{format_version(version)})", "endpoints"))
            if norm.get("use_lockfile") and version < S3_USE_LOCKFILE:
                if norm.get("dynamodb_table"):
                    problems.append(Problem(
                        f"use_lockfile needs Terraform >= 1.10 (found {format_version(version)}); "
                        "locking uses dynamodb_table only", "use_lockfile", "warning"))
                else:
                    problems.append(Problem(
                        f"use_lockfile needs Terraform >= 1.10 (found {format_version(version)}); "
                        "set dynamodb_table so the state is locked", "use_lockfile"))
        return problems

    def render(self, values: dict[str, Any], version: Version | None) -> dict[str, Any]:
        norm = self.normalize(values)
        if not isinstance(norm.get("endpoints", {}), dict) or not isinstance(norm.get("assume_role", {}), dict):
            return norm
        if version is None or version >= S3_ENDPOINTS_BLOCK:
            if version is not None:
                if version < S3_SKIP_REQUESTING_ACCOUNT_ID:
                    norm.pop("skip_requesting_account_id", None)
                if version < S3_SKIP_S3_CHECKSUM:
                    norm.pop("skip_s3_checksum", None)
                if version < S3_USE_LOCKFILE:
                    norm.pop("use_lockfile", None)
            return norm
        # Terraform < 1.6: flat names only; settings that did not exist yet are left out.
        for name in ("skip_requesting_account_id", "skip_s3_checksum", "use_lockfile"):
            norm.pop(name, None)
        endpoints = norm.pop("endpoints", {})
        for flat, key in _FLAT_ENDPOINTS.items():
            if key in endpoints:
                norm[flat] = endpoints[key]
        if "use_path_style" in norm:
            norm["force_path_style"] = norm.pop("use_path_style")
        role = norm.pop("assume_role", {})
        if "duration" in role:
            role["duration"] = _duration_to_seconds(role["duration"])
        for flat, key in _FLAT_ROLE.items():
            if key in role:
                norm[flat] = role[key]
        return dict(sorted(norm.items()))

    def location(self, values: dict[str, Any], stack_path: str) -> tuple[Any, ...]:
        return ("s3", values.get("bucket"), values.get("workspace_key_prefix"), values.get("key"))

    def storage(self, values: dict[str, Any]) -> str | None:
        return f"s3://{values.get('bucket')}"

    def encryption_problem(self, values: dict[str, Any]) -> str | None:
        if values.get("encrypt") is not True:
            return "encrypt is not true"
        return None

    def store(self, values: dict[str, Any], stack_dir: Path, root: Path) -> S3Store:
        return S3Store(values)


# -- the state store ---------------------------------------------------------------------------------------

_CREDENTIAL_CODES = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidClientTokenId", "UnrecognizedClientException",
    "ExpiredToken", "ExpiredTokenException", "InvalidToken", "TokenRefreshRequired", "AuthFailure",
    "MissingAuthenticationToken", "MissingAuthenticationTokenException", "IncompleteSignature",
    "IncompleteSignatureException", "InvalidSignatureException",
})
_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "Forbidden", "403", "AllAccessDisabled"})
_NO_VERSION_CODES = frozenset({"NoSuchVersion", "NoSuchKey", "MethodNotAllowed", "404", "NotFound"})
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_XML_FIELD = re.compile(r"<(Code|Message)>([^<]*)</\1>")
LOCK_FILE_SUFFIX = ".tflock"
DIGEST_SUFFIX = "-md5"


def aws_error(exc: Exception) -> tuple[str, str]:
    """(code, message) of a botocore ClientError; servers that answer a JSON-protocol call with an XML
    error body (moto for DynamoDB, some proxies) have the code and message read out of the XML."""
    error = getattr(exc, "response", {}).get("Error", {}) or {}
    code, message = str(error.get("Code") or ""), str(error.get("Message") or "")
    if "<Code>" in message:
        fields = dict(_XML_FIELD.findall(message))
        code, message = fields.get("Code", code), fields.get("Message", message)
    status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
    if not code and status:
        code = str(status)
    return code, message or code


def transport_problem(exc: Exception, service: str, endpoint: str, doing: str) -> str | None:
    """Plain words for a failure before AWS could answer (unreachable endpoint, timeout, no credentials,
    profile or region); None for an answer from AWS (read those with :func:`aws_error`)."""
    from botocore.exceptions import (
        ConnectTimeoutError,
        EndpointConnectionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        ProfileNotFound,
        ReadTimeoutError,
    )

    if isinstance(exc, (EndpointConnectionError, ConnectTimeoutError)):
        return f"cannot reach the {service} endpoint {endpoint} (to {doing})"
    if isinstance(exc, ReadTimeoutError):
        return f"the {service} endpoint {endpoint} did not answer in time (to {doing})"
    if isinstance(exc, (NoCredentialsError, PartialCredentialsError)):
        return (f"no AWS credentials to {doing}: set access_key/secret_key or profile in the backend block, "
                "or AWS_PROFILE / AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
    if isinstance(exc, ProfileNotFound):
        return f"cannot {doing}: {exc}"
    if isinstance(exc, NoRegionError):
        return f"cannot {doing}: no region (set region in the backend block)"
    return None


def _is_client_error(exc: BaseException) -> bool:
    from botocore.exceptions import ClientError

    return isinstance(exc, ClientError)


class S3Store(StateStore):
    """A state object in S3, locked the way Terraform's s3 backend locks it: a DynamoDB item
    ``{LockID: "<bucket>/<key>", Info: <LockInfo JSON>}`` (``dynamodb_table``) and/or an S3 object
    ``<key>.tflock`` written with ``If-None-Match: *`` (``use_lockfile``, Terraform >= 1.10); both when both
    are set, the lock file first. Every write also updates the DynamoDB digest item ``<bucket>/<key>-md5``
    that Terraform checks on read. Versions are the bucket's object versions.
    """

    backend = "s3"

    def __init__(self, values: dict[str, Any]) -> None:
        self.values = BACKEND.normalize(values)
        bucket, key = self.values.get("bucket"), self.values.get("key")
        if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
            raise BackendError("the s3 backend needs bucket and key")
        self.bucket, self.key = bucket, key
        self.where = f"s3://{bucket}/{key}"
        table = self.values.get("dynamodb_table")
        self.table: str | None = table if isinstance(table, str) and table else None
        self.use_lockfile = self.values.get("use_lockfile") is True
        self.lock_path = f"{bucket}/{key}"  # the lock item's LockID and the Path in the LockInfo
        self.lock_key = f"{key}{LOCK_FILE_SUFFIX}"
        self._clients: dict[str, Any] = {}

    # -- clients and errors ----------------------------------------------------------------------------

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = aws_client(self.values, service)
        return self._clients[service]

    @property
    def s3(self) -> Any:
        return self._client("s3")

    @property
    def dynamodb(self) -> Any:
        return self._client("dynamodb")

    def _endpoint(self, service: str) -> str:
        client = self._clients.get(service)
        url = getattr(getattr(client, "meta", None), "endpoint_url", None)
        return str(url) if url else f"{service} (default endpoint)"

    @contextlib.contextmanager
    def _calling(self, action: str, service: str = "s3") -> Iterator[None]:
        """Turn every botocore failure inside the block into a BackendError in plain words.

        ``action`` says what was being done ("read", "write the lock file of", ...) and is followed by
        :attr:`where` in messages that need it.
        """
        try:
            yield
        except BackendError:
            raise
        except Exception as exc:
            from botocore.exceptions import BotoCoreError

            if not _is_client_error(exc) and not isinstance(exc, BotoCoreError):
                raise
            raise BackendError(self._explain(exc, action, service)) from None

    def _explain(self, exc: Exception, action: str, service: str) -> str:
        name = "S3" if service == "s3" else "DynamoDB" if service == "dynamodb" else service
        problem = transport_problem(exc, name, self._endpoint(service), f"{action} {self.where}")
        if problem is not None:
            return problem
        if not _is_client_error(exc):
            return f"cannot {action} {self.where}: {exc}"
        code, message = aws_error(exc)
        if code == "NoSuchBucket":
            return (f"cannot {action} {self.where}: bucket {self.bucket} does not exist "
                    "(create it with `strata bootstrap`)")
        if code == "ResourceNotFoundException" and service == "dynamodb":
            return (f"cannot {action} {self.where}: DynamoDB table {self.table} does not exist "
                    "(create it with `strata bootstrap`)")
        if code in _CREDENTIAL_CODES:
            return (f"AWS rejected the credentials used for {self.where} ({code}: {message}); check access_key/"
                    "secret_key or profile in the backend block, or the AWS_* environment variables")
        if code in _DENIED_CODES:
            target = self.where if service == "s3" else f"DynamoDB table {self.table} (locks of {self.where})"
            return f"access denied to {target}: {message}"
        if code.startswith("KMS"):
            return f"cannot {action} {self.where}: the KMS key refused ({code}: {message})"
        return f"cannot {action} {self.where}: {code}: {message}" if message != code else \
            f"cannot {action} {self.where}: {code}"

    # -- encryption settings, exactly as Terraform's s3 backend applies them -------------------------------

    def _customer_key(self) -> bytes | None:
        """The SSE-C key (Terraform uses it only with ``encrypt = true``)."""
        if self.values.get("encrypt") is not True:
            return None
        text = self.values.get("sse_customer_key") or os.environ.get("AWS_SSE_CUSTOMER_KEY")
        if not text:
            return None
        try:
            key = base64.b64decode(str(text), validate=True)
        except (binascii.Error, ValueError):
            key = b""
        if len(key) != 32:
            raise BackendError(f"cannot use the sse_customer_key of {self.where}: it must be a base64-encoded "
                               "256-bit key (44 characters)")
        return key

    def _read_params(self) -> dict[str, Any]:
        key = self._customer_key()
        return {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key} if key is not None else {}

    def _put_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"ContentType": "application/json"}
        if self.values.get("skip_s3_checksum") is not True:
            params["ChecksumAlgorithm"] = "SHA256"
        if self.values.get("encrypt") is True:
            kms_key_id = self.values.get("kms_key_id")
            if kms_key_id:
                params.update(ServerSideEncryption="aws:kms", SSEKMSKeyId=str(kms_key_id))
            elif self._customer_key() is not None:
                params.update(self._read_params())
            else:
                params["ServerSideEncryption"] = "AES256"
        if self.values.get("acl"):
            params["ACL"] = str(self.values["acl"])
        return params

    # -- state -------------------------------------------------------------------------------------------

    def _get(self, key: str, action: str) -> bytes | None:
        """The bytes of ``key``; None when there is no such object (other failures raise)."""
        with self._calling(action):
            try:
                response = self.s3.get_object(Bucket=self.bucket, Key=key, **self._read_params())
            except Exception as exc:
                if _is_client_error(exc) and aws_error(exc)[0] == "NoSuchKey":
                    return None
                raise
            return bytes(response["Body"].read())

    def read(self) -> bytes | None:
        data = self._get(self.key, "read")
        return data or None

    def stat(self) -> StateObject | None:
        with self._calling("read"):
            try:
                head = self.s3.head_object(Bucket=self.bucket, Key=self.key, **self._read_params())
            except Exception as exc:
                if not (_is_client_error(exc) and aws_error(exc)[0] in ("404", "NotFound", "NoSuchKey")):
                    raise
                # HeadObject has no error body: a 404 is a missing key or a missing bucket
                try:
                    self.s3.head_bucket(Bucket=self.bucket)
                except Exception as bucket_exc:
                    if _is_client_error(bucket_exc) and aws_error(bucket_exc)[0] in ("404", "NotFound", "NoSuchBucket"):
                        raise BackendError(f"cannot read {self.where}: bucket {self.bucket} does not exist "
                                           "(create it with `strata bootstrap`)") from None
                    raise
                return None
        size = int(head.get("ContentLength", 0))
        return StateObject(size, _utc(head.get("LastModified"))) if size else None

    def write(self, data: bytes) -> None:
        with self._calling("write"):
            self.s3.put_object(Bucket=self.bucket, Key=self.key, Body=data, **self._put_params())
        if self.table:
            digest = hashlib.md5(data, usedforsecurity=False).hexdigest()  # Terraform's consistency digest
            with self._calling("record the state digest (for Terraform's consistency check) of", "dynamodb"):
                self.dynamodb.put_item(TableName=self.table, Item={
                    "LockID": {"S": self.lock_path + DIGEST_SUFFIX}, "Digest": {"S": digest}})

    def delete(self) -> None:
        with self._calling("delete"):
            self.s3.delete_object(Bucket=self.bucket, Key=self.key)
        if self.table:  # as Terraform's Delete: the digest item goes with the object
            with self._calling("delete the state digest of", "dynamodb"):
                self.dynamodb.delete_item(TableName=self.table,
                                          Key={"LockID": {"S": self.lock_path + DIGEST_SUFFIX}})

    # -- locks -------------------------------------------------------------------------------------------

    def lock(self, info: LockInfo) -> None:
        if not self.use_lockfile and not self.table:
            return  # no lock configured: Terraform does not lock either
        info.path = self.lock_path
        if self.use_lockfile:
            self._lock_file(info)
        if self.table:
            try:
                self._lock_item(info)
            except BackendError:
                if self.use_lockfile:  # both locks or none, as Terraform does
                    with contextlib.suppress(BackendError):
                        self._release_file(info.id)
                raise

    def _lock_file(self, info: LockInfo) -> None:
        with self._calling("write the lock file of"):
            try:
                self.s3.put_object(Bucket=self.bucket, Key=self.lock_key, Body=info.to_json().encode(),
                                   IfNoneMatch="*", **self._put_params())
            except Exception as exc:
                if not (_is_client_error(exc) and aws_error(exc)[0] in (
                        "PreconditionFailed", "ConditionalRequestConflict", "412", "409")):
                    raise
                raise StateLocked(self._file_holder(), self.where) from None

    def _lock_item(self, info: LockInfo) -> None:
        with self._calling("lock", "dynamodb"):
            try:
                self.dynamodb.put_item(
                    TableName=self.table, Item={"LockID": {"S": self.lock_path}, "Info": {"S": info.to_json()}},
                    ConditionExpression="attribute_not_exists(LockID)")
            except Exception as exc:
                if not (_is_client_error(exc) and aws_error(exc)[0] == "ConditionalCheckFailedException"):
                    raise
                raise StateLocked(self._item_holder(), self.where) from None

    def unlock(self, info: LockInfo) -> None:
        self._release(info.id)

    def _release(self, lock_id: str) -> None:
        """Remove the locks whose ID is ``lock_id``; gone ones are fine, someone else's is an error."""
        errors = []
        if self.use_lockfile:
            try:
                self._release_file(lock_id)
            except BackendError as exc:
                errors.append(str(exc))
        if self.table:
            try:
                self._release_item(lock_id)
            except BackendError as exc:
                errors.append(str(exc))
        if errors:
            raise BackendError("; ".join(errors))

    def _release_file(self, lock_id: str) -> None:
        raw = self._get(self.lock_key, "read the lock file of")
        if raw is None:
            return
        holder = _parse_lock(raw)
        if holder.id != lock_id:
            raise BackendError(f"the lock file of {self.where} now holds lock {holder.id or '?'} of "
                               f"{holder.describe()}, not {lock_id}; it was left in place")
        with self._calling("remove the lock file of"):
            self.s3.delete_object(Bucket=self.bucket, Key=self.lock_key)

    def _release_item(self, lock_id: str) -> None:
        raw = self._item_info()
        if raw is None:
            return
        holder = _parse_lock(raw)
        if holder.id != lock_id:
            raise BackendError(f"the DynamoDB lock of {self.where} is now lock {holder.id or '?'} of "
                               f"{holder.describe()}, not {lock_id}; it was left in place")
        with self._calling("unlock", "dynamodb"):
            try:  # only the lock that was read: a lock taken since then stays
                self.dynamodb.delete_item(TableName=self.table, Key={"LockID": {"S": self.lock_path}},
                                          ConditionExpression="Info = :info",
                                          ExpressionAttributeValues={":info": {"S": raw}})
            except Exception as exc:
                if not (_is_client_error(exc) and aws_error(exc)[0] == "ConditionalCheckFailedException"):
                    raise
                now = self._item_holder()
                if now is not None:
                    raise BackendError(f"the DynamoDB lock of {self.where} changed while removing it: now "
                                       f"held by {now.describe()}; it was left in place") from None

    def _item_info(self) -> str | None:
        with self._calling("read the lock of", "dynamodb"):
            item = self.dynamodb.get_item(TableName=self.table, Key={"LockID": {"S": self.lock_path}},
                                          ProjectionExpression="LockID, Info", ConsistentRead=True).get("Item")
        if not item:
            return None
        return str(item.get("Info", {}).get("S", ""))

    def _item_holder(self) -> LockInfo | None:
        raw = self._item_info()
        if raw is None:
            return None
        holder = _parse_lock(raw)
        holder.holder["lock"] = "dynamodb"
        return holder

    def _file_holder(self) -> LockInfo | None:
        raw = self._get(self.lock_key, "read the lock file of")
        if raw is None:
            return None
        holder = _parse_lock(raw)
        holder.holder["lock"] = "s3 lock file"
        return holder

    def current_lock(self) -> LockInfo | None:
        found = []
        if self.use_lockfile:
            found.append(self._file_holder())
        if self.table:
            found.append(self._item_holder())
        held = [h for h in found if h is not None]
        if not held:
            return None
        first = held[0]
        first.holder["locks"] = [h.holder["lock"] for h in held]
        if len(held) > 1 and held[1].id != first.id:  # two holders (e.g. Terraforms configured differently)
            first.holder["other"] = held[1].to_report()
        return first

    def force_unlock(self, holder: LockInfo) -> None:
        self._release(holder.id)

    # -- versions ----------------------------------------------------------------------------------------

    def versions(self) -> list[StateVersion]:
        out: list[StateVersion] = []
        with self._calling("list the versions of"):
            pages = self.s3.get_paginator("list_object_versions").paginate(Bucket=self.bucket, Prefix=self.key)
            for page in pages:
                for entry in page.get("Versions", []):  # delete markers are listed apart: skipped
                    if entry.get("Key") != self.key:
                        continue
                    out.append(StateVersion(str(entry.get("VersionId")), _utc(entry.get("LastModified")),
                                            int(entry.get("Size", 0)), current=bool(entry.get("IsLatest")),
                                            kind="s3-version"))
        # S3 lists one key's versions newest first; the stable sort keeps that order for equal times
        out.sort(key=lambda v: v.modified or _EPOCH, reverse=True)
        return out

    def read_version(self, version_id: str) -> bytes:
        missing = BackendError(f"no version {version_id!r} of {self.where} (see `strata state versions`)")
        if not version_id:
            raise missing
        with self._calling(f"read version {version_id} of"):
            try:
                response = self.s3.get_object(Bucket=self.bucket, Key=self.key, VersionId=version_id,
                                              **self._read_params())
            except Exception as exc:
                if _is_client_error(exc):
                    code, message = aws_error(exc)
                    if code in _NO_VERSION_CODES or (code == "InvalidArgument" and "version" in message.lower()):
                        raise missing from None
                raise
            return bytes(response["Body"].read())

    def close(self) -> None:
        for client in self._clients.values():
            with contextlib.suppress(Exception):
                client.close()
        self._clients.clear()


def _utc(value: Any) -> datetime | None:
    return value.astimezone(UTC) if isinstance(value, datetime) else None


def _parse_lock(raw: str | bytes) -> LockInfo:
    try:
        return LockInfo.from_json(raw)
    except ValueError:
        text = raw.decode(errors="replace") if isinstance(raw, bytes) else raw
        return LockInfo("", "", f"unknown (unreadable lock info: {text[:80]!r})", "", "")


BACKEND = S3Backend()
