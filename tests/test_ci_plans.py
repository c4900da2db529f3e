"""Apply the reviewed plan (issue 12, item 2): the saved plans of a pull/merge request travel to the pipeline on
main as one encrypted bundle and are applied exactly, or refused when stale.

Real terraform and the null provider, real git clones (clone A is the PR's checkout, clone B main's), and a fake
CI API served on 127.0.0.1 for fetch (the platforms have no emulator; it serves the endpoints' documented shapes).
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import subprocess
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest
from cryptography.fernet import Fernet

from conftest import REPO, Result, write_tree
from fake_ci_api import Reply  # loaded (and its asserts rewritten) by conftest's pytest_plugins

if TYPE_CHECKING:
    from fake_ci_api import FakeCiApi

Strata = Callable[..., Result]

STACK = 'resource "null_resource" "x" {\n  triggers = { word = var.word }\n}\nvariable "word" {\n  type = string\n}\n'
KEY = Fernet.generate_key().decode()
MAGIC = b"STRATA-PLANS 1\n"


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(cwd), "-c", "user.email=ci@example.invalid", "-c", "user.name=ci",
                           *args], capture_output=True, text=True, check=True).stdout.strip()


def make_repo(root: Path, files: dict[str, str]) -> Path:
    write_tree(root, files)
    git(root.parent, "init", "-q", "-b", "main", str(root))
    git(root, "add", "-A")
    git(root, "commit", "-qm", "the change under review")
    return root


@dataclass
class Clones:
    a: Path  # the pull request's checkout: plans, packs
    b: Path  # main's checkout of the same commit: unpacks, applies
    env: dict[str, str]

    @property
    def bundle(self) -> Path:
        return self.a.parent / "plans.bundle"

    def state(self, clone: Path) -> dict[str, Any] | None:
        path = clone / ".strata" / "state" / "dev/r/a" / "terraform.tfstate"
        return json.loads(path.read_text()) if path.is_file() else None


@pytest.fixture
def clones(tmp_path: Path, provider_mirror: dict[str, str], tf_111: str) -> Clones:
    a = make_repo(tmp_path / "a", {
        "strata.hcl": 'strata {}\nbackend "local" {}\n',
        "dev/r/a/strata.hcl": 'stack {}\ninputs = {\n  word = "one"\n}\n',
        "dev/r/a/main.tf": STACK,
    })
    subprocess.run(["git", "clone", "-q", str(a), str(tmp_path / "b")], check=True)
    return Clones(a, tmp_path / "b", {**provider_mirror, "STRATA_TERRAFORM": tf_111, "STRATA_PLAN_KEY": KEY})


def planned_and_packed(strata: Strata, c: Clones, *extra: str) -> None:
    assert strata("plan", "--out", "-q", cwd=c.a, env=c.env).code == 0
    packed = strata("ci", "plans", "pack", str(c.bundle), *extra, cwd=c.a, env=c.env)
    assert packed.code == 0, packed.output


def nothing_unpacked(clone: Path) -> bool:
    plans = clone / ".strata" / "plans"
    return not plans.exists() or not any(p.is_file() for p in plans.rglob("*"))


# -- the reviewed plan, applied in another checkout ----------------------------------------------------------


@pytest.mark.terraform
def test_a_plan_made_in_one_clone_is_applied_exactly_in_another(strata: Strata, clones: Clones) -> None:
    c = clones
    planned_and_packed(strata, c)
    bundle = c.bundle.read_bytes()
    assert bundle.startswith(MAGIC) and b"null_resource" not in bundle, "the plans travel encrypted"
    assert c.bundle.stat().st_mode & 0o777 == 0o600
    unpacked = strata("ci", "plans", "unpack", str(c.bundle), cwd=c.b, env=c.env)
    commit = git(c.a, "rev-parse", "HEAD")
    assert unpacked.code == 0 and "dev/r/a" in unpacked.stdout and commit[:12] in unpacked.stdout, unpacked.output
    plan = c.b / ".strata" / "plans" / "dev/r/a" / "plan.tfplan"
    assert plan.read_bytes() == (c.a / ".strata" / "plans" / "dev/r/a" / "plan.tfplan").read_bytes()
    assert plan.stat().st_mode & 0o777 == 0o600 and plan.parent.stat().st_mode & 0o777 == 0o700
    applied = strata("apply", "--plan", "--yes", "--json", cwd=c.b, env=c.env)
    assert applied.code == 0, applied.output
    report = json.loads(applied.stdout)
    assert report["stacks"][0]["plan_file"] and report["stacks"][0]["add"] == 1, report
    state = c.state(c.b)
    assert state is not None and state["resources"][0]["instances"][0]["attributes"]["triggers"] == {"word": "one"}
    assert not plan.exists(), "a saved plan is applied once"


@pytest.mark.terraform
def test_unpack_with_json_prints_the_manifest(strata: Strata, clones: Clones) -> None:
    c = clones
    planned_and_packed(strata, c)
    unpacked = strata("ci", "plans", "unpack", str(c.bundle), "--json", cwd=c.b, env=c.env)
    assert unpacked.code == 0, unpacked.output
    document = json.loads(unpacked.stdout)
    schema = json.loads((REPO / "docs" / "schemas" / "ci-plans.schema.json").read_text())
    jsonschema.Draft202012Validator(schema).validate(document)
    assert document["commit"] == git(c.a, "rev-parse", "HEAD") and document["encrypted"] is True
    assert [s["path"] for s in document["stacks"]] == ["dev/r/a"] and document["terraform"].startswith("Terraform 1.11")


@pytest.mark.terraform
def test_a_stack_whose_code_changed_since_the_plan_is_refused_as_stale(strata: Strata, clones: Clones) -> None:
    c = clones
    planned_and_packed(strata, c)
    assert strata("ci", "plans", "unpack", str(c.bundle), cwd=c.b, env=c.env).code == 0
    code = c.b / "dev/r/a/main.tf"
    code.write_text(code.read_text() + 'output "word" {\n  value = var.word\n}\n')
    refused = strata("apply", "--plan", "--yes", "-q", cwd=c.b, env=c.env)
    assert refused.code == 1 and "the saved plan of dev/r/a is stale" in refused.output, refused.output
    assert c.state(c.b) is None, "nothing applied"


@pytest.mark.terraform
def test_a_state_changed_since_the_plan_is_refused_as_stale(strata: Strata, clones: Clones) -> None:
    c = clones
    planned_and_packed(strata, c)
    assert strata("ci", "plans", "unpack", str(c.bundle), cwd=c.b, env=c.env).code == 0
    assert strata("apply", "--yes", "-q", cwd=c.b, env=c.env).code == 0  # someone applied meanwhile
    serial = c.state(c.b)["serial"]  # type: ignore[index]
    refused = strata("apply", "--plan", "--yes", "-q", cwd=c.b, env=c.env)
    assert refused.code == 1, refused.output
    assert "the saved plan of dev/r/a is stale: its state changed since the plan was made" in refused.output, \
        refused.output
    assert c.state(c.b)["serial"] == serial  # type: ignore[index]


@pytest.mark.terraform
def test_a_dependent_planned_with_outputs_a_dependency_then_changes_is_refused_as_stale(
        strata: Strata, tmp_path: Path, provider_mirror: dict[str, str], tf_111: str) -> None:
    root = make_repo(tmp_path / "chain", {
        "strata.hcl": 'strata {}\nbackend "local" {}\n',
        "dev/r/a/strata.hcl": 'stack {}\ninputs = {\n  word = "one"\n}\n',
        "dev/r/a/main.tf": 'variable "word" {\n  type = string\n}\noutput "word" {\n  value = var.word\n}\n',
        "dev/r/b/strata.hcl": 'stack {}\ndependency "a" {\n  path = "../a"\n}\n'
                              'inputs = {\n  word = dependency.a.outputs.word\n}\n',
        "dev/r/b/main.tf": STACK.replace('"x"', '"b"'),
    })
    env = {**provider_mirror, "STRATA_TERRAFORM": tf_111, "STRATA_PLAN_KEY": KEY}
    assert strata("apply", "--yes", "-q", cwd=root, env=env).code == 0
    config = root / "dev/r/a/strata.hcl"
    config.write_text(config.read_text().replace('"one"', '"two"'))
    assert strata("plan", "--out", "-q", cwd=root, env=env).code == 0  # b's plan: a's outputs as they are now
    assert strata("ci", "plans", "pack", "plans.bundle", cwd=root, env=env).code == 0
    assert strata("ci", "plans", "unpack", "plans.bundle", cwd=root, env=env).code == 0
    applied = strata("apply", "--plan", "--yes", "-q", cwd=root, env=env)
    assert applied.code == 1 and "the saved plan of dev/r/b is stale: its code or inputs changed" in applied.output
    assert re.search(r"dev/r/a\s+ok", applied.output), applied.output


# -- the key ----------------------------------------------------------------------------------------------------


def saved_plan(root: Path, stack: str = "dev/r/a", plan: bytes = b"a saved plan's bytes") -> None:
    """A saved plan and its record as `plan --out` leaves them (for the tests that need no terraform)."""
    folder = root / ".strata" / "plans" / stack
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "plan.tfplan").write_bytes(plan)
    record = {"stack": stack, "created": "2026-12-04T00:00:00Z", "mocked_dependencies": [],
              "config": hashlib.sha256(b"config").hexdigest(), "terraform": "Terraform 1.11.4 (/usr/bin/terraform)",
              "sha256": hashlib.sha256(plan).hexdigest()}
    (folder / "plan.json").write_text(json.dumps(record))


SMALL = {"strata.hcl": "strata {}\n", "dev/r/a/strata.hcl": "stack {}\n", "dev/r/a/main.tf": "\n"}


@pytest.fixture
def packed(tmp_path: Path, strata: Strata) -> tuple[Path, Path]:
    """A repository with a saved plan packed with KEY, and a clone of it without plans: (bundle, clone)."""
    a = make_repo(tmp_path / "a", SMALL)
    subprocess.run(["git", "clone", "-q", str(a), str(tmp_path / "b")], check=True)
    saved_plan(a)
    result = strata("ci", "plans", "pack", str(tmp_path / "plans.bundle"), cwd=a, env={"STRATA_PLAN_KEY": KEY})
    assert result.code == 0, result.output
    return tmp_path / "plans.bundle", tmp_path / "b"


def test_key_prints_a_fresh_key_that_packs(strata: Strata) -> None:
    one, two = strata("ci", "plans", "key"), strata("ci", "plans", "key")
    assert one.code == 0 and one.stdout.strip() != two.stdout.strip()
    Fernet(one.stdout.strip().encode())  # a valid key
    assert "STRATA_PLAN_KEY" in one.stderr


def test_pack_without_a_key_is_refused_unless_unencrypted(strata: Strata, tmp_path: Path) -> None:
    a = make_repo(tmp_path / "a", SMALL)
    saved_plan(a)
    refused = strata("ci", "plans", "pack", "plans.bundle", cwd=a, env={"STRATA_PLAN_KEY": ""})
    assert refused.code == 1 and "STRATA_PLAN_KEY is not set" in refused.stderr, refused.output
    assert "strata ci plans key" in refused.stderr and not (a / "plans.bundle").exists()
    bad = strata("ci", "plans", "pack", "plans.bundle", cwd=a, env={"STRATA_PLAN_KEY": "hunter2"})
    assert bad.code == 1 and "is not a key made by `strata ci plans key`" in bad.stderr, bad.output
    plain = strata("ci", "plans", "pack", "plans.bundle", "--unencrypted", cwd=a, env={"STRATA_PLAN_KEY": ""})
    assert plain.code == 0 and "NOT encrypted" in plain.stderr, plain.output
    b = tmp_path / "b"
    subprocess.run(["git", "clone", "-q", str(a), str(b)], check=True)
    unasked = strata("ci", "plans", "unpack", str(a / "plans.bundle"), cwd=b)
    assert unasked.code == 1 and "is not encrypted" in unasked.stderr and "--unencrypted" in unasked.stderr
    assert nothing_unpacked(b)
    assert strata("ci", "plans", "unpack", str(a / "plans.bundle"), "--unencrypted", cwd=b).code == 0
    assert (b / ".strata/plans/dev/r/a/plan.tfplan").read_bytes() == b"a saved plan's bytes"


def test_pack_with_no_saved_plan_packs_a_bundle_with_nothing_to_apply(strata: Strata, tmp_path: Path) -> None:
    a = make_repo(tmp_path / "a", SMALL)
    # a pull request that changes no stack: its pipeline packs an empty bundle, main unpacks nothing
    empty = strata("ci", "plans", "pack", "plans.bundle", cwd=a, env={"STRATA_PLAN_KEY": KEY})
    assert empty.code == 0 and "nothing to apply" in empty.stderr and "strata plan --out" in empty.stderr, empty.output
    unpacked = strata("ci", "plans", "unpack", "plans.bundle", "--json", cwd=a, env={"STRATA_PLAN_KEY": KEY})
    assert unpacked.code == 0 and json.loads(unpacked.stdout)["stacks"] == [], unpacked.output


def test_pack_refuses_a_plan_that_is_not_the_one_its_record_names(strata: Strata, tmp_path: Path) -> None:
    a = make_repo(tmp_path / "a", SMALL)
    saved_plan(a)
    (a / ".strata/plans/dev/r/a/plan.tfplan").write_bytes(b"another plan")
    refused = strata("ci", "plans", "pack", "plans.bundle", cwd=a, env={"STRATA_PLAN_KEY": KEY})
    assert refused.code == 1 and "is not the one `strata plan --out` made" in refused.stderr, refused.output


def test_a_wrong_or_missing_key_is_refused_and_nothing_is_written(strata: Strata, packed: tuple[Path, Path]) -> None:
    bundle, b = packed
    wrong = strata("ci", "plans", "unpack", str(bundle), cwd=b, env={"STRATA_PLAN_KEY": Fernet.generate_key().decode()})
    assert wrong.code == 1 and "cannot decrypt" in wrong.stderr and "not the key it was packed with" in wrong.stderr
    missing = strata("ci", "plans", "unpack", str(bundle), cwd=b, env={"STRATA_PLAN_KEY": ""})
    assert missing.code == 1 and "set STRATA_PLAN_KEY" in missing.stderr, missing.output
    assert nothing_unpacked(b)


def test_a_tampered_bundle_is_refused_and_nothing_is_written(strata: Strata, packed: tuple[Path, Path],
                                                             tmp_path: Path) -> None:
    bundle, b = packed
    raw = bundle.read_bytes()
    flipped = tmp_path / "flipped.bundle"
    flipped.write_bytes(raw[:-10] + bytes([raw[-10] ^ 1]) + raw[-9:])
    result = strata("ci", "plans", "unpack", str(flipped), cwd=b, env={"STRATA_PLAN_KEY": KEY})
    assert result.code == 1 and "changed since it was packed" in result.stderr, result.output
    header_line = raw[len(MAGIC):].split(b"\n", 1)[0]
    header = json.loads(header_line)
    relabelled = tmp_path / "relabelled.bundle"
    relabelled.write_bytes(raw.replace(header_line, json.dumps({**header, "commit": "f" * 40}).encode(), 1))
    result = strata("ci", "plans", "unpack", str(relabelled), cwd=b, env={"STRATA_PLAN_KEY": KEY})
    assert result.code == 1 and "header does not match its manifest" in result.stderr, result.output
    for name, content in (("empty.bundle", b""), ("text.bundle", b"hello\n"), ("cut.bundle", MAGIC + b"{")):
        (tmp_path / name).write_bytes(content)
        result = strata("ci", "plans", "unpack", str(tmp_path / name), cwd=b, env={"STRATA_PLAN_KEY": KEY})
        assert result.code == 1 and "bundle" in result.stderr, result.output
    missing = strata("ci", "plans", "unpack", str(tmp_path / "nope.bundle"), cwd=b, env={"STRATA_PLAN_KEY": KEY})
    assert missing.code == 1 and "is not a file" in missing.stderr
    assert nothing_unpacked(b)


def reseal(bundle: Path, target: Path, change: Callable[[dict[str, bytes], dict[str, Any]], None],
           links: dict[str, str] | None = None) -> Path:
    """The bundle decrypted, changed by someone who holds the key (or a bundle made by hand), sealed again."""
    raw = bundle.read_bytes()
    header_line, payload = raw[len(MAGIC):].split(b"\n", 1)
    with tarfile.open(fileobj=io.BytesIO(Fernet(KEY.encode()).decrypt(payload))) as archive:
        members = {i.name: archive.extractfile(i).read() for i in archive}  # type: ignore[union-attr]
    manifest = json.loads(members["manifest.json"])
    change(members, manifest)
    members["manifest.json"] = json.dumps(manifest).encode()
    header = json.loads(header_line)
    header.update({k: manifest[k] for k in header if k in manifest})
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, link in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, link
            archive.addfile(info)
    target.write_bytes(MAGIC + json.dumps(header).encode() + b"\n" + Fernet(KEY.encode()).encrypt(buffer.getvalue()))
    return target


def test_members_outside_the_plans_links_and_extras_are_refused(strata: Strata, packed: tuple[Path, Path],
                                                                 tmp_path: Path) -> None:
    bundle, b = packed

    def escape(members: dict[str, bytes], _manifest: dict[str, Any]) -> None:
        members["plans/../../../escaped"] = b"x"

    def extra(members: dict[str, bytes], _manifest: dict[str, Any]) -> None:
        members["plans/dev/r/a/notes.txt"] = b"x"

    def other_stack(members: dict[str, bytes], manifest: dict[str, Any]) -> None:
        manifest["stacks"]["../../etc"] = manifest["stacks"]["dev/r/a"]
        members["plans/../../etc/plan.tfplan"] = members["plans/dev/r/a/plan.tfplan"]

    def swapped(members: dict[str, bytes], _manifest: dict[str, Any]) -> None:
        members["plans/dev/r/a/plan.tfplan"] = b"another plan"

    cases = [(reseal(bundle, tmp_path / "escape.bundle", escape), "points outside the plans folder"),
             (reseal(bundle, tmp_path / "extra.bundle", extra), "is not a plan the manifest lists"),
             (reseal(bundle, tmp_path / "link.bundle", lambda m, _: None, {"plans/dev/r/a/x": "/etc/passwd"}),
              "is not a regular file"),
             (reseal(bundle, tmp_path / "stack.bundle", other_stack), "points outside the plans folder"),
             (reseal(bundle, tmp_path / "swapped.bundle", swapped), "does not have the sha256 its manifest lists")]
    for crafted, said in cases:
        result = strata("ci", "plans", "unpack", str(crafted), cwd=b, env={"STRATA_PLAN_KEY": KEY})
        assert result.code == 1 and said in result.stderr, (crafted.name, result.output)
    assert nothing_unpacked(b) and not (tmp_path.parent / "escaped").exists()


def test_a_bundle_of_another_repository_or_unknown_stacks_is_refused(strata: Strata, packed: tuple[Path, Path],
                                                                     tmp_path: Path) -> None:
    bundle, b = packed

    def renamed(members: dict[str, bytes], manifest: dict[str, Any]) -> None:
        manifest["repository"] = "acme/other"

    def unknown(members: dict[str, bytes], manifest: dict[str, Any]) -> None:
        manifest["stacks"]["prod/r/z"] = manifest["stacks"].pop("dev/r/a")
        members["plans/prod/r/z/plan.tfplan"] = members.pop("plans/dev/r/a/plan.tfplan")
        record = json.loads(members.pop("plans/dev/r/a/plan.json"))
        members["plans/prod/r/z/plan.json"] = json.dumps({**record, "stack": "prod/r/z"}).encode()

    env = {"STRATA_PLAN_KEY": KEY, "GITHUB_REPOSITORY": "acme/infra"}
    other = strata("ci", "plans", "unpack", str(reseal(bundle, tmp_path / "other.bundle", renamed)), cwd=b, env=env)
    assert other.code == 1 and "repository acme/other, and this is acme/infra" in other.stderr, other.output
    stacks = strata("ci", "plans", "unpack", str(reseal(bundle, tmp_path / "unknown.bundle", unknown)), cwd=b, env=env)
    assert stacks.code == 1 and "prod/r/z, which is not a stack of this repository" in stacks.stderr, stacks.output
    assert nothing_unpacked(b)


# -- fetch: a fake GitHub / GitLab API on 127.0.0.1 --------------------------------------------------------------
# (tests/fake_ci_api.py; the routes below are fetch's endpoints)


@pytest.fixture
def api(fake_ci_api: FakeCiApi) -> FakeCiApi:
    return fake_ci_api


@dataclass
class Pipeline:
    """The PR pipeline packed in A (its event names the PR's head); main's checkout B has merged it."""

    a: Path
    b: Path
    head: str  # the PR's last commit
    merge: str  # main's HEAD: the merge commit
    bundle: bytes


@pytest.fixture
def pipeline(tmp_path: Path, strata: Strata) -> Pipeline:
    a = make_repo(tmp_path / "a", SMALL)
    head = git(a, "rev-parse", "HEAD")
    saved_plan(a)
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 7, "head": {"sha": head}}}))
    packed = strata("ci", "plans", "pack", "plans.bundle", cwd=a,
                    env={"STRATA_PLAN_KEY": KEY, "GITHUB_ACTIONS": "true", "GITHUB_SHA": "",
                         "GITHUB_EVENT_PATH": str(event), "GITHUB_REPOSITORY": "acme/infra"})
    assert packed.code == 0, packed.output
    b = tmp_path / "b"
    subprocess.run(["git", "clone", "-q", str(a), str(b)], check=True)
    git(b, "commit", "--allow-empty", "-qm", "Merge pull request #7")
    return Pipeline(a, b, head, git(b, "rev-parse", "HEAD"), (a / "plans.bundle").read_bytes())


def github(api: FakeCiApi, p: Pipeline, *, expired: bool = False, head: str | None = None) -> dict[str, str]:
    """The merged PR #7 and its artifact, whose zip is served through a redirect as GitHub does."""
    api.route("GET", rf"/repos/acme/infra/commits/{p.merge}/pulls", lambda _r, _m: Reply(200, [
        {"number": 7, "merged_at": "2026-12-04T01:00:00Z", "merge_commit_sha": p.merge, "head": {"sha": p.head}}]))
    artifacts = [{"id": 11, "name": "strata-plans-7", "expired": False, "created_at": "2026-12-03T00:00:00Z",
                  "archive_download_url": f"{api.url}/repos/acme/infra/actions/artifacts/11/zip",
                  "workflow_run": {"head_sha": "0" * 40}},
                 {"id": 12, "name": "strata-plans-7", "expired": expired, "created_at": "2026-12-04T00:00:00Z",
                  "archive_download_url": f"{api.url}/repos/acme/infra/actions/artifacts/12/zip",
                  "workflow_run": {"head_sha": head or p.head}}]
    api.route("GET", r"/repos/acme/infra/actions/artifacts",
              lambda r, _m: Reply(200, {"total_count": 2, "artifacts": artifacts if r.query.get("name") ==
                                        "strata-plans-7" else []}))
    api.route("GET", r"/repos/acme/infra/actions/artifacts/(\d+)/zip",
              lambda _r, m: Reply(302, b"", {"Location": f"{api.url}/blob/{m[1]}?sig=signed"}))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("plans.bundle", p.bundle)
    api.route("GET", r"/blob/12", lambda _r, _m: Reply(200, archive.getvalue()))
    return {"GITHUB_ACTIONS": "true", "GITHUB_API_URL": api.url, "GITHUB_REPOSITORY": "acme/infra",
            "GITHUB_TOKEN": "ghs_secret_token", "STRATA_PLAN_KEY": KEY}


def test_github_fetch_downloads_the_artifact_of_the_merged_prs_last_commit(strata: Strata, api: FakeCiApi,
                                                                           pipeline: Pipeline) -> None:
    p = pipeline
    env = github(api, p)
    fetched = strata("ci", "plans", "fetch", "plans.bundle", cwd=p.b, env=env)
    assert fetched.code == 0 and "pull request #7" in fetched.stderr, fetched.output
    assert (p.b / "plans.bundle").read_bytes() == p.bundle
    blob = [r for r in api.requests if r.path.startswith("/blob/")]
    assert blob and "authorization" not in blob[0].headers, "the token never goes where a download redirects"
    assert all(r.headers.get("authorization") == "Bearer ghs_secret_token" for r in api.requests if r not in blob)
    unpacked = strata("ci", "plans", "unpack", "plans.bundle", cwd=p.b, env=env)
    assert unpacked.code == 0 and p.head[:12] in unpacked.stdout, unpacked.output


def test_github_fetch_without_a_reviewed_plan_exits_3(strata: Strata, api: FakeCiApi, pipeline: Pipeline) -> None:
    p = pipeline
    env = github(api, p)
    api.route("GET", rf"/repos/acme/infra/commits/{p.merge}/pulls", lambda _r, _m: Reply(200, []))
    direct = strata("ci", "plans", "fetch", "plans.bundle", cwd=p.b, env=env)
    assert direct.code == 3 and "not the merge of a pull request" in direct.stderr, direct.output
    env = github(api, p, expired=True)
    expired = strata("ci", "plans", "fetch", "plans.bundle", cwd=p.b, env=env)
    assert expired.code == 3 and "has expired" in expired.stderr, expired.output
    env = github(api, p, head="e" * 40)
    unplanned = strata("ci", "plans", "fetch", "plans.bundle", cwd=p.b, env=env)
    assert unplanned.code == 3 and "no artifact strata-plans-7 from the last commit" in unplanned.stderr
    assert not (p.b / "plans.bundle").exists()


def test_github_fetch_errors_exit_1_with_the_reason(strata: Strata, api: FakeCiApi, pipeline: Pipeline) -> None:
    p = pipeline
    env = github(api, p)
    api.answer("GET", rf"/repos/acme/infra/commits/{p.merge}/pulls", 500, {"message": "boom"})
    failed = strata("ci", "plans", "fetch", "plans.bundle", cwd=p.b, env=env)
    assert failed.code == 1 and "HTTP 500" in failed.stderr and "ghs_secret_token" not in failed.output
    api.answer("GET", rf"/repos/acme/infra/commits/{p.merge}/pulls", 404, {"message": "Not Found"})
    missing = strata("ci", "plans", "fetch", "plans.bundle", cwd=p.b, env=env)
    assert missing.code == 1 and "HTTP 404" in missing.stderr, missing.output
    api.answer("GET", rf"/repos/acme/infra/commits/{p.merge}/pulls", 200, b"<html>")
    garbage = strata("ci", "plans", "fetch", "plans.bundle", cwd=p.b, env=env)
    assert garbage.code == 1 and "did not answer JSON" in garbage.stderr, garbage.output
    github(api, p)
    api.answer("GET", r"/blob/12", 200, b"not a zip")
    broken = strata("ci", "plans", "fetch", "plans.bundle", cwd=p.b, env=env)
    assert broken.code == 1 and "not a readable zip archive" in broken.stderr, broken.output
    no_token = strata("ci", "plans", "fetch", "plans.bundle", cwd=p.b, env={**env, "GITHUB_TOKEN": ""})
    assert no_token.code == 1 and "GITHUB_TOKEN is not set" in no_token.stderr, no_token.output
    nowhere = strata("ci", "plans", "fetch", "plans.bundle", cwd=p.b, env={**env, "GITHUB_API_URL": "http://127.0.0.1:9"})
    assert nowhere.code == 1 and "check the API URL" in nowhere.stderr, nowhere.output
    assert not (p.b / "plans.bundle").exists()


def gitlab(api: FakeCiApi, p: Pipeline, *, mr_head: str | None = None) -> dict[str, str]:
    base = "/api/v4/projects/42"
    api.route("GET", rf"{base}/repository/commits/{p.merge}/merge_requests", lambda _r, _m: Reply(200, [
        {"iid": 5, "state": "merged", "sha": mr_head or p.head, "merge_commit_sha": p.merge}]))
    api.route("GET", rf"{base}/jobs/artifacts/refs/merge-requests/5/head/raw/plans.bundle",
              lambda r, _m: Reply(200, p.bundle) if r.query.get("job") == "plan" else Reply(404, {}))
    return {"GITLAB_CI": "true", "CI_API_V4_URL": f"{api.url}/api/v4", "CI_PROJECT_ID": "42",
            "STRATA_GITLAB_TOKEN": "glpat-secret", "STRATA_PLAN_KEY": KEY}


def test_gitlab_fetch_downloads_the_plan_jobs_artifact_of_the_merged_mr(strata: Strata, api: FakeCiApi,
                                                                        pipeline: Pipeline) -> None:
    p = pipeline
    env = gitlab(api, p)
    fetched = strata("ci", "plans", "fetch", "plans.bundle", cwd=p.b, env=env)
    assert fetched.code == 0 and "merge request !5" in fetched.stderr, fetched.output
    assert (p.b / "plans.bundle").read_bytes() == p.bundle
    assert all(r.headers.get("private-token") == "glpat-secret" for r in api.requests)


def test_gitlab_fetch_without_a_reviewed_plan_exits_3(strata: Strata, api: FakeCiApi, pipeline: Pipeline) -> None:
    p = pipeline
    env = gitlab(api, p, mr_head="d" * 40)  # the MR's last commit is not the one whose plan the job kept
    stale = strata("ci", "plans", "fetch", "plans.bundle", cwd=p.b, env=env)
    assert stale.code == 3 and "the last commit's plan did not finish" in stale.stderr, stale.output
    env = gitlab(api, p)
    api.answer("GET", r"/api/v4/projects/42/jobs/artifacts/.*", 404, {"message": "404 Not Found"})
    expired = strata("ci", "plans", "fetch", "plans.bundle", cwd=p.b, env=env)
    assert expired.code == 3 and "no artifact plans.bundle of a successful job plan" in expired.stderr
    api.answer("GET", rf"/api/v4/projects/42/repository/commits/{p.merge}/merge_requests", 200,
               [{"iid": 6, "state": "opened", "sha": p.merge}])
    direct = strata("ci", "plans", "fetch", "plans.bundle", cwd=p.b, env=env)
    assert direct.code == 3 and "not the merge of a merge request" in direct.stderr, direct.output
    api.answer("GET", rf"/api/v4/projects/42/repository/commits/{p.merge}/merge_requests", 500, {})
    failed = strata("ci", "plans", "fetch", "plans.bundle", cwd=p.b, env=env)
    assert failed.code == 1 and "HTTP 500" in failed.stderr and "glpat-secret" not in failed.output
    assert not (p.b / "plans.bundle").exists()


def test_azure_devops_and_unknown_platforms(strata: Strata, pipeline: Pipeline) -> None:
    azure = strata("ci", "plans", "fetch", "plans.bundle", cwd=pipeline.b, env={"TF_BUILD": "True"})
    assert azure.code == 3 and "Azure DevOps does not carry a plan" in azure.stderr, azure.output
    unknown = strata("ci", "plans", "fetch", "plans.bundle", cwd=pipeline.b,
                     env={"GITHUB_ACTIONS": "", "GITLAB_CI": "", "TF_BUILD": ""})
    assert unknown.code == 64 and "--platform" in unknown.stderr, unknown.output


def test_unpack_refuses_a_plans_folder_that_is_a_link(strata: Strata, packed: tuple[Path, Path],
                                                      tmp_path: Path) -> None:
    bundle, b = packed
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (b / ".strata").mkdir()
    (b / ".strata" / "plans").symlink_to(elsewhere)
    result = strata("ci", "plans", "unpack", str(bundle), cwd=b, env={"STRATA_PLAN_KEY": KEY})
    assert result.code == 1 and "is a symbolic link" in result.stderr, result.output
    assert list(elsewhere.iterdir()) == []
