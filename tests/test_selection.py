"""Unit tests of strata.model.selection: path prefixes, globs, dimension filters, the working directory."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import write_tree
from strata.errors import UsageError
from strata.model.loader import load
from strata.model.repository import Repository
from strata.model.selection import Selection

FILES = {
    "strata.hcl": 'strata {}\nbackend "s3" {\n  bucket = "b-${strata.environment}"\n  region = "us-east-1"\n'
                  "  encrypt = true\n}\n",
    "production/strata.hcl": 'account_id = "111111111111"\n',
    "production/us-east-1/01-foundation/strata.hcl": 'stack {\n  tags = ["network", "core"]\n}\n',
    "production/us-east-1/02-platform/strata.hcl": 'stack {\n  tags = ["core"]\n}\n',
    "production/eu-west-1/01-foundation/strata.hcl": "stack {}\n",
    "production/us-east-1/clients/ezra/strata.hcl": "stack {}\n",
    "staging/strata.hcl": 'account_id = "222222222222"\n',
    "staging/us-east-1/01-foundation/strata.hcl": "stack {}\n",
    "staging/us-east-1/02-platform/strata.hcl": "stack {}\n",
    "gcp-stacks/strata.hcl": 'backend "gcs" {\n  bucket = "g"\n}\n',
    "gcp-stacks/dev/europe-west1/01-net/strata.hcl": "stack {}\n",
}


@pytest.fixture
def repo(tmp_path: Path) -> Repository:
    write_tree(tmp_path, FILES)
    loaded = load(tmp_path, tmp_path)
    assert loaded.errors == []
    return loaded


def select(repo: Repository, cwd: Path | None = None, **kwargs: Any) -> list[str]:
    return [s.path for s in Selection(**kwargs).apply(repo, cwd or repo.root)]


ALL = sorted(
    path.removesuffix("/strata.hcl") for path, text in FILES.items() if text.startswith("stack")
)


def test_no_filter_selects_every_stack_sorted(repo: Repository) -> None:
    assert select(repo) == ALL


def test_path_prefix(repo: Repository) -> None:
    assert select(repo, paths=["production/us-east-1"]) == [
        "production/us-east-1/01-foundation", "production/us-east-1/02-platform",
        "production/us-east-1/clients/ezra"]
    assert select(repo, paths=["production/us-east-1/", "staging/us-east-1/02-platform"]) == [
        "production/us-east-1/01-foundation", "production/us-east-1/02-platform",
        "production/us-east-1/clients/ezra", "staging/us-east-1/02-platform"]


def test_a_prefix_matches_whole_folder_names_only(repo: Repository) -> None:
    with pytest.raises(UsageError, match="no stacks under 'production/us-east'"):
        select(repo, paths=["production/us-east"])


def test_globs(repo: Repository) -> None:
    assert select(repo, paths=["*/us-east-1/01-*"]) == [
        "production/us-east-1/01-foundation", "staging/us-east-1/01-foundation"]
    assert select(repo, paths=["production/*/01-foundation"]) == [
        "production/eu-west-1/01-foundation", "production/us-east-1/01-foundation"]


def test_dimension_filters(repo: Repository) -> None:
    assert select(repo, environments=["staging"]) == [
        "staging/us-east-1/01-foundation", "staging/us-east-1/02-platform"]
    assert select(repo, regions=["eu-west-1"]) == ["production/eu-west-1/01-foundation"]
    assert select(repo, clients=["ezra"]) == ["production/us-east-1/clients/ezra"]
    assert select(repo, clouds=["gcp"]) == ["gcp-stacks/dev/europe-west1/01-net"]
    assert select(repo, accounts=["222222222222"]) == [
        "staging/us-east-1/01-foundation", "staging/us-east-1/02-platform"]
    assert select(repo, environments=["production", "staging"], layers=["02-platform"]) == [
        "production/us-east-1/02-platform", "staging/us-east-1/02-platform"]


def test_a_layer_may_be_named_without_its_number(repo: Repository) -> None:
    assert select(repo, layers=["platform"]) == ["production/us-east-1/02-platform", "staging/us-east-1/02-platform"]
    assert select(repo, layers=["foundation"], environments=["production"], regions=["us-east-1"]) == [
        "production/us-east-1/01-foundation"]
    assert select(repo, layers=["form"], allow_empty=True) == []
    # only layers are matched loosely
    assert select(repo, environments=["prod"], allow_empty=True) == []


def test_tags(repo: Repository) -> None:
    assert select(repo, tags=["core"]) == ["production/us-east-1/01-foundation", "production/us-east-1/02-platform"]
    assert select(repo, tags=["network", "nothing"], allow_empty=True) == ["production/us-east-1/01-foundation"]
    assert select(repo, tags=["nothing"], allow_empty=True) == []


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"environments": ["prodution"]},
     "--env prodution: no environment 'prodution' in this repository (did you mean 'production'?); "
     "environments here: dev, production, staging"),
    ({"regions": ["us-east1"]}, "--region us-east1: no region 'us-east1' in this repository (did you mean 'us-east-1'"),
    ({"layers": ["platfrom"]}, "(did you mean 'platform' or '02-platform'?); layers here: 01-foundation, 01-net, "
                               "02-platform"),
    ({"clients": ["ezar"]}, "--client ezar: no client 'ezar' in this repository (did you mean 'ezra'?)"),
    ({"tags": ["networks"]}, "--tag networks: no tag 'networks' in this repository (did you mean 'network'?)"),
    ({"tags": ["network", "nothing"]}, "no tag 'nothing'"),  # one typo among several values is still a typo
    ({"paths": ["production/*/clints/*"]},
     "no stack matches the pattern 'production/*/clints/*' (did you mean 'production/us-east-1/clients/ezra'"),
    ({"paths": ["production/us-east-2"]},
     "no stacks under 'production/us-east-2' (did you mean 'production/us-east-1'"),
    ({"environments": ["staging"], "clients": ["ezra"]},
     "no stack matches --env staging --client ezra (run `strata ls` to see the stacks; --allow-empty to accept"),
])
def test_a_selection_that_matches_nothing_is_a_typo_with_the_nearest_names(
        repo: Repository, kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError) as raised:
        select(repo, **kwargs)
    assert message in raised.value.message
    assert raised.value.exit_code == 64
    if kwargs != {"tags": ["network", "nothing"]}:
        assert select(repo, **kwargs, allow_empty=True) == []  # --allow-empty: nothing, successfully


def test_a_changed_selection_may_be_empty(repo: Repository) -> None:
    """With --changed, nothing affected is an answer, not a typo (a pull request that touches no stack)."""
    selection = Selection(changed=True, environments=["staging"])
    selection.change_set = type("Changes", (), {"affected": {}})()
    assert selection.apply(repo, repo.root) == []


def test_paths_and_filters_combine(repo: Repository) -> None:
    assert select(repo, paths=["production"], layers=["01-foundation"], regions=["us-east-1"]) == [
        "production/us-east-1/01-foundation"]


def test_from_a_sub_folder_only_the_stacks_below_it_are_selected(repo: Repository) -> None:
    here = repo.root / "production" / "us-east-1"
    assert select(repo, cwd=here) == [
        "production/us-east-1/01-foundation", "production/us-east-1/02-platform",
        "production/us-east-1/clients/ezra"]
    assert select(repo, cwd=here, all=True) == ALL
    # paths are relative to the working directory first, then to the repository root
    assert select(repo, cwd=here, paths=["clients"]) == ["production/us-east-1/clients/ezra"]
    assert select(repo, cwd=here, paths=["staging/us-east-1"]) == [
        "staging/us-east-1/01-foundation", "staging/us-east-1/02-platform"]


def test_paths_outside_the_repository_or_without_stacks_are_usage_errors(repo: Repository) -> None:
    with pytest.raises(UsageError, match="outside the repository"):
        select(repo, paths=["../.."])
    with pytest.raises(UsageError, match="no stacks under 'nope'"):
        select(repo, paths=["nope"])


def test_resolve_stack(repo: Repository) -> None:
    assert repo.resolve_stack("production/us-east-1/01-foundation", repo.root).path == (
        "production/us-east-1/01-foundation")
    here = repo.root / "production" / "us-east-1"
    assert repo.resolve_stack("02-platform", here).path == "production/us-east-1/02-platform"
    assert repo.resolve_stack(".", here / "02-platform").path == "production/us-east-1/02-platform"
    assert repo.resolve_stack("staging/us-east-1/02-platform/", here).path == "staging/us-east-1/02-platform"
    with pytest.raises(UsageError, match="no stack at 'production'"):
        repo.resolve_stack("production", repo.root)
    with pytest.raises(UsageError, match=r"no stack at 'production/us-east-1/01-fundation' \(did you mean "
                                         r"'production/us-east-1/01-foundation'"):
        repo.resolve_stack("production/us-east-1/01-fundation", repo.root)


def test_a_typo_on_the_command_line_exits_64_before_anything_runs(strata: Any, tmp_path: Path) -> None:
    write_tree(tmp_path, FILES)
    for args in (["apply", "--env", "prodution", "--yes"], ["plan", "--layer", "platfrom"],
                 ["ls", "production/*/clints/*"], ["render", "production/us-east-1/01-fundation"],
                 ["destroy", "staging/us-east-2", "--yes"]):
        result = strata(*args, cwd=tmp_path)
        assert result.code == 64, (args, result.output)
        assert "did you mean" in result.stderr, (args, result.stderr)
    assert strata("ls", "prod*/x*", cwd=tmp_path).code == 64
    assert not (tmp_path / ".strata" / "logs").exists()  # nothing ran
    empty = strata("apply", "--env", "prodution", "--yes", "--allow-empty", cwd=tmp_path)
    assert empty.code == 0 and "no stacks selected" in empty.output, empty.output
    from_env = strata("ls", "--env", "prodution", cwd=tmp_path, env={"STRATA_ALLOW_EMPTY": "1"})
    assert from_env.code == 0, from_env.output
