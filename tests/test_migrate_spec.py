"""The migration file (src/strata/migrate/spec.py): decoding, and every mistake reported at its file:line.

Real files in tmp_path, read by the real parser; no terraform needed.
"""

from __future__ import annotations

import fnmatch
import re
import textwrap
from pathlib import Path

import pytest

from strata.errors import ConfigError, ProblemsFound, Source
from strata.migrate.spec import (
    Migration,
    glob_regex,
    is_literal_pattern,
    is_module_path,
    load_migration,
    parse_address,
    rename_problem,
)

DISPLAY = "migrations/2026-01-split.hcl"


def load(tmp_path: Path, text: str) -> Migration:
    path = tmp_path / "2026-01-split.hcl"
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return load_migration(path, DISPLAY)


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ProblemsFound) as info:
        load(tmp_path, text)
    return [str(d) for d in info.value.diagnostics]


VALID = r'''
migration {
  description = "Split the production monolith into layers"
}

source {
  stack = "legacy/production"
}

move "foundation" {
  resources = [
    "module.vpc",
    "null_resource.dns_zone",
    "module.eks.null_resource.node_*",
  ]
  regex  = ["^module\\.network\\..*$"]
  to     = "production/us-east-1/01-foundation"
  rename = { "module.vpc" = "", "module.eks" = "module.cluster" }
}

move "apps" {
  resources = ["null_resource.app"]
  to        = "production/us-east-1/04-applications/"
  rename    = { "null_resource.app" = "null_resource.application" }
}

keep "leftovers" {
  resources = ["null_resource.legacy_*"]
}
'''


def test_a_complete_file_decodes_with_lines(tmp_path: Path) -> None:
    m = load(tmp_path, VALID)
    assert m.name == "2026-01-split"
    assert m.file == DISPLAY
    assert m.description == "Split the production monolith into layers"
    assert m.source.stack == "legacy/production"
    assert m.source.backend_type is None and m.source.backend_values == {}
    assert m.source.source == Source(DISPLAY, 6)
    assert [r.name for r in m.rules] == ["foundation", "apps", "leftovers"]
    found, apps, keep = m.rules
    assert found.kind == "move"
    assert found.patterns == ("module.vpc", "null_resource.dns_zone", "module.eks.null_resource.node_*")
    assert found.regexes == (r"^module\.network\..*$",)
    assert found.target == "production/us-east-1/01-foundation"
    assert found.rename == (("module.vpc", ""), ("module.eks", "module.cluster"))
    assert found.source == Source(DISPLAY, 9)
    assert found.target_source == Source(DISPLAY, 16)
    assert apps.target == "production/us-east-1/04-applications"  # a trailing slash is not part of the path
    assert apps.rename == (("null_resource.app", "null_resource.application"),)
    assert keep.kind == "keep" and keep.target is None and keep.rename == () and keep.regexes == ()
    assert keep.patterns == ("null_resource.legacy_*",)
    assert keep.source == Source(DISPLAY, 26)
    assert m.targets == ["production/us-east-1/01-foundation", "production/us-east-1/04-applications"]


def test_migration_block_is_optional_and_functions_work(tmp_path: Path) -> None:
    m = load(tmp_path, '''
        source { stack = lower("Legacy/Production") }
        move "all" {
          resources = [format("module.%s", "vpc")]
          to        = join("/", ["production", "01-foundation"])
          rename    = { module.vpc = "" }
        }
    ''')
    assert m.description == ""
    assert m.source.stack == "legacy/production"
    assert m.rules[0].patterns == ("module.vpc",)
    assert m.rules[0].target == "production/01-foundation"
    assert m.rules[0].rename == (("module.vpc", ""),)  # an unquoted address key is taken as written


def test_a_backend_source(tmp_path: Path) -> None:
    m = load(tmp_path, '''
        source {
          backend "local" {
            path = "legacy/terraform.tfstate"
          }
        }
        keep "all" { regex = [".*"] }
    ''')
    assert m.source.stack is None
    assert m.source.backend_type == "local"
    assert m.source.backend_values == {"path": "legacy/terraform.tfstate"}
    assert m.source.source == Source(DISPLAY, 2)


def test_an_s3_backend_source_keeps_its_values(tmp_path: Path) -> None:
    m = load(tmp_path, '''
        source {
          backend "s3" {
            bucket  = "acme-tfstate"
            key     = "legacy/production.tfstate"
            region  = "us-east-1"
            encrypt = true
          }
        }
        keep "all" { resources = ["*"] }
    ''')
    assert m.source.backend_type == "s3"
    assert m.source.backend_values == {"bucket": "acme-tfstate", "key": "legacy/production.tfstate",
                                       "region": "us-east-1", "encrypt": True}


# -- errors, each at its file:line ------------------------------------------------------------------------


HEAD = 'source { stack = "legacy" }\n'


def test_unknown_block(tmp_path: Path) -> None:
    assert problems(tmp_path, HEAD + 'mv "x" {\n  to = "a"\n}\nkeep "k" { resources = ["*"] }\n') == [
        f"{DISPLAY}:2: error: unknown block 'mv' in a migration file; did you mean 'move'?"]


def test_unknown_attribute_in_a_rule(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + 'move "x" {\n  resources = ["a.b"]\n  too = "a"\n  to = "b"\n}\n')
    assert out == [f"{DISPLAY}:4: error: unknown attribute 'too' in move \"x\"; did you mean 'to'?"]


def test_attributes_at_the_top_are_refused(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + 'to = "x"\nkeep "k" { resources = ["*"] }\n')
    assert len(out) == 1 and out[0].startswith(f"{DISPLAY}:2: error: unknown attribute 'to' in a migration file")


def test_a_keep_rule_takes_no_target(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + 'keep "k" {\n  resources = ["*"]\n  to = "x"\n}\n')
    assert out == [f"{DISPLAY}:4: error: unknown attribute 'to' in keep \"k\" (allowed: regex, resources)"]


def test_a_move_without_to(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + '\nmove "db" {\n  resources = ["module.db"]\n}\n')
    assert out == [f'{DISPLAY}:3: error: move "db" needs to = "<stack path>": the stack its resources move to']


def test_a_rule_that_matches_nothing(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + 'move "db" {\n  to = "x"\n}\n')
    assert out == [f'{DISPLAY}:2: error: move "db" needs resources = [...] or regex = [...]: it matches nothing']


def test_both_stack_and_backend(tmp_path: Path) -> None:
    out = problems(tmp_path, '# header\nsource {\n  stack = "legacy"\n  backend "local" {\n    path = "x"\n  }\n}\n'
                             'keep "k" { resources = ["*"] }\n')
    assert out == [f"{DISPLAY}:2: error: the source block sets both stack (line 3) and a backend block (line 4): "
                   "keep one"]


def test_no_source(tmp_path: Path) -> None:
    out = problems(tmp_path, 'keep "k" {\n  resources = ["*"]\n}\n')
    assert out == [f'{DISPLAY}:1: error: no source block: say which state to split, e.g. source {{ stack = '
                   '"legacy/production" }']


def test_an_empty_source_block(tmp_path: Path) -> None:
    out = problems(tmp_path, '# the state\nsource {\n}\nkeep "k" { resources = ["*"] }\n')
    assert out == [f'{DISPLAY}:2: error: the source block needs stack = "<path>" or a backend "<type>" {{ ... }} '
                   "block"]


def test_two_source_blocks(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + 'source { stack = "other" }\nkeep "k" { resources = ["*"] }\n')
    assert out == [f"{DISPLAY}:2: error: a second source block (the first is at line 1)"]


def test_no_rules(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD)
    assert out == [f'{DISPLAY}:1: error: no move or keep rules: add move "<name>" {{ resources = [...], to = '
                   '"<stack>" }']


def test_a_bad_regex_is_reported_at_its_element(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + 'move "x" {\n  to = "a"\n  regex = [\n    "^ok$",\n'
                                    '    "module\\\\.(vpc",\n  ]\n}\n')
    assert len(out) == 1
    assert out[0].startswith(f"{DISPLAY}:6: error: move \"x\": regex 'module\\\\.(vpc' is not a valid regular "
                             "expression: missing ), unterminated subpattern")


def test_duplicate_rule_names_across_kinds(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + 'move "db" {\n  resources = ["a.b"]\n  to = "x"\n}\n\nkeep "db" {\n'
                                    '  resources = ["c.d"]\n}\n')
    assert out == [f"{DISPLAY}:7: error: rule name 'db' is used twice (first at line 2)"]


def test_a_reference_is_an_error_at_its_line(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + 'move "x" {\n  resources = ["a.b"]\n  to = "production/${var.env}"\n}\n')
    assert out == [f"{DISPLAY}:4: error: references are not allowed in a migration file (var.env); write the "
                   "value itself"]


def test_a_reference_inside_a_list_is_reported_too(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + 'keep "x" {\n  resources = [\n    "a.b",\n    local.more,\n  ]\n}\n')
    assert out == [f"{DISPLAY}:5: error: references are not allowed in a migration file (local.more); write the "
                   "value itself"]


def test_wrong_types(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + 'move "x" {\n  resources = "module.vpc"\n  to = 3\n}\n'
                                    'keep "y" {\n  resources = ["a.b", 4]\n}\n')
    assert out == [
        f'{DISPLAY}:3: error: move "x": resources must be a list of strings, like ["module.vpc"]; got string',
        f'{DISPLAY}:4: error: move "x": to must be a string, got number',
        f'{DISPLAY}:7: error: keep "y": resources must be a list of strings; an element is a number',
    ]


def test_bad_patterns(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + 'keep "x" {\n  resources = [\n    "",\n    "module.vpc.",\n    " a.b",\n  ]\n}\n')
    assert out == [
        f'{DISPLAY}:4: error: keep "x": resources: an element is an empty string',
        f"{DISPLAY}:5: error: keep \"x\": resources: 'module.vpc.' is not a resource address or address prefix "
        "(misplaced '.')",
        f"{DISPLAY}:6: error: keep \"x\": resources: ' a.b' has spaces around it",
    ]


def test_rename_keys_must_be_address_prefixes(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + 'move "x" {\n  resources = ["module.vpc"]\n  to = "a"\n  rename = {\n'
                                    '    "module.*" = ""\n    "module.vpc" = "null_resource.a"\n'
                                    '    "null_resource.a" = "null_data_source.b"\n    "null_resource.c" = ""\n'
                                    '  }\n}\n')
    assert out == [
        f"{DISPLAY}:6: error: move \"x\": rename 'module.*' = '': the key is not a module path (module.vpc) or a "
        "resource address (null_resource.a); globs are not allowed here",
        f"{DISPLAY}:7: error: move \"x\": rename 'module.vpc' = 'null_resource.a': a module prefix can be renamed "
        "to another module path or to \"\" (dropped), not to 'null_resource.a'",
        f"{DISPLAY}:8: error: move \"x\": rename 'null_resource.a' = 'null_data_source.b': the resource type cannot "
        "change (null_resource -> null_data_source); terraform cannot move between types",
        f"{DISPLAY}:9: error: move \"x\": rename 'null_resource.c' = '': a resource address must be renamed to a "
        "resource address (like module.x.null_resource.b)",
    ]


def test_rename_must_be_an_object(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + 'move "x" {\n  resources = ["a.b"]\n  to = "a"\n  rename = ["a.b"]\n}\n')
    assert out == [f'{DISPLAY}:5: error: move "x": rename must be an object: {{ "module.vpc" = "" }}; got list']


def test_backend_problems(tmp_path: Path) -> None:
    out = problems(tmp_path, 'source {\n  backend "ftp" {\n    path = "x"\n  }\n}\nkeep "k" { resources = ["*"] }\n')
    assert out == [f'{DISPLAY}:2: error: unknown backend type "ftp" (strata supports: local, s3, azurerm, gcs, pg)']
    out = problems(tmp_path, 'source {\n  backend "local" {\n    pth = "x"\n  }\n}\nkeep "k" { resources = ["*"] }\n')
    assert out == [f"{DISPLAY}:3: error: unknown setting 'pth' for backend \"local\"; did you mean 'path'?"]
    out = problems(tmp_path, 'source {\n  backend "local" {\n  }\n}\nkeep "k" { resources = ["*"] }\n')
    assert out == [f'{DISPLAY}:2: error: backend "local" in a migration source needs path = "<state file>" '
                   "(relative to the repository root)"]


def test_every_problem_is_reported_at_once_in_line_order(tmp_path: Path) -> None:
    out = problems(tmp_path, '''
        move "a" {
          resources = ["x.y"]
        }
        keep "b" {
          regex = ["("]
        }
        frobnicate {}
    ''')
    assert [line.split(": error:")[0] for line in out] == [f"{DISPLAY}:1", f"{DISPLAY}:1", f"{DISPLAY}:5",
                                                            f"{DISPLAY}:7"]
    assert "no source block" in out[0] or "no source block" in out[1]
    assert 'move "a" needs to' in out[0] or 'move "a" needs to' in out[1]


def test_a_syntax_error_is_a_problem_at_its_line(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + 'move "x" {\n  to = "a\n}\n')
    assert len(out) == 1 and out[0].startswith(f"{DISPLAY}:3: error: syntax error")


def test_an_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_migration(tmp_path / "missing.hcl", "migrations/missing.hcl")
    assert str(info.value) == "migrations/missing.hcl: cannot read the migration file: No such file or directory"


# -- addresses ----------------------------------------------------------------------------------------------


def test_parse_address() -> None:
    assert parse_address("null_resource.a") == ("", "managed", "null_resource", "a")
    assert parse_address("data.null_data_source.info") == ("", "data", "null_data_source", "info")
    assert parse_address('module.x["a.b"].module.y[0].data.t.n') == ('module.x["a.b"].module.y[0]', "data", "t", "n")
    for bad in ("module.x", "data.x", "a", "a.b.c", "module.x.a", "null_resource.a[0]", ""):
        assert parse_address(bad) is None, bad


def test_module_paths_and_literal_patterns() -> None:
    assert is_module_path("module.vpc") and is_module_path('module.x["k"].module.y[3]')
    assert not is_module_path("module.") and not is_module_path("null_resource.a")
    assert is_literal_pattern('module.x["k"]') and is_literal_pattern("null_resource.a")
    assert not is_literal_pattern("null_resource.*") and not is_literal_pattern("null_resource.[ab]")


@pytest.mark.parametrize("pattern", ["module.eks.null_resource.node_*", "*", "null_resource.?", "*.leaf",
                                     "null_resource.[ab]", "null_resource.[!ab]", "null_resource.[a-c]x",
                                     "module.*.null_resource.this"])
def test_globs_match_like_fnmatch(pattern: str) -> None:
    addresses = ["module.eks.null_resource.node_a", "null_resource.a", "null_resource.c", "null_resource.bx",
                 "module.vpc.module.sub.null_resource.leaf", "module.a.null_resource.this", "null_resource.ab",
                 "data.null_data_source.x", 'module.x["k"].null_resource.this']
    regex = re.compile(glob_regex(pattern))
    for address in addresses:
        assert bool(regex.fullmatch(address)) == fnmatch.fnmatchcase(address, pattern), (pattern, address)


def test_an_instance_key_in_a_glob_stands_for_itself() -> None:
    regex = re.compile(glob_regex('module.x["k"].*'))
    assert regex.fullmatch('module.x["k"].null_resource.a')
    assert not regex.fullmatch('module.xk.null_resource.a')


def test_rename_problem_accepts_valid_renames() -> None:
    assert rename_problem("module.vpc", "") is None
    assert rename_problem("module.vpc", 'module.network["a"]') is None
    assert rename_problem('module.x["k"]', "") is None
    assert rename_problem("module.vpc.null_resource.a", "null_resource.b") is None
    assert rename_problem("data.null_data_source.a", "module.m.data.null_data_source.a") is None


def test_stack_paths_are_normalised(tmp_path: Path) -> None:
    m = load(tmp_path, '''
        source { stack = "./legacy//production/" }
        move "a" {
          resources = ["a.b"]
          to        = "./production/./01-foundation/"
        }
    ''')
    assert m.source.stack == "legacy/production"
    assert m.rules[0].target == "production/01-foundation"


def test_a_rule_name_with_spaces(tmp_path: Path) -> None:
    out = problems(tmp_path, HEAD + 'keep "old stuff" {\n  resources = ["*"]\n}\n')
    assert out == [f"{DISPLAY}:2: error: rule name 'old stuff': use letters, digits, '_', '-' and '.'"]
