"""strata bootstrap on AWS: the KMS key, S3 bucket and DynamoDB lock table of one environment/region.

:func:`bootstrap_s3` creates what is missing and, for what exists, reads every setting strata cares
about and repairs the ones that drifted. It returns one :class:`Change` per resource or setting, in a
fixed order (key, bucket and its settings, access-log bucket, lock table), so running it twice
reports everything ``unchanged`` the second time. With ``dry_run=True`` (:func:`check_s3`, what
``strata bootstrap --dry-run`` runs) it only reads: actions become ``would create`` / ``would change``.

Settings that hold lists (the bucket policy, lifecycle rules, tags) are merged: strata adds or
replaces its own statement, rule or tag values and keeps everyone else's.

Every AWS failure becomes a :class:`BackendError` in plain words naming the resource and what was
being done; no botocore exception escapes.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from strata.backends.base import BackendError
from strata.backends.s3 import aws_client, aws_error, transport_problem
from strata.bootstrap.targets import Action, Change, S3Target

TLS_STATEMENT_ID = "DenyInsecureTransport"
LIFECYCLE_RULE_ID = "strata-noncurrent-versions"
ABORT_UPLOADS_DAYS = 7
LOG_DELIVERY_GROUP = "http://acs.amazonaws.com/groups/s3/LogDelivery"  # S3 server access log delivery
LOG_DELIVERY_PERMISSIONS = ("WRITE", "READ_ACP")
PUBLIC_ACCESS_FLAGS = ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets")
LOCK_KEY = "LockID"  # Terraform's lock table: hash key LockID, a string
TABLE_WAIT_SECONDS = 600.0  # how long to wait for a table to become ACTIVE
POLL_SECONDS = 2.0

_SERVICES = {"s3": "S3", "dynamodb": "DynamoDB", "kms": "KMS"}
_CREDENTIAL_CODES = frozenset({
    "InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidClientTokenId", "UnrecognizedClientException",
    "ExpiredToken", "ExpiredTokenException", "InvalidToken", "AuthFailure", "IncompleteSignature",
    "IncompleteSignatureException", "InvalidSignatureException", "MissingAuthenticationToken",
    "MissingAuthenticationTokenException",
})
_DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "Forbidden", "403", "AllAccessDisabled"})


def bootstrap_s3(target: S3Target, dry_run: bool = False) -> list[Change]:
    """Create or repair the target's KMS key, bucket (and log bucket) and lock table."""
    run = _Bootstrap(target, dry_run)
    key_arn = run.kms_key()
    run.state_bucket(key_arn)
    if target.dynamodb_table:
        run.lock_table(target.dynamodb_table, key_arn)
    return run.changes


def check_s3(target: S3Target) -> list[Change]:
    """What :func:`bootstrap_s3` would do, without writing anything (``strata bootstrap --dry-run``)."""
    return bootstrap_s3(target, dry_run=True)


class _Bootstrap:
    """One run over one target: the clients, the changes so far, and one method per resource."""

    def __init__(self, target: S3Target, dry_run: bool) -> None:
        self.target = target
        self.dry_run = dry_run
        self.changes: list[Change] = []
        self._clients: dict[str, Any] = {}

    # -- shared helpers ------------------------------------------------------------------------------------

    def _client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = aws_client(self.target.values, service)
        return self._clients[service]

    def call(self, service: str, operation: str, doing: str, *, missing: tuple[str, ...] = (),
             **params: Any) -> dict[str, Any] | None:
        """``operation`` of ``service``'s API; None when it fails with an error code in ``missing`` (the
        thing does not exist). ``doing`` says what for ("read the versioning of S3 bucket x")."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return dict(getattr(self._client(service), operation)(**params))
        except (BotoCoreError, ClientError) as exc:
            if missing and aws_error(exc)[0] in missing:
                return None
            raise BackendError(self._explain(exc, service, doing)) from None

    def write(self, service: str, operation: str, doing: str, **params: Any) -> dict[str, Any]:
        """A call that changes something: never made in a dry run."""
        assert not self.dry_run, f"dry run tried to {doing}"
        result = self.call(service, operation, doing, **params)
        assert result is not None
        return result

    def report(self, resource: str, name: str, action: Action, detail: str = "") -> None:
        self.changes.append(Change(self.target.description, resource, name, action, detail))

    def created(self, resource: str, name: str, detail: str) -> None:
        self.report(resource, name, "would create" if self.dry_run else "created", detail)

    def ensure(self, resource: str, name: str, wanted: str, problem: str | None, new: bool,
               fix: Callable[[], object] | None) -> None:
        """Report one setting and put it right: ``problem`` says what was found wrong (None when it is as
        ``wanted``); ``new`` means its resource is (or would be) created in this run, so nothing was read.
        ``fix`` is None when creating the resource already applied the setting."""
        if not new and problem is None:
            self.report(resource, name, "unchanged", wanted)
            return
        if not self.dry_run and fix is not None:
            fix()
        if new:
            self.created(resource, name, wanted)
        elif self.dry_run:
            self.report(resource, name, "would change", f"{problem}; would set {wanted}")
        else:
            self.report(resource, name, "changed", f"{problem}; now {wanted}")

    def _explain(self, exc: Exception, service: str, doing: str) -> str:
        url = getattr(getattr(self._clients.get(service), "meta", None), "endpoint_url", None) or "(default)"
        problem = transport_problem(exc, _SERVICES.get(service, service), url, doing)
        if problem is not None:
            return problem
        code, message = aws_error(exc)
        if not code:
            return f"cannot {doing}: {exc}"
        if code in _CREDENTIAL_CODES:
            return (f"AWS rejected the credentials (to {doing}): {code}: {message}; check access_key/secret_key "
                    "or profile in the backend block, or the AWS_* environment variables")
        if code in _DENIED_CODES:
            return f"access denied: cannot {doing} ({message})"
        if code == "BucketAlreadyExists":
            return (f"cannot {doing}: another AWS account owns a bucket of that name (bucket names are global); "
                    "choose another bucket name")
        return f"cannot {doing}: {code}: {message}" if message != code else f"cannot {doing}: {code}"

    # -- KMS key -------------------------------------------------------------------------------------------

    def kms_key(self) -> str | None:
        """The ARN of the key behind ``target.kms_alias``, created with its alias when missing (None
        in a dry run that would create it)."""
        alias = self.target.kms_alias
        found = self.call("kms", "describe_key", f"look up KMS key {alias}", missing=("NotFoundException",),
                          KeyId=alias)
        if found is None:
            if self.dry_run:
                self.created("kms key", alias, "symmetric key, rotation enabled")
                self.ensure("kms key rotation", alias, "enabled", None, True, None)
                return None
            meta = self._create_key(alias)
            self.created("kms key", alias, str(meta["Arn"]))
        else:
            meta = found["KeyMetadata"]
            _check_key(alias, meta)
            self.report("kms key", alias, "unchanged", str(meta["Arn"]))
        self._key_rotation(alias, meta, new=found is None)
        return str(meta["Arn"])

    def _create_key(self, alias: str) -> dict[str, Any]:
        meta = self.write("kms", "create_key", f"create a KMS key for {alias}",
                          Description=f"strata: encrypts the Terraform state in s3://{self.target.bucket}",
                          KeySpec="SYMMETRIC_DEFAULT", KeyUsage="ENCRYPT_DECRYPT",
                          Tags=[{"TagKey": k, "TagValue": v} for k, v in self.target.tags])["KeyMetadata"]
        try:
            self.write("kms", "create_alias", f"create KMS alias {alias}", AliasName=alias, TargetKeyId=meta["KeyId"])
        except BackendError:  # do not leave an unnamed key behind
            with contextlib.suppress(BackendError):
                self.write("kms", "schedule_key_deletion", f"delete the unused KMS key {meta['KeyId']}",
                           KeyId=meta["KeyId"], PendingWindowInDays=7)
            raise
        return dict(meta)

    def _key_rotation(self, alias: str, meta: dict[str, Any], new: bool) -> None:
        if meta.get("KeyManager") == "AWS":
            self.report("kms key rotation", alias, "unchanged", "AWS managed key: AWS rotates it")
            return
        key_id = meta["KeyId"]
        problem = None
        if not new:
            status = self.call("kms", "get_key_rotation_status", f"read the rotation of KMS key {alias}",
                               KeyId=key_id) or {}
            problem = None if status.get("KeyRotationEnabled") else "rotation was off"
        self.ensure("kms key rotation", alias, "enabled", problem, new,
                    lambda: self.write("kms", "enable_key_rotation", f"enable rotation of KMS key {alias}",
                                       KeyId=key_id))

    # -- S3 buckets ----------------------------------------------------------------------------------------

    def state_bucket(self, key_arn: str | None) -> None:
        bucket = self.target.bucket
        new = self.bucket("s3 bucket", bucket)
        self.versioning(bucket, new)
        self.encryption(bucket, new, key_arn)
        self.public_access_block(bucket, new)
        self.tls_policy(bucket, new)
        self.lifecycle(bucket, new)
        if self.target.log_bucket:
            self.log_bucket(self.target.log_bucket)
            self.logging(bucket, new, self.target.log_bucket)
        self.tags(bucket, new)

    def log_bucket(self, bucket: str) -> None:
        """The access-log bucket: SSE-S3 (log delivery cannot write with KMS keys), private, ACLs on with
        the log delivery group allowed to write, as S3 server access logging requires."""
        new = self.bucket("s3 log bucket", bucket)
        self.encryption(bucket, new, None, kms=False)
        self.public_access_block(bucket, new)
        self.ownership(bucket, new)
        self.log_delivery(bucket, new)
        self.tags(bucket, new)

    def bucket(self, resource: str, bucket: str) -> bool:
        """Create the bucket when missing; True when it is (or would be) new."""
        region = self.target.region
        found = self.call("s3", "head_bucket", f"look up S3 bucket {bucket}", missing=("404", "NoSuchBucket"),
                          Bucket=bucket)
        if found is not None:
            where = found.get("BucketRegion") or found.get("ResponseMetadata", {}).get("HTTPHeaders", {}).get(
                "x-amz-bucket-region")
            if where and where != region:
                raise BackendError(f"S3 bucket {bucket} exists in region {where}, but the backend's region is "
                                   f"{region}; set region = \"{where}\" or choose another bucket name")
            self.report(resource, bucket, "unchanged", region)
            return False
        if not self.dry_run:
            config = {} if region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": region}}
            made = self.call("s3", "create_bucket", f"create S3 bucket {bucket} in {region}",
                             missing=("BucketAlreadyOwnedByYou",), Bucket=bucket, **config)
            if made is None:  # created by someone else in between: it exists
                self.report(resource, bucket, "unchanged", region)
                return False
        self.created(resource, bucket, region)
        return True

    def read(self, bucket: str, operation: str, what: str, missing: str = "") -> dict[str, Any] | None:
        """A bucket setting; None when the bucket has none (the error code ``missing``)."""
        return self.call("s3", operation, f"read the {what} of S3 bucket {bucket}",
                         missing=(missing,) if missing else (), Bucket=bucket)

    def put(self, bucket: str, operation: str, what: str, **params: Any) -> None:
        self.write("s3", operation, f"set the {what} of S3 bucket {bucket}", Bucket=bucket, **params)

    def versioning(self, bucket: str, new: bool) -> None:
        status = None if new else (self.read(bucket, "get_bucket_versioning", "versioning") or {}).get("Status")
        self.ensure("bucket versioning", bucket, "Enabled", None if status == "Enabled" else
                    f"versioning was {status or 'never enabled'}", new,
                    lambda: self.put(bucket, "put_bucket_versioning", "versioning",
                                     VersioningConfiguration={"Status": "Enabled"}))

    def encryption(self, bucket: str, new: bool, key_arn: str | None, kms: bool = True) -> None:
        if kms:
            wanted_default = {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn or self.target.kms_alias}
            wanted = f"aws:kms with key {key_arn or self.target.kms_alias + ' (new)'}, bucket key on"
        else:
            wanted_default, wanted = {"SSEAlgorithm": "AES256"}, "AES256 (SSE-S3)"
        found = None if new else self.read(bucket, "get_bucket_encryption", "default encryption",
                                           "ServerSideEncryptionConfigurationNotFoundError")
        rules = (found or {}).get("ServerSideEncryptionConfiguration", {}).get("Rules", [])
        problem = _encryption_problem(rules[0] if rules else None, key_arn if kms else None)
        rule = {"ApplyServerSideEncryptionByDefault": wanted_default, **({"BucketKeyEnabled": True} if kms else {})}
        self.ensure("bucket encryption", bucket, wanted, problem, new,
                    lambda: self.put(bucket, "put_bucket_encryption", "default encryption",
                                     ServerSideEncryptionConfiguration={"Rules": [rule]}))

    def public_access_block(self, bucket: str, new: bool) -> None:
        found = None if new else self.read(bucket, "get_public_access_block", "public access block",
                                           "NoSuchPublicAccessBlockConfiguration")
        flags = (found or {}).get("PublicAccessBlockConfiguration")
        off = [flag for flag in PUBLIC_ACCESS_FLAGS if not (flags or {}).get(flag)]
        problem = ("there was no public access block" if flags is None else
                   f"{', '.join(off)} {'was' if len(off) == 1 else 'were'} off" if off else None)
        self.ensure("bucket public access block", bucket, "all four blocks on", problem, new,
                    lambda: self.put(bucket, "put_public_access_block", "public access block",
                                     PublicAccessBlockConfiguration=dict.fromkeys(PUBLIC_ACCESS_FLAGS, True)))

    def tls_policy(self, bucket: str, new: bool) -> None:
        endpoint = str(self._client("s3").meta.endpoint_url or "")
        if self.target.tls_only is False or (self.target.tls_only is None and endpoint.startswith("http://")):
            why = ("bootstrap { tls_only_policy = false }" if self.target.tls_only is False else
                   f"the S3 endpoint {endpoint} is plain HTTP, so a deny-without-TLS policy would refuse every "
                   "request (tls_only_policy = true forces it)")
            self.report("bucket policy", bucket, "skipped", why)
            return
        found = None if new else self.read(bucket, "get_bucket_policy", "policy", "NoSuchBucketPolicy")
        policy: dict[str, Any] = json.loads(found["Policy"]) if found else {"Version": "2012-10-17"}
        listed = policy.get("Statement", [])
        statements: list[dict[str, Any]] = listed if isinstance(listed, list) else [listed]
        ours = _tls_statement(bucket, self.target.region)
        current = next((s for s in statements if s.get("Sid") == TLS_STATEMENT_ID), None)
        problem = (None if current is not None and _normal(current) == _normal(ours) else
                   f"statement {TLS_STATEMENT_ID} {'was missing' if current is None else 'differed'}")
        policy["Statement"] = [s for s in statements if s.get("Sid") != TLS_STATEMENT_ID] + [ours]
        self.ensure("bucket policy", bucket, f"{TLS_STATEMENT_ID}: deny s3:* without TLS", problem, new,
                    lambda: self.put(bucket, "put_bucket_policy", "policy", Policy=json.dumps(policy)))

    def lifecycle(self, bucket: str, new: bool) -> None:
        days = self.target.noncurrent_days
        found = None if new else self.read(bucket, "get_bucket_lifecycle_configuration", "lifecycle rules",
                                           "NoSuchLifecycleConfiguration")
        rules = list((found or {}).get("Rules", []))
        ours = {"ID": LIFECYCLE_RULE_ID, "Status": "Enabled", "Filter": {"Prefix": ""},
                "NoncurrentVersionExpiration": {"NoncurrentDays": days},
                "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": ABORT_UPLOADS_DAYS}}
        current = next((r for r in rules if r.get("ID") == LIFECYCLE_RULE_ID), None)
        extra = {k: found[k] for k in ("TransitionDefaultMinimumObjectSize",) if found and k in found}
        config = {"Rules": [r for r in rules if r.get("ID") != LIFECYCLE_RULE_ID] + [ours]}
        self.ensure("bucket lifecycle", bucket,
                    f"{LIFECYCLE_RULE_ID}: noncurrent versions expire after {days} days, incomplete uploads "
                    f"aborted after {ABORT_UPLOADS_DAYS} days", _lifecycle_problem(current, days), new,
                    lambda: self.put(bucket, "put_bucket_lifecycle_configuration", "lifecycle rules",
                                     LifecycleConfiguration=config, **extra))

    def logging(self, bucket: str, new: bool, log_bucket: str) -> None:
        wanted = {"TargetBucket": log_bucket, "TargetPrefix": f"{bucket}/"}
        found = None if new else self.read(bucket, "get_bucket_logging", "access logging")
        current = (found or {}).get("LoggingEnabled")
        problem = (None if current and all(current.get(k) == v for k, v in wanted.items()) else
                   f"access logs went to s3://{current.get('TargetBucket')}/{current.get('TargetPrefix', '')}"
                   if current else "access logging was off")
        self.ensure("bucket access logging", bucket, f"to s3://{log_bucket}/{bucket}/", problem, new,
                    lambda: self.put(bucket, "put_bucket_logging", "access logging",
                                     BucketLoggingStatus={"LoggingEnabled": wanted}))

    def tags(self, bucket: str, new: bool) -> None:
        found = None if new else self.read(bucket, "get_bucket_tagging", "tags", "NoSuchTagSet")
        current = {t["Key"]: t["Value"] for t in (found or {}).get("TagSet", [])}
        merged = {**current, **dict(self.target.tags)}
        self.ensure("bucket tags", bucket, _tag_list(self.target.tags), _tags_problem(current, self.target.tags), new,
                    lambda: self.put(bucket, "put_bucket_tagging", "tags",
                                     Tagging={"TagSet": [{"Key": k, "Value": v} for k, v in merged.items()]}))

    def ownership(self, bucket: str, new: bool) -> None:
        found = None if new else self.read(bucket, "get_bucket_ownership_controls", "object ownership",
                                           "OwnershipControlsNotFoundError")
        rules = (found or {}).get("OwnershipControls", {}).get("Rules", [])
        current = rules[0].get("ObjectOwnership") if rules else None
        self.ensure("bucket object ownership", bucket, "BucketOwnerPreferred",
                    None if current == "BucketOwnerPreferred" else f"object ownership was {current or 'not set'}", new,
                    lambda: self.put(bucket, "put_bucket_ownership_controls", "object ownership",
                                     OwnershipControls={"Rules": [{"ObjectOwnership": "BucketOwnerPreferred"}]}))

    def log_delivery(self, bucket: str, new: bool) -> None:
        lacking = list(LOG_DELIVERY_PERMISSIONS) if new else _lacking_log_delivery(
            self.read(bucket, "get_bucket_acl", "ACL") or {})
        self.ensure("bucket log delivery acl", bucket, "log delivery group may WRITE and READ_ACP",
                    f"the log delivery group lacked {', '.join(lacking)}" if lacking else None, new,
                    lambda: self._grant_log_delivery(bucket))

    def _grant_log_delivery(self, bucket: str) -> None:
        """Add the log delivery group's grants to the bucket ACL, keeping the other grants."""
        acl = self.read(bucket, "get_bucket_acl", "ACL") or {}
        grants = list(acl.get("Grants", [])) + [{"Grantee": {"Type": "Group", "URI": LOG_DELIVERY_GROUP},
                                                  "Permission": p} for p in _lacking_log_delivery(acl)]
        self.put(bucket, "put_bucket_acl", "ACL", AccessControlPolicy={"Owner": acl["Owner"], "Grants": grants})

    # -- DynamoDB lock table -------------------------------------------------------------------------------

    def lock_table(self, table: str, key_arn: str | None) -> None:
        found = self.call("dynamodb", "describe_table", f"look up DynamoDB table {table}",
                          missing=("ResourceNotFoundException",), TableName=table)
        new = found is None
        if found is None:
            description = self._create_table(table, key_arn)
        else:
            description = found["Table"]
            _check_lock_schema(table, description)
            self.report("dynamodb table", table, "unchanged", f"hash key {LOCK_KEY} (S)")
            if description.get("TableStatus") != "ACTIVE":
                description = self._wait_active(table)
        self._billing(table, description, new)
        self._table_encryption(table, description, new, key_arn)
        self._recovery(table, new)
        self._table_tags(table, description, new)

    def _create_table(self, table: str, key_arn: str | None) -> dict[str, Any]:
        if self.dry_run:
            self.created("dynamodb table", table, f"hash key {LOCK_KEY} (S)")
            return {}
        self.write("dynamodb", "create_table", f"create DynamoDB table {table}", TableName=table,
                   KeySchema=[{"AttributeName": LOCK_KEY, "KeyType": "HASH"}],
                   AttributeDefinitions=[{"AttributeName": LOCK_KEY, "AttributeType": "S"}],
                   BillingMode="PAY_PER_REQUEST",
                   SSESpecification={"Enabled": True, "SSEType": "KMS", "KMSMasterKeyId": key_arn},
                   Tags=[{"Key": k, "Value": v} for k, v in self.target.tags])
        self.created("dynamodb table", table, f"hash key {LOCK_KEY} (S)")
        return self._wait_active(table)

    def _wait_active(self, table: str) -> dict[str, Any]:
        """The table's description once it is ACTIVE (tables being created or updated refuse changes)."""
        deadline = time.monotonic() + TABLE_WAIT_SECONDS
        while True:
            found = self.call("dynamodb", "describe_table", f"look up DynamoDB table {table}", TableName=table) or {}
            description: dict[str, Any] = found.get("Table", {})
            status = description.get("TableStatus")
            if status == "ACTIVE":
                return description
            if status not in ("CREATING", "UPDATING"):
                raise BackendError(f"DynamoDB table {table} is {status}, not ACTIVE: strata cannot use or repair it")
            if time.monotonic() > deadline:
                raise BackendError(f"DynamoDB table {table} was still {status} after {TABLE_WAIT_SECONDS:.0f} s")
            time.sleep(POLL_SECONDS)

    def _update_table(self, table: str, what: str, **params: Any) -> None:
        self.write("dynamodb", "update_table", f"set the {what} of DynamoDB table {table}", TableName=table, **params)
        self._wait_active(table)

    def _billing(self, table: str, description: dict[str, Any], new: bool) -> None:
        mode = description.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED")
        self.ensure("dynamodb billing mode", table, "PAY_PER_REQUEST",
                    None if mode == "PAY_PER_REQUEST" else f"billing mode was {mode}", new,
                    None if new else lambda: self._update_table(table, "billing mode", BillingMode="PAY_PER_REQUEST"))

    def _table_encryption(self, table: str, description: dict[str, Any], new: bool, key_arn: str | None) -> None:
        sse = description.get("SSEDescription") or {}
        if sse.get("Status") in ("ENABLED", "UPDATING") and sse.get("SSEType") == "KMS":
            found = f"encrypted with KMS key {sse.get('KMSMasterKeyArn')}"
        else:
            found = "encrypted with an AWS owned key"
        ok = found == f"encrypted with KMS key {key_arn}"
        self.ensure("dynamodb encryption", table, f"KMS key {key_arn or self.target.kms_alias + ' (new)'}",
                    None if ok else found, new,
                    None if new else lambda: self._update_table(
                        table, "encryption", SSESpecification={"Enabled": True, "SSEType": "KMS",
                                                               "KMSMasterKeyId": key_arn}))

    def _recovery(self, table: str, new: bool) -> None:
        problem = None
        if not new:
            found = self.call("dynamodb", "describe_continuous_backups",
                              f"read the point-in-time recovery of DynamoDB table {table}", TableName=table) or {}
            status = found.get("ContinuousBackupsDescription", {}).get("PointInTimeRecoveryDescription", {}).get(
                "PointInTimeRecoveryStatus", "DISABLED")
            problem = None if status == "ENABLED" else f"point-in-time recovery was {status.lower()}"
        self.ensure("dynamodb point-in-time recovery", table, "enabled", problem, new,
                    lambda: self._enable_recovery(table))

    def _enable_recovery(self, table: str) -> None:
        """Enable point-in-time recovery; right after CreateTable AWS may answer "backups are being
        enabled" (ContinuousBackupsUnavailableException) for a while: retry until the table wait ends."""
        doing = f"enable point-in-time recovery of DynamoDB table {table}"
        deadline = time.monotonic() + TABLE_WAIT_SECONDS
        while self.call("dynamodb", "update_continuous_backups", doing,
                        missing=("ContinuousBackupsUnavailableException",) if time.monotonic() < deadline else (),
                        TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}) is None:
            time.sleep(POLL_SECONDS)

    def _table_tags(self, table: str, description: dict[str, Any], new: bool) -> None:
        arn = description.get("TableArn")
        current: dict[str, str] = {}
        if not new and arn:
            found = self.call("dynamodb", "list_tags_of_resource", f"read the tags of DynamoDB table {table}",
                              ResourceArn=arn) or {}
            current = {t["Key"]: t["Value"] for t in found.get("Tags", [])}
        self.ensure("dynamodb tags", table, _tag_list(self.target.tags), _tags_problem(current, self.target.tags),
                    new, None if new else lambda: self.write(
                        "dynamodb", "tag_resource", f"tag DynamoDB table {table}", ResourceArn=arn,
                        Tags=[{"Key": k, "Value": v} for k, v in self.target.tags]))


# -- comparisons -----------------------------------------------------------------------------------------


def _check_key(alias: str, meta: dict[str, Any]) -> None:
    """A key strata can encrypt state with: enabled, symmetric, for encryption."""
    state = meta.get("KeyState", "Enabled")
    if state != "Enabled":
        raise BackendError(f"KMS key {alias} ({meta.get('Arn')}) is {state}: state encrypted with it cannot be "
                           "read or written; enable it (or cancel its deletion) in KMS, or choose another alias")
    if meta.get("KeySpec", "SYMMETRIC_DEFAULT") != "SYMMETRIC_DEFAULT" or \
            meta.get("KeyUsage", "ENCRYPT_DECRYPT") != "ENCRYPT_DECRYPT":
        raise BackendError(f"KMS key {alias} ({meta.get('Arn')}) is a {meta.get('KeySpec')} key for "
                           f"{meta.get('KeyUsage')}; S3 and DynamoDB encryption need a symmetric encryption key")


def _check_lock_schema(table: str, description: dict[str, Any]) -> None:
    keys = [(k.get("AttributeName"), k.get("KeyType")) for k in description.get("KeySchema", [])]
    types = {a.get("AttributeName"): a.get("AttributeType") for a in description.get("AttributeDefinitions", [])}
    if keys != [(LOCK_KEY, "HASH")] or types.get(LOCK_KEY) != "S":
        schema = ", ".join(f"{'hash' if kind == 'HASH' else 'range'} key {name} ({types.get(name, '?')})"
                           for name, kind in keys)
        raise BackendError(f"DynamoDB table {table} has {schema or 'no key schema'}, but Terraform's lock table "
                           f"needs a hash key {LOCK_KEY} of type S (string) and no range key; a key schema cannot "
                           "be changed: point dynamodb_table at another table, or delete this one when no lock is held")


def _encryption_problem(rule: dict[str, Any] | None, key_arn: str | None) -> str | None:
    """What is wrong with the bucket's default encryption rule; ``key_arn`` None means SSE-S3 is wanted."""
    if rule is None:
        return "there was no default encryption"
    default = rule.get("ApplyServerSideEncryptionByDefault", {})
    algorithm, key = default.get("SSEAlgorithm"), default.get("KMSMasterKeyID")
    if key_arn is None:
        return None if algorithm == "AES256" else f"encryption was {algorithm}"
    if algorithm == "aws:kms" and key in (key_arn, key_arn.rsplit("/", 1)[-1]):
        return None if rule.get("BucketKeyEnabled") else "the bucket key was off"
    return f"encryption was {algorithm}{f' with key {key}' if key else ''}"


def _lifecycle_problem(rule: dict[str, Any] | None, days: int) -> str | None:
    if rule is None:
        return f"there was no rule {LIFECYCLE_RULE_ID}"
    found = []
    if rule.get("Status") != "Enabled":
        found.append(f"the rule was {rule.get('Status')}")
    if rule.get("Filter") not in (None, {}, {"Prefix": ""}) or rule.get("Prefix"):
        found.append("the rule applied to part of the bucket only")
    expire = rule.get("NoncurrentVersionExpiration", {}).get("NoncurrentDays")
    if expire != days or rule.get("NoncurrentVersionExpiration", {}).get("NewerNoncurrentVersions"):
        found.append(f"noncurrent versions expired after {expire} days")
    if rule.get("AbortIncompleteMultipartUpload", {}).get("DaysAfterInitiation") != ABORT_UPLOADS_DAYS:
        found.append(f"incomplete uploads were not aborted after {ABORT_UPLOADS_DAYS} days")
    return "; ".join(found) or None


def _lacking_log_delivery(acl: dict[str, Any]) -> list[str]:
    granted = {grant.get("Permission") for grant in acl.get("Grants", [])
               if grant.get("Grantee", {}).get("URI") == LOG_DELIVERY_GROUP}
    if "FULL_CONTROL" in granted:
        return []
    return [p for p in LOG_DELIVERY_PERMISSIONS if p not in granted]


def _tags_problem(current: dict[str, str], wanted: tuple[tuple[str, str], ...]) -> str | None:
    wrong = [f"{k} was {current[k]!r}" if k in current else f"{k} was missing"
             for k, v in wanted if current.get(k) != v]
    return f"tags differed: {', '.join(wrong)}" if wrong else None


def _tag_list(tags: tuple[tuple[str, str], ...]) -> str:
    return ", ".join(f"{k}={v}" for k, v in tags) or "no tags"


def _tls_statement(bucket: str, region: str) -> dict[str, Any]:
    arn = f"arn:{_partition(region)}:s3:::{bucket}"
    return {"Sid": TLS_STATEMENT_ID, "Effect": "Deny", "Principal": "*", "Action": "s3:*",
            "Resource": [arn, f"{arn}/*"], "Condition": {"Bool": {"aws:SecureTransport": "false"}}}


def _partition(region: str) -> str:
    return "aws-cn" if region.startswith("cn-") else "aws-us-gov" if region.startswith("us-gov-") else "aws"


def _normal(value: Any) -> Any:
    """A policy element in one spelling: one-item lists unwrapped, lists sorted, booleans as strings,
    ``{"AWS": "*"}`` as ``"*"`` (AWS accepts and returns either)."""
    if isinstance(value, dict):
        out = {k: _normal(v) for k, v in value.items()}
        return "*" if out == {"AWS": "*"} else out
    if isinstance(value, list):
        items = [_normal(v) for v in value]
        return items[0] if len(items) == 1 else sorted(items, key=json.dumps)
    if isinstance(value, bool):
        return str(value).lower()
    return value
