"""The s3 backend: state objects in a bucket, locks in DynamoDB and/or an S3 lock file.

strata accepts both the old (< 1.6) and the new setting names and writes the ones the Terraform in
use understands: flat ``endpoint``/``dynamodb_endpoint``/``force_path_style`` before 1.6,
``endpoints = {...}``/``use_path_style`` from 1.6, ``use_lockfile`` from 1.10.
"""

from __future__ import annotations

import re
from typing import Any

from strata.backends.base import Backend, Problem
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
    environment variables, as do the others when the block sets none. boto3 is imported here only
    (``pip install 'strata[aws]'``).
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
    s3_options: Any = {"addressing_style": "path"} if norm.get("use_path_style") else {}
    config = Config(retries={"max_attempts": int(norm.get("max_retries", 3) or 3), "mode": "standard"},
                    connect_timeout=5, read_timeout=30, s3=s3_options)
    session = boto3.session.Session(profile_name=norm["profile"]) if norm.get("profile") else boto3.session.Session()
    make: Any = session.client  # the service name is a runtime value here, not a literal
    return make(service, config=config, **kwargs)


class S3Backend(Backend):
    name = "s3"
    cloud = "aws"
    attributes = frozenset({
        "bucket", "key", "region", "encrypt", "kms_key_id", "acl", "dynamodb_table", "use_lockfile",
        "workspace_key_prefix", "profile", "shared_credentials_file", "shared_credentials_files",
        "shared_config_files", "access_key", "secret_key", "token", "sse_customer_key", "max_retries",
        "skip_credentials_validation", "skip_region_validation", "skip_metadata_api_check",
        "skip_requesting_account_id", "skip_s3_checksum", "force_path_style", "use_path_style",
        "endpoints", "insecure", "http_proxy", "https_proxy", "no_proxy", "retry_mode",
        "allowed_account_ids", "forbidden_account_ids", "custom_ca_bundle", "ec2_metadata_service_endpoint",
        "use_fips_endpoint", "use_dualstack_endpoint", "assume_role", "assume_role_with_web_identity",
        *_FLAT_ENDPOINTS, *_FLAT_ROLE,
    })
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
        if values.get("assume_role") is not None and not isinstance(values["assume_role"], dict):
            problems.append(Problem('assume_role must be a map like { role_arn = "arn:..." }', "assume_role"))
        endpoints = values.get("endpoints")
        if endpoints is not None:
            if not isinstance(endpoints, dict):
                problems.append(Problem("endpoints must be a map like { s3 = \"http://...\" }", "endpoints"))
            else:
                for name in endpoints:
                    if name not in _ENDPOINT_KEYS:
                        problems.append(Problem(f"unknown endpoint {name!r} (known: "
                                                f"{', '.join(sorted(_ENDPOINT_KEYS))})", "endpoints"))
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


BACKEND = S3Backend()
