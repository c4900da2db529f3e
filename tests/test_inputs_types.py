"""Inputs reach terraform with the type of the value, whatever the variable declares (strata.terraform.variables).

terraform reads a TF_VAR_ as the text itself for a variable with no type or a primitive one, and as an HCL
expression for any other type: a dependency's output "vpc-123" must not become `vpc - 123`, "[1,2]" a list,
or "${path.module}" a template. Real stacks, real terraform 1.0.3 and 1.11, real outputs flowing through.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import Result, write_tree
from strata.errors import ConfigError, Source
from strata.terraform.variables import Variable, declared_variables, tf_var_text

Strata = Callable[..., Result]

# -- what the stacks' code declares ------------------------------------------------------------------

CODE = '''\
# variable "in_a_comment" {
resource "null_resource" "a" {
  triggers = { brace = "}", nested = "${jsonencode({ x = "{" })}", text = <<-EOT
    variable "in_a_heredoc" {
    }
  EOT
  }
}

variable "untyped" {}
variable "anything" {
  type = any /* } */
}
variable "secret" {
  type      = string
  default   = null
  sensitive = true
}
variable settings {
  type        = object({ a = list(string), b = map(number) })
  description = "with } and ${"{"}"
}
'''


def test_declared_variables_with_their_types_defaults_and_lines(tmp_path: Path) -> None:
    write_tree(tmp_path, {"main.tf": CODE, "plain.tf": 'variable "n" {\n  type = number\n}\n'})
    found = declared_variables(tmp_path, "app")
    assert sorted(found) == ["anything", "n", "secret", "settings", "untyped"]
    assert found["secret"] == Variable("secret", "string", has_default=True, sensitive=True,
                                       source=found["secret"].source, reads_text=True)
    assert str(found["secret"].source) == "app/main.tf:14"
    assert found["settings"].type_expr == "object({a = list(string), b = map(number)})"
    assert found["settings"].required and not found["secret"].required
    assert {name: v.reads_text for name, v in found.items()} == {
        "untyped": True, "anything": False, "secret": True, "settings": False, "n": True}


def test_override_files_json_files_and_ignored_files(tmp_path: Path) -> None:
    write_tree(tmp_path, {
        "main.tf": 'variable "a" {}\nvariable "b" {\n  type = list(string)\n}\n',
        "b_override.tf": 'variable "b" {\n  type    = string\n  default = "x"\n}\n',
        "override.tf.json": '{"variable": {"a": {"type": "map(string)"}}}',
        "vars.tf.json": '{\n  "variable": {\n    "j": {"type": "string"},\n    "k": [{"type": "list(any)"}]\n  }\n}\n',
        ".hidden.tf": 'variable "hidden" {}\n', "backup.tf~": 'variable "backup" {}\n',
    })
    found = declared_variables(tmp_path, "s")
    assert sorted(found) == ["a", "b", "j", "k"]
    a = found["a"]
    assert (a.type_expr, a.reads_text, str(a.source)) == ("map(string)", False, "s/main.tf:1")
    assert (found["b"].type_expr, found["b"].reads_text, found["b"].has_default) == ("string", True, True)
    assert (found["j"].reads_text, found["k"].reads_text, str(found["k"].source)) == (True, False, "s/vars.tf.json:4")


@pytest.mark.parametrize("text", ['variable "a" {\n  type = "unclosed\n}\n', 'variable "a" {\n  type = any\n',
                                  'variable "a" {\n  type = = any\n}\n', 'resource "x" "y" {\n  a = <<EOT\nb\n}\n'])
def test_code_strata_cannot_read_is_an_error_at_its_file(tmp_path: Path, text: str) -> None:
    write_tree(tmp_path, {"main.tf": text})
    with pytest.raises(ConfigError) as caught:
        declared_variables(tmp_path, "s")
    assert caught.value.source.file == "s/main.tf" and caught.value.source.line >= 1


def test_a_fifo_among_the_code_is_an_error_not_a_hang(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "main.tf")
    with pytest.raises(ConfigError, match="not a regular file"):
        declared_variables(tmp_path, "s")


def test_big_code_is_not_parsed_whole(tmp_path: Path) -> None:
    """Only the variable blocks are parsed: a stack whose resources fill megabytes costs a scan, not seconds
    of parsing (about 6 s/MiB); the count of parsed lines is what shows it, not a clock."""
    from strata.terraform import variables

    resources = "".join(f'resource "null_resource" "r{i}" {{\n  triggers = {{ a = "${{x}}" }}\n}}\n'
                        for i in range(20000))
    write_tree(tmp_path, {"main.tf": resources + 'variable "last" {\n  type = any\n}\n'})
    kept = variables._variable_text((tmp_path / "main.tf").read_text(encoding="utf-8"), "main.tf")
    assert kept.strip() == 'variable "last" {\n  type = any\n}' and kept.count("\n") == resources.count("\n") + 3
    assert declared_variables(tmp_path)["last"].source.line == resources.count("\n") + 1


def test_the_text_terraform_reads_back_as_the_value() -> None:
    def declared(type_expr: str | None, reads_text: bool) -> Variable:
        return Variable("v", type_expr, has_default=False, sensitive=False, source=Source(), reads_text=reads_text)

    text, structural = declared("string", True), declared("any", False)
    assert [tf_var_text("vpc-123", v) for v in (None, text, structural)] == ["vpc-123", "vpc-123", '"vpc-123"']
    assert tf_var_text("${path.module}\n%{x}", structural) == '"$${path.module}\\n%%{x}"'
    assert [tf_var_text(v, text) for v in (3, True, ["a"])] == ["3", "true", '["a"]']
    assert tf_var_text({"for": "x"}, structural) == '{\n  "for" = "x"\n}'


# -- through real terraform ----------------------------------------------------------------------------

STRINGS = {"vpc": "vpc-123", "list_text": "[1,2]", "bool_text": "true", "template": "${path.module}",
           "directive": "%{ if true }x%{ endif }", "multiline": "a\nb", "quoted": 'say "hi" \\ bye'}
STRUCTURES: dict[str, tuple[Any, list[str]]] = {  # output: (value, the variable types it flows into)
    "names": (["vpc-123", "${path.module}", "a\nb", "[1,2]"], ["list(string)", "any"]),
    "settings": ({"id": "vpc-123", "note": "${x}", "flag": "true"},
                 ["object({ id = string, note = string, flag = string })", "map(string)", "any"]),
    "keyed": ({"for": "[1,2]", "null": "vpc-123"}, ["map(string)", "any"]),  # `{ for = ...` is a for expression
    "count": (3, ["number", "any"]),
}


def _hcl(value: Any) -> str:
    """An HCL literal written by hand (not by the code under test): JSON, with ${ and %{ escaped."""
    return json.dumps(value).replace("${", "$${").replace("%{", "%%{")


def _flows() -> dict[str, tuple[str, str | None, Any]]:
    """Every (dependent's variable -> (output it reads, its type or None, the value expected))."""
    flows: dict[str, tuple[str, str | None, Any]] = {}
    for name, value in STRINGS.items():
        for kind, type_expr in (("untyped", None), ("any", "any"), ("string", "string")):
            flows[f"{kind}_{name}"] = (name, type_expr, value)
    for name, (value, types) in STRUCTURES.items():
        for number, type_expr in enumerate(types):
            flows[f"{name}_{number}"] = (name, type_expr, value)
    return flows


def _repo(root: Path) -> Path:
    upstream = "".join(f'output "{name}" {{\n  value = {_hcl(value)}\n}}\n'
                       for name, value in {**STRINGS, **{k: v for k, (v, _) in STRUCTURES.items()}}.items())
    flows = _flows()
    code = "".join(f'variable "{var}" {{\n' + (f"  type = {type_expr}\n" if type_expr else "") + "}\n"
                   f'output "{var}" {{\n  value = var.{var}\n}}\n' for var, (_, type_expr, _) in flows.items())
    inputs = "".join(f"  {var} = dependency.src.outputs.{output}\n" for var, (output, _, _) in flows.items())
    return write_tree(root, {
        "strata.hcl": 'strata {}\nbackend "local" {}\n',
        "src/strata.hcl": "stack {}\n", "src/main.tf": upstream,
        "dst/strata.hcl": f'stack {{}}\ndependency "src" {{\n  path = "../src"\n}}\ninputs = {{\n{inputs}}}\n',
        "dst/main.tf": code,
    })


def test_dependency_outputs_reach_every_kind_of_variable_unchanged(
        strata: Strata, terraform_binary: str, provider_mirror: dict[str, str], tmp_path: Path) -> None:
    repo = _repo(tmp_path / "repo")
    env = {**provider_mirror, "STRATA_TERRAFORM": terraform_binary}
    applied = strata("apply", "--yes", cwd=repo, env=env)
    assert applied.code == 0, applied.output
    shown = strata("output", "--json", "dst", cwd=repo)
    assert shown.code == 0, shown.output
    got = {name: item["value"] for name, item in json.loads(shown.stdout)["stacks"]["dst"].items()}
    assert got == {var: expected for var, (_, _, expected) in _flows().items()}


def test_code_strata_cannot_read_leaves_the_error_to_terraform(
        strata: Strata, tf_111: str, provider_mirror: dict[str, str], tmp_path: Path) -> None:
    repo = write_tree(tmp_path / "repo", {
        "strata.hcl": 'strata {}\nbackend "local" {}\n',
        "src/strata.hcl": "stack {}\n", "src/main.tf": 'output "id" {\n  value = "vpc-123"\n}\n',
        "dst/strata.hcl": 'stack {}\ndependency "src" {\n  path = "../src"\n  mock_outputs = { id = "m" }\n}\n'
                          "inputs = {\n  id = dependency.src.outputs.id\n}\n",
        "dst/main.tf": 'variable "id" {\n  type = any\n}\nresource "x" "y" {\n  a = "unclosed\n}\n',
    })
    planned = strata("plan", "dst", cwd=repo, env={**provider_mirror, "STRATA_TERRAFORM": tf_111})
    assert planned.code == 1, planned.output  # and no traceback: the strata fixture checks every run
    assert "dst" in planned.stderr and "failed" in planned.stderr, planned.output  # one stack: summary on stderr


# -- the state terraform could not save ------------------------------------------------------------------

def test_an_errored_state_is_readable_by_its_owner_only(
        strata: Strata, tf_111: str, provider_mirror: dict[str, str], tmp_path: Path) -> None:
    """errored.tfstate holds the whole state, secrets included; terraform writes it with the umask's mode."""
    repo = write_tree(tmp_path / "repo", {"strata.hcl": 'strata {}\nbackend "local" {}\n', "s/strata.hcl": "stack {}\n",
                                          "s/main.tf": 'resource "null_resource" "a" {}\n'})
    env = {**provider_mirror, "STRATA_TERRAFORM": tf_111}
    assert strata("apply", "--yes", "s", cwd=repo, env=env).code == 0
    # the provisioner moves the state's folder away and puts a file in its place: terraform cannot save the
    # state there and writes errored.tfstate instead
    state_dir = repo / ".strata" / "state" / "s"
    command = f"mv {state_dir} {tmp_path / 'moved'} && touch {state_dir}"
    (repo / "s" / "main.tf").write_text(
        'resource "null_resource" "a" {}\nresource "null_resource" "b" {\n'
        f'  provisioner "local-exec" {{\n    command = {json.dumps(command)}\n  }}\n}}\n', encoding="utf-8")
    old = os.umask(0o022)
    try:
        broken = strata("apply", "--yes", "s", cwd=repo, env=env)
    finally:
        os.umask(old)
    assert broken.code == 1 and "state not saved" in broken.stderr, broken.output  # one stack: summary on stderr
    assert stat.S_IMODE((repo / "s" / "errored.tfstate").stat().st_mode) == 0o600
