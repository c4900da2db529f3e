"""The saved plans of a pull/merge request, carried to the pipeline on main as one encrypted bundle.

``strata plan --out`` saves each stack's plan under ``.strata/plans/<stack>/plan.tfplan`` with a record
(``plan.json``: the plan's sha256 and the digest of the stack's code and inputs). :func:`pack` puts the saved
plans of a checkout in one file, :func:`unpack` puts them back in another checkout of the same code, and
:func:`fetch` downloads the bundle of the pull/merge request merged into HEAD from the CI platform's API.
``strata apply --plan`` then applies exactly those plans, refusing any whose code, inputs or state changed.

A bundle is one file::

    STRATA-PLANS 1\\n
    {"format_version": "1", "encryption": "fernet", "repository": ..., "commit": ..., "pr_head": ...}\\n
    <payload>

The payload is a tar of ``manifest.json`` and ``plans/<stack>/plan.tfplan`` + ``plan.json``, encrypted with
Fernet (AES-CBC + HMAC-SHA256: authenticated) under the key in ``STRATA_PLAN_KEY``: a plan holds every
variable's value, secrets included, and CI artifacts can be read by anyone who can read the repository. The
header line is readable without the key (fetch checks which commit a bundle is for) and repeated in the
manifest, so a header changed after packing is refused at unpack. ``encryption: none`` exists for private
runners and must be asked for on both sides (``--unencrypted``).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import posixpath
import re
import subprocess
import tarfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from strata.atomic import SECRET, private_dir, refuse_links, write_atomic
from strata.errors import StrataError
from strata.model.repository import Repository
from strata.model.stack import Stack
from strata.run.engine import saved_plan_path

MAGIC = b"STRATA-PLANS 1\n"
FORMAT_VERSION = "1"
KEY_VARIABLE = "STRATA_PLAN_KEY"
MAX_BUNDLE = 1024 * 1024 * 1024  # 1 GiB: bigger is refused rather than read into memory
MAX_HEADER = 64 * 1024
MANIFEST = "manifest.json"


class BundleError(StrataError):
    """A bundle that cannot be packed or unpacked: no key, wrong key, changed, or not for this repository."""


@dataclass
class Manifest:
    """What a bundle holds: for which repository and commit, and each stack's plan digest and config digest."""

    repository: str | None
    commit: str
    pr_head: str | None
    created: str
    terraform: str
    encrypted: bool
    stacks: dict[str, dict[str, Any]] = field(default_factory=dict)  # stack path -> sha256, config, mocked

    def header(self) -> dict[str, Any]:
        """The part readable without the key (and checked against the encrypted manifest)."""
        return {"format_version": FORMAT_VERSION, "encryption": "fernet" if self.encrypted else "none",
                "repository": self.repository, "commit": self.commit, "pr_head": self.pr_head,
                "created": self.created}

    def to_json(self) -> dict[str, Any]:
        return {**self.header(), "terraform": self.terraform,
                "stacks": {path: self.stacks[path] for path in sorted(self.stacks)}}

    def report(self) -> dict[str, Any]:
        """The ``--json`` document of pack and unpack (docs/schemas/ci-plans.schema.json)."""
        return {"repository": self.repository, "commit": self.commit, "pr_head": self.pr_head,
                "created": self.created, "terraform": self.terraform, "encrypted": self.encrypted,
                "stacks": [{"path": path, **self.stacks[path]} for path in sorted(self.stacks)]}


# -- the key -----------------------------------------------------------------------------------------------


def new_key() -> str:
    """A fresh random key (Fernet: 32 bytes, URL-safe base64) to keep as the CI secret STRATA_PLAN_KEY."""
    key: bytes = _fernet_class().generate_key()
    return key.decode("ascii")


def _fernet_class() -> Any:
    try:
        from cryptography.fernet import Fernet
    except ImportError:
        raise BundleError("encrypting plans needs the `cryptography` package: install tfstrata[ci] (or "
                          "tfstrata[all])") from None
    return Fernet


def _fernet(key: str) -> Any:
    try:
        return _fernet_class()(key.strip().encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise BundleError(f"{KEY_VARIABLE} is not a key made by `strata ci plans key` (32 bytes in URL-safe "
                          "base64, 44 characters)") from None


def key_from_environment() -> str | None:
    return os.environ.get(KEY_VARIABLE, "").strip() or None


# -- where the bundle comes from: repository, commit, pull request ---------------------------------------


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True, check=False)
    except OSError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def head_commit(root: Path) -> str:
    """``git rev-parse HEAD`` of the repository at ``root``."""
    commit = _git(root, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    if not commit:
        raise BundleError(f"{root} is not a git repository with a commit: a bundle names the commit its plans "
                          "were made from")
    return commit


def repository_name(root: Path) -> str | None:
    """Which repository this is, as ``owner/name`` (lower case): from the CI platform's variable, else from the
    ``origin`` remote's URL; None when neither tells (a clone of a local folder)."""
    for variable in ("GITHUB_REPOSITORY", "CI_PROJECT_PATH", "BUILD_REPOSITORY_NAME"):
        value = os.environ.get(variable, "").strip().strip("/")
        if value:
            return value.lower()
    url = _git(root, "remote", "get-url", "origin")
    return _path_of_url(url) if url else None


def _path_of_url(url: str) -> str | None:
    """``owner/name`` of a git URL (https://host/owner/name.git, git@host:owner/name, ssh://...); None for a
    local path. Credentials in the URL are dropped with the host."""
    url = url.strip()
    found = re.fullmatch(r"[a-z][a-z0-9+.-]*://[^/]*/(.+)", url, re.IGNORECASE) or \
        re.fullmatch(r"[^/:@]+@[^/:]+:(.+)", url)
    if found is None:
        return None
    path = found[1].strip("/")
    path = path.removesuffix(".git").strip("/")
    return path.lower() or None


def pull_request_head(root: Path, commit: str) -> str | None:
    """The last commit of the pull/merge request this pipeline runs for, when CI names one other than ``commit``
    (GitHub runs a pull request on a test merge; GitLab's merged-results pipelines too): see strata.ci.commit."""
    from strata.ci.commit import reviewed_commit

    reviewed = reviewed_commit(root)
    return reviewed if reviewed != commit else None


# -- pack ---------------------------------------------------------------------------------------------------


def _member_folder(stack_path: str) -> str:
    return "plans/" + (stack_path or "_root")


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_saved(root: Path, stack: Stack) -> tuple[bytes, bytes, dict[str, Any]] | None:
    """A stack's saved plan and its record (None when it has none); refused when they do not belong together."""
    plan = saved_plan_path(root, stack.path)
    record_path = plan.with_suffix(".json")
    if not plan.is_file() or not record_path.is_file() or plan.is_symlink() or record_path.is_symlink():
        return None
    data, record_bytes = plan.read_bytes(), record_path.read_bytes()
    try:
        record = json.loads(record_bytes)
    except ValueError:
        record = None
    if not isinstance(record, dict) or record.get("sha256") != _sha256(data) or not record.get("config"):
        raise BundleError(f"the saved plan of {stack.path or '.'} is not the one `strata plan --out` made (its "
                          "file or record changed since); plan again")
    return data, record_bytes, record


def pack(repo: Repository, stacks: Iterable[Stack], target: Path, *, key: str | None) -> Manifest:
    """Write the saved plans of ``stacks`` (those that have one) to ``target``, encrypted with ``key`` (None:
    unencrypted, which the caller asked for explicitly). Returns the manifest: with no stack, the bundle says
    that nothing is to be applied (a change that affects no stack)."""
    fernet = _fernet(key) if key is not None else None
    commit = head_commit(repo.root)
    manifest = Manifest(repository_name(repo.root), commit, pull_request_head(repo.root, commit),
                        time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "", fernet is not None)
    members: dict[str, bytes] = {}
    versions: set[str] = set()
    for stack in stacks:
        saved = _read_saved(repo.root, stack)
        if saved is None:
            continue
        data, record_bytes, record = saved
        folder = _member_folder(stack.path)
        members[f"{folder}/plan.tfplan"] = data
        members[f"{folder}/plan.json"] = record_bytes
        manifest.stacks[stack.path] = {"sha256": record["sha256"], "config": record["config"],
                                       "mocked_dependencies": list(record.get("mocked_dependencies") or [])}
        versions.add(str(record.get("terraform", "")).partition(" (")[0])  # "Terraform 1.11.4", not its path
    manifest.terraform = ", ".join(sorted(v for v in versions if v))
    payload = _tar({MANIFEST: (json.dumps(manifest.to_json(), indent=2) + "\n").encode(), **members})
    if fernet is not None:
        payload = fernet.encrypt(payload)
    bundle = MAGIC + json.dumps(manifest.header(), sort_keys=True).encode() + b"\n" + payload
    if len(bundle) > MAX_BUNDLE:
        raise BundleError(f"the bundle would be {len(bundle) // (1024 * 1024)} MiB, more than unpack accepts "
                          f"({MAX_BUNDLE // (1024 * 1024)} MiB): pack fewer stacks per bundle")
    try:
        write_atomic(target, bundle, mode=SECRET)
    except OSError as exc:
        raise BundleError(f"cannot write {target}: {exc.strerror or exc}") from None
    return manifest


def _tar(members: dict[str, bytes]) -> bytes:
    """A tar of ``members`` that depends on nothing but their names and bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as archive:
        for name in sorted(members):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(members[name]), SECRET, 0
            archive.addfile(info, io.BytesIO(members[name]))
    return buffer.getvalue()


# -- unpack -------------------------------------------------------------------------------------------------


def read_header(source: Path) -> tuple[dict[str, Any], bytes]:
    """The readable header of the bundle at ``source`` and its payload; a BundleError when it is not one."""
    try:
        if not source.is_file():
            raise BundleError(f"{source} is not a file")
        if source.stat().st_size > MAX_BUNDLE:
            raise BundleError(f"{source} is larger than {MAX_BUNDLE // (1024 * 1024)} MiB: not a plan bundle")
        raw = source.read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot read {source}: {exc.strerror or exc}") from None
    return parse_header(raw, str(source))


def parse_header(raw: bytes, name: str) -> tuple[dict[str, Any], bytes]:
    if not raw.startswith(MAGIC):
        raise BundleError(f"{name} is not a strata plan bundle (made by `strata ci plans pack`)")
    line, newline, _ = raw[len(MAGIC):len(MAGIC) + MAX_HEADER].partition(b"\n")
    try:
        header = json.loads(line) if newline else None
    except ValueError:
        header = None
    if not isinstance(header, dict) or header.get("encryption") not in ("fernet", "none"):
        raise BundleError(f"{name} is a damaged plan bundle (its header cannot be read)")
    if header.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{name} is a plan bundle of format {header.get('format_version')!r}; this strata reads "
                          f"format {FORMAT_VERSION}: use the same strata version to pack and unpack")
    return header, raw[len(MAGIC) + len(line) + 1:]


def unpack(repo: Repository, source: Path, *, key: str | None, unencrypted: bool) -> Manifest:
    """Verify the bundle at ``source`` completely, then write its plans into ``.strata/plans``.

    Refused, with nothing written: a wrong key or a changed bundle, an unencrypted bundle without
    ``unencrypted``, a member that is not one of the plans the manifest lists (a link, a path outside,
    an extra file), a plan whose sha256 is not the manifest's, a bundle of another repository, a plan of
    a stack this repository does not have.
    """
    header, payload = read_header(source)
    if header["encryption"] == "none":
        if not unencrypted:
            raise BundleError(f"{source} is not encrypted: anyone who could replace it could change the plans; "
                              "pass --unencrypted to accept it (only on private runners)")
    else:
        if key is None:
            raise BundleError(f"{source} is encrypted: set {KEY_VARIABLE} to the key it was packed with")
        from cryptography.fernet import InvalidToken

        try:
            payload = _fernet(key).decrypt(payload)
        except InvalidToken:
            raise BundleError(f"cannot decrypt {source}: {KEY_VARIABLE} is not the key it was packed with, or "
                              "the bundle was changed since it was packed") from None
    members = _members(payload, str(source))
    manifest = _manifest(members, header, str(source))
    _check_repository(repo, manifest, str(source))
    writes = _verified_plans(repo, manifest, members, str(source))
    for path, _ in writes:  # a link anywhere on the way is refused before anything is written
        refuse_links(path.parent)
    for path, data in writes:  # the plan before its record: a record never vouches for a plan not yet there
        private_dir(path.parent)
        write_atomic(path, data, mode=SECRET)
    return manifest


def _members(payload: bytes, name: str) -> dict[str, bytes]:
    """Every member of the payload's tar, by name: regular files with plain relative names, each once."""
    members: dict[str, bytes] = {}
    left = MAX_BUNDLE
    try:
        with tarfile.open(fileobj=io.BytesIO(payload), mode="r:") as archive:
            for info in archive:
                member = info.name
                if member.startswith("/") or ".." in member.split("/") or posixpath.normpath(member) != member:
                    raise BundleError(f"{name}: member {member!r} points outside the plans folder; refused")
                if not info.isreg():
                    raise BundleError(f"{name}: member {member!r} is not a regular file (a link or a device); "
                                      "refused")
                if member in members:
                    raise BundleError(f"{name}: member {member!r} appears twice; refused")
                left -= info.size
                handle = archive.extractfile(info)
                if left < 0 or handle is None:
                    raise BundleError(f"{name}: the bundle's content is too large; refused")
                members[member] = handle.read()
    except (tarfile.TarError, EOFError, OSError, ValueError):  # ValueError: a name that is not UTF-8, say
        raise BundleError(f"{name} is a damaged plan bundle (its content is not a readable archive)") from None
    return members


def _manifest(members: dict[str, bytes], header: dict[str, Any], name: str) -> Manifest:
    try:
        data = json.loads(members.get(MANIFEST, b""))
    except ValueError:
        data = None
    stacks = data.get("stacks") if isinstance(data, dict) else None
    if not isinstance(data, dict) or not isinstance(stacks, dict) or not isinstance(data.get("commit"), str):
        raise BundleError(f"{name} is a damaged plan bundle (no readable manifest)")
    if any(data.get(k) != v for k, v in header.items()):
        raise BundleError(f"{name}: its readable header does not match its manifest (changed since it was "
                          "packed); refused")
    for path, entry in stacks.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str) or \
                not isinstance(entry.get("config"), str):
            raise BundleError(f"{name} is a damaged plan bundle (the manifest's entry of {path!r} is incomplete)")
        mocked = entry.get("mocked_dependencies")
        entry["mocked_dependencies"] = [str(m) for m in mocked] if isinstance(mocked, list) else []
    return Manifest(_text(data.get("repository")), data["commit"], _text(data.get("pr_head")),
                    str(data.get("created", "")), str(data.get("terraform", "")), header["encryption"] == "fernet",
                    stacks)


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _check_repository(repo: Repository, manifest: Manifest, name: str) -> None:
    here = repository_name(repo.root)
    if manifest.repository and here and manifest.repository != here:
        raise BundleError(f"{name} holds the plans of repository {manifest.repository}, and this is {here}; "
                          "refused")
    unknown = sorted(p for p in manifest.stacks if p not in repo.stacks)
    if unknown:
        raise BundleError(f"{name} holds plans of {', '.join(p or '.' for p in unknown[:5])}, which "
                          f"{'is not a stack' if len(unknown) == 1 else 'are not stacks'} of this repository "
                          "(a bundle of another repository or commit?); refused")


def _verified_plans(repo: Repository, manifest: Manifest, members: dict[str, bytes],
                    name: str) -> list[tuple[Path, bytes]]:
    """The files to write, each plan checked against the manifest and its record; refused on any difference."""
    expected = {MANIFEST}
    writes: list[tuple[Path, bytes]] = []
    for path in sorted(manifest.stacks):
        entry = manifest.stacks[path]
        folder = _member_folder(path)
        plan, record_bytes = members.get(f"{folder}/plan.tfplan"), members.get(f"{folder}/plan.json")
        expected |= {f"{folder}/plan.tfplan", f"{folder}/plan.json"}
        if plan is None or record_bytes is None:
            raise BundleError(f"{name}: the plan of {path or '.'} is missing from the bundle; refused")
        if _sha256(plan) != entry["sha256"]:
            raise BundleError(f"{name}: the plan of {path or '.'} does not have the sha256 its manifest lists "
                              "(changed since it was packed); refused")
        try:
            record = json.loads(record_bytes)
        except ValueError:
            record = None
        if not isinstance(record, dict) or record.get("sha256") != entry["sha256"] or \
                record.get("config") != entry["config"] or record.get("stack", path) != path:
            raise BundleError(f"{name}: the record of the plan of {path or '.'} does not match the manifest; "
                              "refused")
        target = saved_plan_path(repo.root, path)
        writes += [(target, plan), (target.with_suffix(".json"), record_bytes)]
    extra = sorted(set(members) - expected)
    if extra:
        raise BundleError(f"{name}: member {extra[0]!r} is not a plan the manifest lists; refused")
    return writes


# -- fetch: the bundle of the pull/merge request merged into HEAD ---------------------------------------------

NO_REVIEWED_PLAN = 3  # exit code: nothing reviewed to apply for this commit; the pipeline plans on main instead
MAX_DOWNLOAD = MAX_BUNDLE + 16 * 1024 * 1024
TIMEOUT = 60.0


class NoReviewedPlan(StrataError):
    """No bundle of a reviewed plan exists for this commit (a direct push, an expired artifact, a platform that
    does not carry plans): exit code 3, so that the pipeline falls back to planning on main."""

    exit_code = NO_REVIEWED_PLAN


@dataclass(frozen=True)
class Fetched:
    """Where a fetched bundle came from."""

    platform: str
    request: str  # "pull request #12" / "merge request !7"
    head: str  # the request's last commit, whose pipeline made the plans
    source: str  # the artifact: its name and id, or the job and ref


def fetch(root: Path, target: Path, platform: str, *, artifact: str, job: str) -> Fetched:
    """Download the bundle of the pull/merge request merged into HEAD to ``target``.

    Raises :class:`NoReviewedPlan` when there is none for this commit, another StrataError on failure.
    ``artifact`` names the GitHub artifact (``<artifact>-<PR number>``), whose zip holds a file of ``target``'s name;
    on GitLab, the ``job``'s artifacts hold ``target`` at the same relative path.
    """
    if platform not in ("github", "gitlab"):
        raise NoReviewedPlan("Azure DevOps does not carry a plan from the pull request to main (its build "
                             "artifacts cannot be looked up by the merged commit): plan on main, and apply that "
                             "saved plan after the environment's approval")
    commit = head_commit(root)
    if platform == "github":
        found, bundle = _github(commit, artifact, target.name)
    elif platform == "gitlab":  # artifacts are kept at their path in the project folder
        found, bundle = _gitlab(commit, job, target.name if target.is_absolute() else target.as_posix())
    header, _ = parse_header(bundle, found.source)
    made_from = header.get("pr_head") or header.get("commit")
    if made_from != found.head:
        raise NoReviewedPlan(f"the newest plans of {found.request} ({found.source}) were made from commit "
                             f"{str(made_from)[:12]}, and its last commit is {found.head[:12]}: the last commit's "
                             "plan did not finish; no reviewed plan to apply")
    try:
        write_atomic(target, bundle, mode=SECRET)
    except OSError as exc:
        raise StrataError(f"cannot write {target}: {exc.strerror or exc}") from None
    return found


def _environment(name: str, what: str) -> str:
    from strata.ci.platform import require

    return require(name, what)


def _github(commit: str, artifact: str, filename: str) -> tuple[Fetched, bytes]:
    api = os.environ.get("GITHUB_API_URL", "").strip().rstrip("/") or "https://api.github.com"
    repository = _environment("GITHUB_REPOSITORY", "fetch needs the repository (owner/name), as GitHub Actions sets")
    if not re.fullmatch(r"[\w.-]+/[\w.-]+", repository):
        raise StrataError(f"GITHUB_REPOSITORY is {repository!r}, not owner/name")
    token = _environment("GITHUB_TOKEN", "fetch reads the repository's pull requests and artifacts with it; give the "
                                         "job `permissions: {contents: read, pull-requests: read, actions: read}` and "
                                         "`env: GITHUB_TOKEN: ${{ github.token }}`")
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/vnd.github+json",
               "X-GitHub-Api-Version": "2022-11-28"}
    base = f"{api}/repos/{repository}"
    pulls = _get_json(f"{base}/commits/{commit}/pulls", headers)
    merged = [p for p in _dicts(pulls) if p.get("merged_at")]
    branch = os.environ.get("GITHUB_REF_NAME", "")  # the PR this commit merged into this branch first
    merged.sort(key=lambda p: (p.get("merge_commit_sha") != commit, (p.get("base") or {}).get("ref") != branch))
    if not merged:
        raise NoReviewedPlan(f"commit {commit[:12]} is not the merge of a pull request (a direct push?): no reviewed "
                             "plan to apply")
    pull = merged[0]
    number, head = pull.get("number"), (pull.get("head") or {}).get("sha")
    if not isinstance(number, int) or not isinstance(head, str):
        raise StrataError(f"GET {base}/commits/{commit}/pulls answered a pull request without number or head sha")
    name = f"{artifact}-{number}"
    listing = _get_json(f"{base}/actions/artifacts?name={name}&per_page=100", headers)
    found = [a for a in _dicts(listing.get("artifacts") if isinstance(listing, dict) else None)
             if (a.get("workflow_run") or {}).get("head_sha") == head]
    request = f"pull request #{number}"
    if not found:
        raise NoReviewedPlan(f"no artifact {name} from the last commit of {request} ({head[:12]}): its pipeline "
                             "did not save plans; no reviewed plan to apply")
    live = [a for a in found if not a.get("expired")]
    if not live:
        raise NoReviewedPlan(f"the artifact {name} of {request} has expired (retention); no reviewed plan to "
                             "apply")
    chosen = max(live, key=lambda a: (str(a.get("created_at", "")), a["id"] if isinstance(a.get("id"), int) else 0))
    url = chosen.get("archive_download_url")
    if not isinstance(url, str):
        raise StrataError(f"the artifact {name} (id {chosen.get('id')}) has no archive_download_url")
    archive = _download(url, headers)
    source = f"artifact {name} (id {chosen.get('id')})"
    if archive is None:
        raise NoReviewedPlan(f"the {source} of {request} is gone (expired or deleted); no reviewed plan to apply")
    return Fetched("github", request, head, source), _from_zip(archive, filename, source)


def _gitlab(commit: str, job: str, filename: str) -> tuple[Fetched, bytes]:
    import urllib.parse

    api = os.environ.get("CI_API_V4_URL", "").strip().rstrip("/") or "https://gitlab.com/api/v4"
    project = os.environ.get("CI_PROJECT_ID", "").strip() or _environment(
        "CI_PROJECT_PATH", "fetch needs the project (CI_PROJECT_ID or CI_PROJECT_PATH), as GitLab CI sets")
    token = _environment("STRATA_GITLAB_TOKEN", "fetch reads the project's merge requests and job artifacts with "
                                                "it: a project access token with read_api, kept as a masked CI/CD "
                                                "variable")
    headers = {"PRIVATE-TOKEN": token}
    base = f"{api}/projects/{urllib.parse.quote(project, safe='')}"
    requests = _get_json(f"{base}/repository/commits/{commit}/merge_requests", headers)
    merged = [m for m in _dicts(requests) if m.get("state") == "merged"]
    merged.sort(key=lambda m: commit not in (m.get("merge_commit_sha"), m.get("squash_commit_sha"), m.get("sha")))
    if not merged:
        raise NoReviewedPlan(f"commit {commit[:12]} is not the merge of a merge request (a direct push?): no "
                             "reviewed plan to apply")
    chosen = merged[0]
    iid, head = chosen.get("iid"), chosen.get("sha")
    if not isinstance(iid, int) or not isinstance(head, str):
        raise StrataError(f"GET {base}/repository/commits/{commit}/merge_requests answered a merge request without "
                          "iid or sha")
    request = f"merge request !{iid}"
    for ref in (f"refs/merge-requests/{iid}/head", f"refs/merge-requests/{iid}/merge"):
        url = (f"{base}/jobs/artifacts/{urllib.parse.quote(ref, safe='')}/raw/"
               f"{urllib.parse.quote(filename)}?job={urllib.parse.quote(job, safe='')}")
        bundle = _download(url, headers)
        if bundle is not None:
            return Fetched("gitlab", request, head, f"{filename} of job {job} on {ref}"), bundle
    raise NoReviewedPlan(f"no artifact {filename} of a successful job {job} for {request} (expired, or its "
                         "pipeline did not save plans); no reviewed plan to apply")


def _dicts(value: Any) -> list[dict[str, Any]]:
    return [v for v in value if isinstance(v, dict)] if isinstance(value, list) else []


def _from_zip(archive: bytes, filename: str, source: str) -> bytes:
    """The bundle inside a GitHub artifact's zip: the member named ``filename``, else its only file."""
    import zipfile

    try:
        with zipfile.ZipFile(io.BytesIO(archive)) as unzipped:
            files = [i for i in unzipped.infolist() if not i.is_dir()]
            named = [i for i in files if i.filename == filename or i.filename.rpartition("/")[2] == filename]
            chosen = named[0] if len(named) == 1 else files[0] if len(files) == 1 else None
            if chosen is None:
                raise StrataError(f"the {source} holds {len(files)} files and none is named {filename}: name the "
                                  "bundle the same when packing and fetching")
            if chosen.file_size > MAX_BUNDLE:
                raise StrataError(f"the {source} holds a file larger than {MAX_BUNDLE // (1024 * 1024)} MiB; refused")
            with unzipped.open(chosen) as member:
                return member.read()
    # RuntimeError: a member with a password; NotImplementedError: a compression method zipfile lacks
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError):
        raise StrataError(f"the {source} is not a readable zip archive") from None


# HTTP: strata.ci.platform's, which never sends the token where a download redirects.


def _get_json(url: str, headers: dict[str, str]) -> Any:
    body = _download(url, headers, json_answer=True)
    if body is None:
        raise StrataError(f"GET {_shown(url)} answered HTTP 404: check the repository/project and that the token "
                          "can read it")
    try:
        return json.loads(body)
    except ValueError:
        raise StrataError(f"GET {_shown(url)} did not answer JSON; is the API URL right?") from None


def _shown(url: str) -> str:
    return url.partition("?")[0]


def _download(url: str, headers: dict[str, str], *, json_answer: bool = False) -> bytes | None:
    """The body at ``url`` (None for 404 or 410: not there, or expired), following redirects; the ``headers``
    (the token) go to ``url`` only, never to where it redirects."""
    from strata.ci.platform import send

    answer = send("GET", url, headers={"Accept": "application/json" if json_answer else "*/*", **headers},
                  timeout=TIMEOUT, max_bytes=MAX_DOWNLOAD, ok=lambda status: status in (404, 410))
    return None if answer.status in (404, 410) else answer.body
