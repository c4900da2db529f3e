"""The corpus of bad configurations: one mistake per repository, reported at its file:line.

Every case builds a small repository in tmp_path (a root strata.hcl with ``strata {}`` and a few
stacks) holding ONE mistake, then runs the real CLI from the repository root and checks that
- ``strata validate`` exits 1 and prints the problem at the exact ``file:line`` with the key words
  that name it, and prints no error anywhere else (no noise caused by the same mistake);
- ``strata generate`` refuses (exit 1), prints the same problem, and writes nothing;
- neither command prints a traceback (the ``strata`` fixture asserts that) nor writes any file.

Further tests: command-line mistakes (exit 64), several mistakes in one repository (all listed),
and warnings (exit 0, or 1 with --strict).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import Result, snapshot, write_tree

Strata = Callable[..., Result]

ROOT = "strata {}\n"
DEV = "dev/us-east-1"
FOUNDATION = f"{DEV}/01-foundation"
PLATFORM = f"{DEV}/02-platform"

# `path:line: severity: message`; the location may carry a note in parentheses.
_DIAGNOSTIC = re.compile(r"^(?P<file>[^\s:][^:]*):(?P<line>\d+)(?: \([^)]*\))?: (?P<severity>error|warning): "
                         r"(?P<message>.*)$")


@dataclass(frozen=True)
class Diag:
    where: str  # "file:line"
    severity: str
    message: str


@dataclass(frozen=True)
class Expect:
    """An error expected at ``where`` whose message contains every word of ``words`` (case-insensitive)."""

    where: str
    words: tuple[str, ...]
    forbidden: tuple[str, ...] = ()


@dataclass(frozen=True)
class Case:
    id: str
    files: dict[str, str]
    errors: tuple[Expect, ...]
    # the problem may also be reported at these places (a direct consequence of the same mistake)
    also_at: tuple[str, ...] = field(default=())


def diagnostics(text: str) -> list[Diag]:
    out: list[Diag] = []
    for line in text.splitlines():
        m = _DIAGNOSTIC.match(line.strip())
        if m:
            out.append(Diag(f"{m['file']}:{m['line']}", m["severity"], m["message"]))
    return out


def errors_of(result: Result) -> list[Diag]:
    return [d for d in diagnostics(result.output) if d.severity == "error"]


def warnings_of(result: Result) -> list[Diag]:
    return [d for d in diagnostics(result.output) if d.severity == "warning"]


def assert_reported(result: Result, expected: tuple[Expect, ...], also_at: tuple[str, ...] = ()) -> None:
    found = errors_of(result)
    for exp in expected:
        here = [d for d in found if d.where == exp.where]
        assert here, f"no error at {exp.where}; got:\n{result.output}"
        matching = [d for d in here if all(w.lower() in d.message.lower() for w in exp.words)]
        assert matching, f"the error at {exp.where} does not mention {exp.words}; got:\n{result.output}"
        for d in matching:
            for word in exp.forbidden:
                assert word.lower() not in d.message.lower(), f"misleading {word!r} in: {d.message}"
    allowed = {e.where for e in expected} | set(also_at)
    stray = [d for d in found if d.where not in allowed]
    assert not stray, "errors reported where the mistake is not:\n" + "\n".join(
        f"{d.where}: {d.message}" for d in stray) + f"\n--- full output:\n{result.output}"


def stacks(*paths: str, body: str = "stack {}\n") -> dict[str, str]:
    return {f"{p}/strata.hcl": body for p in paths}


def repo_files(*parts: dict[str, str], root: str = ROOT) -> dict[str, str]:
    files: dict[str, str] = {"strata.hcl": root}
    for part in parts:
        files.update(part)
    return files


S3_ROOT = """\
strata {}
backend "s3" {
  bucket = "acme-${strata.environment}-state"
  region = "us-east-1"
  encrypt = true
}
"""

APP_VARIABLES = """\
variable "region" {
  type = string
}
variable "app_name" {
  type = string
}
variable "size" {
  type    = string
  default = "small"
}
"""

CASES: list[Case] = [
    # -- HCL syntax ---------------------------------------------------------------------------------
    Case("syntax-missing-closing-brace", repo_files(stacks(PLATFORM), {
        f"{FOUNDATION}/strata.hcl": """
            stack {
              name = "foundation"

            inputs = {
              vpc_name = "main"
            }
            """}),
        # the block opened at line 1 is never closed: that is where the mistake is (terraform says the same)
        (Expect(f"{FOUNDATION}/strata.hcl:1", ("syntax error", "}")),)),
    Case("syntax-missing-closing-quote", repo_files(stacks(PLATFORM), {
        f"{FOUNDATION}/strata.hcl": """
            stack {}
            inputs = {
              vpc_name = "main
              short    = "use1"
            }
            """}),
        (Expect(f"{FOUNDATION}/strata.hcl:3", ("syntax error", "quote")),)),
    Case("syntax-missing-closing-quote-at-end-of-file", repo_files(stacks(PLATFORM), {
        f"{FOUNDATION}/strata.hcl": 'stack {}\ninputs = {\n  vpc_name = "main\n}\n',
    }), (Expect(f"{FOUNDATION}/strata.hcl:3", ("syntax error", "quote"),
                # the grammar's internal token names mean nothing to a user
                forbidden=("directive_start", "string_chars", "interp_start")),)),
    Case("syntax-missing-equals", repo_files(stacks(PLATFORM), {
        f"{FOUNDATION}/strata.hcl": """
            stack {}
            inputs = {
              vpc_name "main"
            }
            """}),
        (Expect(f"{FOUNDATION}/strata.hcl:3", ("syntax error", "="), forbidden=("closing quote",)),)),
    Case("syntax-error-in-root-file", repo_files(stacks(FOUNDATION), root="strata {\n  layers = [\"a\"\n}\n"),
         (Expect("strata.hcl:3", ("syntax error",)),)),

    # -- dependency graph ---------------------------------------------------------------------------
    Case("cycle-of-two", repo_files({
        f"{DEV}/a/strata.hcl": 'stack {}\ndependencies = ["../b"]\n',
        f"{DEV}/b/strata.hcl": 'stack {}\ndependencies = ["../a"]\n',
    }), (Expect(f"{DEV}/a/strata.hcl:2", ("dependency cycle", f"{DEV}/a -> {DEV}/b -> {DEV}/a")),)),
    Case("cycle-of-three", repo_files({
        f"{DEV}/a/strata.hcl": 'stack {}\ndependencies = ["../b"]\n',
        f"{DEV}/b/strata.hcl": ('stack {}\n\ndependency "c" {\n  path = "../c"\n}\n'
                               'inputs = { x = dependency.c.outputs.x }\n'),
        f"{DEV}/c/strata.hcl": 'stack {}\ndependencies = ["../a"]\n',
    }), (Expect(f"{DEV}/a/strata.hcl:2", ("dependency cycle", f"{DEV}/a -> {DEV}/b -> {DEV}/c -> {DEV}/a")),)),
    Case("stack-depends-on-itself", repo_files({
        f"{DEV}/a/strata.hcl": 'stack {}\ndependencies = ["."]\n',
    }), (Expect(f"{DEV}/a/strata.hcl:2", ("depends on itself",)),)),
    Case("dependency-folder-missing", repo_files(stacks(FOUNDATION), {
        f"{PLATFORM}/strata.hcl": """
            stack {}

            dependency "foundation" {
              path = "../01-foundatoin"
            }
            inputs = { vpc_id = dependency.foundation.outputs.vpc_id }
            """}),
        (Expect(f"{PLATFORM}/strata.hcl:3", ("not a stack", f"{DEV}/01-foundatoin")),)),
    Case("dependencies-list-folder-missing", repo_files(stacks(FOUNDATION), {
        f"{PLATFORM}/strata.hcl": 'stack {}\ndependencies = [\n  "../01-foundation",\n  "../00-bootstrap",\n]\n',
    }), (Expect(f"{PLATFORM}/strata.hcl:2", ("not a stack", f"{DEV}/00-bootstrap")),)),
    Case("dependency-folder-without-stack-block", repo_files(stacks(FOUNDATION), {
        f"{DEV}/shared/strata.hcl": 'locals {\n  team = "platform"\n}\n',
        f"{DEV}/shared/main.tf": "# not a stack\n",
        f"{PLATFORM}/strata.hcl": 'stack {}\ndependencies = ["../shared"]\n',
    }), (Expect(f"{PLATFORM}/strata.hcl:2", ("not a stack", f"{DEV}/shared")),)),
    Case("inherited-dependency-folder-missing", repo_files(stacks(FOUNDATION, PLATFORM), {
        # dependencies in a file without a stack block apply to every stack below: one mistake, one error
        f"{DEV}/strata.hcl": 'region = "us-east-1"\n\ndependencies = ["bootstrap"]\n',
    }), (Expect(f"{DEV}/strata.hcl:3", ("not a stack", f"{DEV}/bootstrap")),)),
    Case("dependency-block-without-path", repo_files(stacks(FOUNDATION), {
        f"{PLATFORM}/strata.hcl": 'stack {}\ndependency "foundation" {\n  mock_outputs = { vpc_id = "x" }\n}\n',
    }), (Expect(f"{PLATFORM}/strata.hcl:2", ("foundation", "needs a path")),)),
    Case("dependency-leads-outside-repository", repo_files({
        f"{PLATFORM}/strata.hcl": 'stack {}\ndependencies = ["../../../../../elsewhere"]\n',
    }), (Expect(f"{PLATFORM}/strata.hcl:2", ("outside the repository",)),)),
    Case("lower-layer-depends-on-higher", repo_files(stacks(PLATFORM), {
        f"{FOUNDATION}/strata.hcl": 'stack {}\n\ndependencies = ["../02-platform"]\n',
    }), (Expect(f"{FOUNDATION}/strata.hcl:3", ("01-foundation", "02-platform", "higher layer")),)),

    # -- state isolation ----------------------------------------------------------------------------
    Case("two-stacks-same-s3-key", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\nbackend "s3" {\n  key = "shared/terraform.tfstate"\n}\n',
        f"{PLATFORM}/strata.hcl": 'stack {}\n\nbackend "s3" {\n  key = "shared/terraform.tfstate"\n}\n',
    }, root=S3_ROOT), (Expect(f"{PLATFORM}/strata.hcl:4", ("same state", FOUNDATION, PLATFORM)),)),
    Case("key-override-collides-with-later-stack", repo_files(stacks(PLATFORM), {
        # 01-foundation sorts first; its override takes the default key of 02-platform
        f"{FOUNDATION}/strata.hcl": (f'stack {{}}\nbackend "s3" {{\n  key = "{DEV}/02-platform/terraform.tfstate"\n'
                                     "}\n"),
    }, root=S3_ROOT), (Expect(f"{FOUNDATION}/strata.hcl:3", ("same state", FOUNDATION, PLATFORM)),)),
    Case("key-override-collides-with-earlier-stack", repo_files(stacks(FOUNDATION), {
        f"{PLATFORM}/strata.hcl": (f'stack {{}}\nbackend "s3" {{\n  key = "{DEV}/01-foundation/terraform.tfstate"\n'
                                   "}\n"),
    }, root=S3_ROOT), (Expect(f"{PLATFORM}/strata.hcl:3", ("same state", FOUNDATION, PLATFORM)),)),
    Case("root-key-template-collides", repo_files(stacks(FOUNDATION, PLATFORM), root="""\
        strata {}
        backend "s3" {
          bucket  = "acme-state"
          region  = "us-east-1"
          key     = "${strata.environment}/terraform.tfstate"
        }
        """), (Expect("strata.hcl:5", ("same state", FOUNDATION, PLATFORM)),)),
    Case("two-local-stacks-same-path", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\nbackend "local" {\n  path = "../../state.tfstate"\n}\n',
        f"{PLATFORM}/strata.hcl": 'stack {}\nbackend "local" {\n  path = "../../state.tfstate"\n}\n',
    }), (Expect(f"{PLATFORM}/strata.hcl:3", ("same state",)),)),

    # -- networks -----------------------------------------------------------------------------------
    Case("overlapping-cidrs-same-environment", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\ninputs = {\n  vpc_cidr = "10.0.0.0/16"\n}\n',
        f"{PLATFORM}/strata.hcl": 'stack {}\ninputs = {\n  name       = "eks"\n  cidr_block = "10.0.128.0/17"\n}\n',
    }), (Expect(f"{PLATFORM}/strata.hcl:4", ("overlaps", "10.0.128.0/17", "10.0.0.0/16", FOUNDATION)),)),
    Case("overlapping-cidrs-across-regions", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\ninputs = { vpc_cidr = "10.1.0.0/16" }\n',
        "dev/eu-west-1/01-foundation/strata.hcl": 'stack {}\ninputs = {\n  vpc_cidr = "10.1.4.0/24"\n}\n',
    }), (Expect("dev/eu-west-1/01-foundation/strata.hcl:3", ("overlaps", "10.1.0.0/16")),)),
    Case("overlapping-cidrs-in-a-list", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\ninputs = { vpc_cidr = "10.0.0.0/16" }\n',
        f"{PLATFORM}/strata.hcl": ('stack {}\ninputs = {\n  pod_cidrs = [\n    "100.64.0.0/16",\n'
                                   '    "10.0.64.0/18",\n  ]\n}\n'),
    }), (Expect(f"{PLATFORM}/strata.hcl:3", ("overlaps", "10.0.64.0/18")),)),
    Case("overlapping-cidrs-in-nested-inputs", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\ninputs = { vpc_cidr = "10.0.0.0/16" }\n',
        f"{PLATFORM}/strata.hcl": ('stack {}\ninputs = {\n  network = {\n    name = "eks"\n'
                                   '    service_cidr = "10.0.200.0/24"\n  }\n}\n'),
    }), (Expect(f"{PLATFORM}/strata.hcl:5", ("overlaps", "network.service_cidr", "10.0.200.0/24")),)),
    Case("cidr-input-not-a-cidr", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\ninputs = {\n  vpc_cidr = "10.0.0.0/33"\n}\n',
    }), (Expect(f"{FOUNDATION}/strata.hcl:3", ("not a cidr",)),)),

    # -- unsafe names -------------------------------------------------------------------------------
    Case("environment-dot-dot", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\nenvironment = ".."\n',
    }), (Expect(f"{FOUNDATION}/strata.hcl:2", ("environment", "not safe")),)),
    Case("environment-with-slash", repo_files({
        "dev/strata.hcl": 'environment = "dev/../prod"\n',
        **stacks(FOUNDATION),
    }), (Expect("dev/strata.hcl:1", ("environment", "not safe", "separator")),)),
    Case("region-with-space", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\n\nregion = "us east 1"\n',
    }), (Expect(f"{FOUNDATION}/strata.hcl:3", ("region", "not safe", "white space")),)),
    Case("layer-empty", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\nlayer = ""\n',
    }), (Expect(f"{FOUNDATION}/strata.hcl:2", ("layer", "not safe", "empty")),)),
    Case("client-with-slash", repo_files({
        f"{DEV}/clients/acme/strata.hcl": 'stack {}\nclient = "acme/../../other"\n',
    }), (Expect(f"{DEV}/clients/acme/strata.hcl:2", ("client", "not safe")),)),
    Case("client-empty-from-local", repo_files({
        f"{DEV}/clients/acme/strata.hcl": 'locals {\n  who = ""\n}\nstack {}\nclient = local.who\n',
    }), (Expect(f"{DEV}/clients/acme/strata.hcl:5", ("client", "not safe", "empty")),)),
    Case("stack-name-with-slash", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {\n  description = "network"\n  name = "net/main"\n}\n',
    }), (Expect(f"{FOUNDATION}/strata.hcl:3", ("stack name", "not safe")),)),
    Case("folder-name-with-space", repo_files({
        f"{DEV}/my stack/strata.hcl": "stack {}\n",
    }), (Expect(f"{DEV}/my stack/strata.hcl:1", ("'my stack'", "not safe", "white space")),)),

    # -- expressions --------------------------------------------------------------------------------
    Case("unknown-function", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\ninputs = {\n  name = "x"\n  team = lowerr("Platform")\n}\n',
    }), (Expect(f"{FOUNDATION}/strata.hcl:4", ("unknown function", "lowerr", "did you mean lower")),)),
    Case("unknown-function-in-locals", repo_files({
        f"{DEV}/strata.hcl": 'locals {\n  prefix = uper("dev")\n}\n',
        **stacks(FOUNDATION, body='stack {}\ninputs = { prefix = local.prefix }\n'),
    }), (Expect(f"{DEV}/strata.hcl:2", ("unknown function", "uper", "upper")),)),
    Case("unknown-reference-var", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\ninputs = {\n  name = var.x\n}\n',
    }), (Expect(f"{FOUNDATION}/strata.hcl:3", ("unknown reference", "var.x")),)),
    Case("unknown-local", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\nlocals {\n  a = 1\n}\ninputs = {\n  name = local.missing\n}\n',
    }), (Expect(f"{FOUNDATION}/strata.hcl:6", ("unknown local.missing",)),)),
    Case("unknown-strata-attribute", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\ninputs = {\n  name = "${strata.foo}-vpc"\n}\n',
    }), (Expect(f"{FOUNDATION}/strata.hcl:3", ("unknown strata.foo",)),)),
    Case("unknown-strata-stack-attribute", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\ninputs = {\n  name = strata.stack.nmae\n}\n',
    }), (Expect(f"{FOUNDATION}/strata.hcl:3", ("unknown strata.stack.nmae",)),)),
    Case("unknown-dependency", repo_files(stacks(FOUNDATION), {
        f"{PLATFORM}/strata.hcl": ('stack {}\ndependencies = ["../01-foundation"]\ninputs = {\n'
                                   '  vpc_id = dependency.nope.outputs.x\n}\n'),
    }), (Expect(f"{PLATFORM}/strata.hcl:4", ("unknown dependency", "nope")),)),
    Case("dependency-outputs-outside-inputs", repo_files(stacks(FOUNDATION), {
        f"{PLATFORM}/strata.hcl": ('stack {}\ndependency "net" {\n  path = "../01-foundation"\n}\n'
                                   'locals {\n  vpc = dependency.net.outputs.vpc_id\n}\n'
                                   'inputs = { vpc = local.vpc }\n'),
    }), (Expect(f"{PLATFORM}/strata.hcl:6", ("dependency outputs", "only in inputs")),),
        also_at=(f"{PLATFORM}/strata.hcl:8",)),
    Case("local-depends-on-itself", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\nlocals {\n  name = "${local.name}-x"\n}\n',
    }), (Expect(f"{FOUNDATION}/strata.hcl:3", ("local.name", "depends on itself")),)),
    Case("locals-cycle", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\nlocals {\n  a = local.b\n  b = local.a\n}\n',
    }), (Expect(f"{FOUNDATION}/strata.hcl:4", ("depends on itself", "local.a -> local.b -> local.a")),),
        also_at=(f"{FOUNDATION}/strata.hcl:3",)),
    Case("function-wrong-argument", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\ninputs = {\n  subnet = cidrsubnet("10.0.0.0/16", 4)\n}\n',
    }), (Expect(f"{FOUNDATION}/strata.hcl:3", ("cidrsubnet",)),)),

    # -- production state encryption ----------------------------------------------------------------
    Case("production-s3-without-encrypt", repo_files(stacks("production/us-east-1/01-foundation"), root="""\
        strata {}
        backend "s3" {
          bucket = "acme-${strata.environment}-state"
          region = "us-east-1"
        }
        """), (Expect("strata.hcl:2", ("production", "encrypt")),)),
    Case("production-s3-encrypt-false", repo_files(stacks("production/us-east-1/01-foundation"), root="""\
        strata {}
        backend "s3" {
          bucket  = "acme-${strata.environment}-state"
          region  = "us-east-1"
          encrypt = false
        }
        """), (Expect("strata.hcl:5", ("production", "encrypt")),)),
    Case("production-local-backend", repo_files({
        "production/strata.hcl": 'backend "local" {}\n',
        **stacks("production/us-east-1/01-foundation"),
    }), (Expect("production/strata.hcl:1", ("production", "not encrypted")),)),
    Case("production-embedded-local-default", repo_files(stacks("production/us-east-1/01-foundation")),
         (Expect("production/us-east-1/01-foundation/strata.hcl:1", ("production", "not encrypted")),)),

    # -- schema -------------------------------------------------------------------------------------
    Case("unknown-attribute-inptus", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\n\ninptus = {\n  name = "x"\n}\n',
    }), (Expect(f"{FOUNDATION}/strata.hcl:3", ("unknown attribute", "inptus", "did you mean 'inputs'")),)),
    Case("unknown-block", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\nlocal {\n  a = 1\n}\n',
    }), (Expect(f"{FOUNDATION}/strata.hcl:2", ("unknown block", "'local'", "locals")),)),
    Case("unknown-attribute-in-stack-block", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {\n  name = "net"\n  tag = ["x"]\n}\n',
    }), (Expect(f"{FOUNDATION}/strata.hcl:3", ("unknown attribute", "'tag'", "tags")),)),
    Case("unknown-setting-in-bootstrap-block", repo_files(stacks(FOUNDATION), root=(
        "strata {}\nbootstrap {\n  noncurrent_version_days = 30\n  dr_regoin = \"us-west-2\"\n}\n")),
         (Expect("strata.hcl:4", ("unknown attribute", "'dr_regoin'", "dr_region")),)),
    Case("bootstrap-block-with-a-label", repo_files(stacks(FOUNDATION), {
        f"{FOUNDATION}/strata.hcl": 'stack {}\nbootstrap "aws" {\n  dr_region = "us-west-2"\n}\n',
    }), (Expect(f"{FOUNDATION}/strata.hcl:2", ("bootstrap block takes no labels",)),)),
    Case("unknown-setting-in-strata-block", repo_files(stacks(FOUNDATION), root="strata {\n  layer = [\"a\"]\n}\n"),
         (Expect("strata.hcl:2", ("unknown attribute", "'layer'", "layers")),)),
    Case("unknown-backend-type", repo_files(stacks(FOUNDATION, PLATFORM), root='strata {}\n\nbackend "s4" {\n}\n'),
         (Expect("strata.hcl:3", ("unknown backend type", "s4")),)),
    Case("unknown-backend-setting", repo_files(stacks(FOUNDATION), root="""\
        strata {}
        backend "s3" {
          buckt  = "acme-state"
          bucket = "acme-state"
          region = "us-east-1"
        }
        """), (Expect("strata.hcl:3", ("unknown setting", "buckt", "did you mean 'bucket'")),)),
    Case("unknown-backend-setting-only-bucket", repo_files(stacks(FOUNDATION), root="""\
        strata {}
        backend "s3" {
          buckt  = "acme-state"
          region = "us-east-1"
        }
        """), (Expect("strata.hcl:3", ("unknown setting", "buckt", "did you mean 'bucket'")),),
        also_at=("strata.hcl:2",)),  # "needs 'bucket'" at the block: the same typo, seen from the other side
    Case("backend-missing-required-setting", repo_files(stacks(FOUNDATION), root="""\
        strata {}
        backend "s3" {
          region = "us-east-1"
        }
        """), (Expect("strata.hcl:2", ("needs", "bucket"), forbidden=('backend "s3": backend "s3"',)),)),
    Case("two-backend-blocks-in-one-file", repo_files(stacks(FOUNDATION), root="""\
        strata {}
        backend "local" {}

        backend "s3" {
          bucket = "acme-state"
        }
        """), (Expect("strata.hcl:4", ("second backend block", "line 2")),)),
    Case("attribute-set-twice", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\nenvironment = "dev"\nregion = "us-east-1"\nenvironment = "qa"\n',
    }), (Expect(f"{FOUNDATION}/strata.hcl:4", ("environment", "twice", "line 2")),)),
    Case("strata-block-in-non-root-file", repo_files({
        "dev/strata.hcl": 'environment = "dev"\n\nstrata {\n  layers = ["01-foundation"]\n}\n',
        **stacks(FOUNDATION),
    }), (Expect("dev/strata.hcl:3", ("strata {} block", "root")),)),
    Case("layer-not-in-layers-setting", repo_files(stacks(f"{DEV}/03-databases"),
                                                   root='strata {\n  layers = ["01-foundation", "02-platform"]\n}\n'),
         (Expect(f"{DEV}/03-databases/strata.hcl:1", ("03-databases", "layers")),)),
    Case("backend-value-wrong-type", repo_files(stacks(FOUNDATION), root="""\
        strata {}
        backend "s3" {
          bucket  = "acme-state"
          region  = "us-east-1"
          encrypt = "yes"
        }
        """), (Expect("strata.hcl:5", ("encrypt", "true or false")),)),

    # -- the stack's own Terraform --------------------------------------------------------------------
    Case("hand-written-backend-in-main-tf", repo_files(stacks(FOUNDATION), {
        f"{FOUNDATION}/main.tf": 'terraform {\n  required_version = ">= 1.0"\n  backend "s3" {}\n}\n',
    }), (Expect(f"{FOUNDATION}/main.tf:3", ("backend \"s3\"", "strata_backend.tf", "remove")),)),
    Case("hand-written-backend-one-line", repo_files(stacks(FOUNDATION), {
        f"{FOUNDATION}/versions.tf": '# pinned\nterraform { backend "local" {} }\n',
    }), (Expect(f"{FOUNDATION}/versions.tf:2", ("backend \"local\"", "strata_backend.tf")),)),
    Case("hand-written-cloud-block", repo_files(stacks(FOUNDATION), {
        f"{FOUNDATION}/main.tf": 'terraform {\n  cloud {\n    organization = "acme"\n  }\n}\n',
    }), (Expect(f"{FOUNDATION}/main.tf:2", ("cloud", "strata_backend.tf")),)),

    # -- inputs against the stack's variables (terraform ignores a TF_VAR_ no variable takes) ----------
    Case("input-name-mistyped", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\n\ninputs = {\n  region   = "us-east-1"\n  app_nmae = "shop"\n}\n',
        f"{FOUNDATION}/main.tf": APP_VARIABLES,
    }), (Expect(f"{FOUNDATION}/strata.hcl:5", ("app_nmae", FOUNDATION, "no such variable",
                                                "did you mean 'app_name'")),)),
    Case("input-the-stack-does-not-declare", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\n\ninputs = {\n  region   = "us-east-1"\n  app_name = "shop"\n'
                                    '  replicas = 3\n}\n',
        f"{FOUNDATION}/main.tf": APP_VARIABLES,
    }), (Expect(f"{FOUNDATION}/strata.hcl:6", ("replicas", "no such variable"), forbidden=("did you mean",)),)),
    Case("required-variable-nothing-sets", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\n\ninputs = {\n  region = "us-east-1"\n}\n',
        f"{FOUNDATION}/main.tf": APP_VARIABLES,
    }), (Expect(f"{FOUNDATION}/main.tf:4", ("app_name", "required", "no default",
                                             f"{FOUNDATION}/strata.hcl")),)),
    Case("inherited-input-no-stack-declares", repo_files({
        f"{DEV}/strata.hcl": 'inputs = {\n  regoin = "us-east-1"\n}\n',
        f"{FOUNDATION}/strata.hcl": 'stack {}\ninputs = { app_name = "shop" }\n',
        f"{FOUNDATION}/main.tf": APP_VARIABLES,
        f"{PLATFORM}/strata.hcl": 'stack {}\ninputs = { app_name = "shop" }\n',
        f"{PLATFORM}/main.tf": APP_VARIABLES,
    }), (Expect(f"{DEV}/strata.hcl:2", ("regoin", "no stack", "did you mean 'region'")),)),
]


@pytest.fixture(params=CASES, ids=lambda c: c.id)
def case(request: pytest.FixtureRequest) -> Case:
    result: Case = request.param
    return result


def test_validate_reports_the_mistake(strata: Strata, tmp_path: Path, case: Case) -> None:
    repo = write_tree(tmp_path / "repo", case.files)
    before = snapshot(repo)
    result = strata("validate", cwd=repo)
    assert result.code == 1, result.output
    assert_reported(result, case.errors, case.also_at)
    assert snapshot(repo) == before

    as_json = strata("validate", "--json", cwd=repo)
    assert as_json.code == 1, as_json.output
    data = json.loads(as_json.stdout)
    places = {f"{d['file']}:{d['line']}" for d in data["diagnostics"] if d["severity"] == "error"}
    assert data["errors"] == len([d for d in data["diagnostics"] if d["severity"] == "error"]) >= 1
    for exp in case.errors:
        assert exp.where in places, (exp.where, places)
    assert snapshot(repo) == before


def test_generate_refuses_and_writes_nothing(strata: Strata, tmp_path: Path, case: Case) -> None:
    repo = write_tree(tmp_path / "repo", case.files)
    before = snapshot(repo)
    result = strata("generate", cwd=repo)
    written = sorted(set(snapshot(repo)) - set(before))
    assert result.code == 1, f"generate exit {result.code}, wrote {written}\n{result.output}"
    assert_reported(result, case.errors, case.also_at)
    assert snapshot(repo) == before, f"generate wrote {written}"


# -- generate and hand-written files -------------------------------------------------------------------

def test_generate_refuses_to_overwrite_a_hand_written_backend_file(strata: Strata, tmp_path: Path) -> None:
    hand_written = '# our own backend, kept by hand\nterraform {\n  required_version = ">= 1.0"\n}\n'
    repo = write_tree(tmp_path / "repo", repo_files(stacks(FOUNDATION, PLATFORM), {
        f"{PLATFORM}/strata_backend.tf": hand_written,
    }))
    before = snapshot(repo)
    result = strata("generate", cwd=repo)
    assert result.code == 1, result.output
    assert_reported(result, (Expect(f"{PLATFORM}/strata_backend.tf:1", ("refusing to overwrite",)),))
    assert (repo / PLATFORM / "strata_backend.tf").read_text() == hand_written
    assert snapshot(repo) == before, "generate wrote files although it refused"
    # --check refuses the same way (in CI a hand-written file must not pass as "up to date")
    check = strata("generate", "--check", cwd=repo)
    assert check.code == 1
    assert_reported(check, (Expect(f"{PLATFORM}/strata_backend.tf:1", ("refusing to overwrite",)),))
    assert snapshot(repo) == before


def test_generate_refuses_to_overwrite_a_hand_written_inputs_file(strata: Strata, tmp_path: Path) -> None:
    repo = write_tree(tmp_path / "repo", repo_files(stacks(FOUNDATION), {
        f"{FOUNDATION}/strata_inputs.auto.tfvars": 'name = "mine"\n',
    }))
    before = snapshot(repo)
    result = strata("generate", cwd=repo)
    assert result.code == 1, result.output
    assert_reported(result, (Expect(f"{FOUNDATION}/strata_inputs.auto.tfvars:1", ("refusing to overwrite",)),))
    assert snapshot(repo) == before


def test_a_syntax_error_does_not_make_dependents_report_not_a_stack(strata: Strata, tmp_path: Path) -> None:
    """The broken file's stack block is unreadable, not absent: only the syntax error is the problem."""
    repo = write_tree(tmp_path / "repo", repo_files({
        f"{FOUNDATION}/strata.hcl": 'stack {}\ninputs = {\n  name = "x"\n',
        f"{PLATFORM}/strata.hcl": 'stack {}\ndependencies = ["../01-foundation"]\n',
    }))
    before = snapshot(repo)
    result = strata("validate", cwd=repo)
    assert result.code == 1
    # reported where the unclosed { opens, as Terraform does ("Unclosed configuration block")
    assert_reported(result, (Expect(f"{FOUNDATION}/strata.hcl:2", ("syntax error", "never closed")),))
    assert snapshot(repo) == before


def test_paths_are_relative_to_the_working_directory(strata: Strata, tmp_path: Path) -> None:
    """From a sub-folder, file:line is the plain relative path (what an editor or `ls` would accept)."""
    repo = write_tree(tmp_path / "repo", repo_files(stacks(FOUNDATION), {
        f"{PLATFORM}/strata.hcl": 'stack {}\ninputs = {\n  team = lowerr("x")\n}\n',
    }))
    from_env = strata("validate", cwd=repo / "dev")
    assert from_env.code == 1
    assert_reported(from_env, (Expect("us-east-1/02-platform/strata.hcl:3", ("unknown function",)),))
    with_c = strata("-C", str(repo / DEV), "validate", cwd=tmp_path)
    assert with_c.code == 1
    assert_reported(with_c, (Expect("02-platform/strata.hcl:3", ("unknown function",)),))


def test_generate_inside_a_stack_names_the_hand_written_file_plainly(strata: Strata, tmp_path: Path) -> None:
    repo = write_tree(tmp_path / "repo", repo_files(stacks(FOUNDATION, PLATFORM), {
        f"{PLATFORM}/strata_backend.tf": "# mine\n",
    }))
    before = snapshot(repo)
    inside = strata("generate", cwd=repo / PLATFORM)
    assert inside.code == 1
    assert snapshot(repo) == before
    assert_reported(inside, (Expect("strata_backend.tf:1", ("refusing to overwrite",)),))


# -- command-line mistakes: exit 64 --------------------------------------------------------------------

def _usage_repo(tmp_path: Path) -> Path:
    return write_tree(tmp_path / "repo", repo_files(stacks(FOUNDATION, PLATFORM), {
        f"{DEV}/docs/README.md": "not a stack\n",
    }))


USAGE_CASES = [
    pytest.param(("render", f"{DEV}/03-databases"), ("no stack", "03-databases"), id="render-missing-folder"),
    pytest.param(("render", DEV), ("no stack", DEV), id="render-folder-above-stacks"),
    pytest.param(("render", f"{DEV}/docs"), ("no stack", "docs"), id="render-folder-without-stack"),
    pytest.param(("render", "--json", "nowhere"), ("no stack", "nowhere"), id="render-json-missing"),
    pytest.param(("ls", f"{DEV}/03-databases"), ("no stacks", "03-databases"), id="ls-missing-folder"),
    pytest.param(("ls", f"{DEV}/docs"), ("no stacks", "docs"), id="ls-folder-without-stack"),
    pytest.param(("ls", "--json", "staging"), ("no stacks", "staging"), id="ls-json-missing"),
    pytest.param(("generate", f"{DEV}/03-databases"), ("no stacks", "03-databases"), id="generate-missing"),
    pytest.param(("graph", f"{DEV}/03-databases"), ("no stacks", "03-databases"), id="graph-missing"),
    pytest.param(("ls", "../.."), ("outside the repository",), id="ls-outside-repository"),
]


@pytest.mark.parametrize(("args", "words"), USAGE_CASES)
def test_command_line_mistakes_exit_64(strata: Strata, tmp_path: Path, args: tuple[str, ...],
                                       words: tuple[str, ...]) -> None:
    repo = _usage_repo(tmp_path)
    before = snapshot(repo)
    result = strata(*args, cwd=repo)
    assert result.code == 64, result.output
    assert result.stdout == "", "nothing on stdout when the command cannot run"
    for word in words:
        assert word.lower() in result.stderr.lower(), result.stderr
    assert snapshot(repo) == before


def test_not_inside_a_repository_exits_64(strata: Strata, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    result = strata("validate", cwd=tmp_path / "empty")
    assert result.code == 64
    assert "strata {}" in result.stderr


def test_unknown_option_exits_64(strata: Strata, tmp_path: Path) -> None:
    repo = _usage_repo(tmp_path)
    result = strata("validate", "--strcit", cwd=repo)
    assert result.code == 64
    assert "--strcit" in result.stderr


# -- several mistakes at once ----------------------------------------------------------------------------

def test_validate_reports_every_problem(strata: Strata, tmp_path: Path) -> None:
    repo = write_tree(tmp_path / "repo", repo_files({
        f"{DEV}/a/strata.hcl": 'stack {}\ndependencies = ["../b"]\n',
        f"{DEV}/b/strata.hcl": 'stack {}\ndependencies = ["../a"]\n',
        f"{FOUNDATION}/strata.hcl": 'stack {}\ninputs = {\n  vpc_cidr = "10.0.0.0/16"\n}\n',
        f"{PLATFORM}/strata.hcl": 'stack {}\ninputs = {\n  name = lowerr("EKS")\n  pod_cidr = "10.0.8.0/21"\n}\n',
        f"{DEV}/03-databases/strata.hcl": 'stack {}\n\ninptus = {}\n',
        f"{DEV}/04-applications/strata.hcl": 'stack {}\ndependencies = ["../05-missing"]\n',
    }))
    expected = (
        Expect(f"{DEV}/a/strata.hcl:2", ("dependency cycle", f"{DEV}/a -> {DEV}/b -> {DEV}/a")),
        Expect(f"{PLATFORM}/strata.hcl:3", ("unknown function", "lowerr")),
        Expect(f"{PLATFORM}/strata.hcl:4", ("overlaps", "10.0.8.0/21", "10.0.0.0/16")),
        Expect(f"{DEV}/03-databases/strata.hcl:3", ("inptus", "inputs")),
        Expect(f"{DEV}/04-applications/strata.hcl:2", ("not a stack",)),
    )
    before = snapshot(repo)
    result = strata("validate", cwd=repo)
    assert result.code == 1
    assert_reported(result, expected)
    assert len(errors_of(result)) == len(expected), result.output
    assert f"{len(expected)} error(s)" in result.stderr
    assert snapshot(repo) == before

    gen = strata("generate", cwd=repo)
    assert gen.code == 1
    assert_reported(gen, expected)
    assert snapshot(repo) == before

    check = strata("generate", "--check", cwd=repo)
    assert check.code == 1
    assert_reported(check, expected)
    assert snapshot(repo) == before


# -- valid configurations that look close to mistakes ------------------------------------------------------

def test_same_cidrs_in_different_environments_are_fine(strata: Strata, tmp_path: Path) -> None:
    body = 'stack {}\ninputs = {\n  vpc_cidr = "10.0.0.0/16"\n  subnet_cidrs = ["10.0.1.0/24"]\n}\n'
    repo = write_tree(tmp_path / "repo", repo_files(
        stacks(FOUNDATION, "staging/us-east-1/01-foundation", "prod/us-east-1/01-foundation", body=body),
        {f"{PLATFORM}/strata.hcl": 'stack {}\ninputs = { allowed_cidr = "0.0.0.0/0" }\n',
         # production state must be encrypted: give prod a proper backend
         "prod/strata.hcl": 'backend "s3" {\n  bucket = "acme-prod-state"\n  region = "us-east-1"\n'
                            '  encrypt = true\n}\n'},
    ))
    result = strata("validate", cwd=repo)
    assert result.code == 0, result.output
    assert errors_of(result) == []
    assert "overlap" not in result.output
    gen = strata("generate", cwd=repo)
    assert gen.code == 0, gen.output
    assert (repo / FOUNDATION / "strata_inputs.auto.tfvars").is_file()


def test_cidrs_may_overlap_within_one_stack(strata: Strata, tmp_path: Path) -> None:
    repo = write_tree(tmp_path / "repo", repo_files({
        f"{FOUNDATION}/strata.hcl": ('stack {}\ninputs = {\n  vpc_cidr = "10.0.0.0/16"\n'
                                     '  private_cidrs = ["10.0.0.0/20", "10.0.16.0/20"]\n}\n'),
    }))
    result = strata("validate", cwd=repo)
    assert result.code == 0, result.output


# -- warnings: exit 0, or 1 with --strict -------------------------------------------------------------------

WARNING_CASES = [
    pytest.param(repo_files(stacks(f"{DEV}/01-foundation", "staging/us-east-1/01-foundation"), root="""\
        strata {}
        backend "s3" {
          bucket  = "acme-state"
          region  = "us-east-1"
          encrypt = true
        }
        """), Expect("strata.hcl:2", ("s3://acme-state", "several environments", "dev", "staging")),
        id="bucket-shared-by-environments"),
    pytest.param(repo_files({f"{FOUNDATION}/strata.hcl": '# the network\n\nstack {}\n'}),
                 Expect(f"{FOUNDATION}/strata.hcl:3", ("no backend block", "embedded local default")),
                 id="no-backend-block"),
    pytest.param(repo_files(stacks(FOUNDATION), {
        f"{PLATFORM}/strata.hcl": 'stack {}\n\ndependency "foundation" {\n  path = "../01-foundation"\n}\n',
    }, root='strata {}\nbackend "local" {}\n'),
        Expect(f"{PLATFORM}/strata.hcl:3", ("foundation", "never used", "dependencies = [")),
        id="unused-dependency"),
]


@pytest.mark.parametrize(("files", "warning"), WARNING_CASES)
def test_warnings_fail_only_with_strict(strata: Strata, tmp_path: Path, files: dict[str, str],
                                        warning: Expect) -> None:
    repo = write_tree(tmp_path / "repo", files)
    before = snapshot(repo)
    plain = strata("validate", cwd=repo)
    assert plain.code == 0, plain.output
    assert errors_of(plain) == []
    found = warnings_of(plain)
    assert [d.where for d in found] == [warning.where], plain.output
    assert all(w.lower() in found[0].message.lower() for w in warning.words), found[0].message
    assert "1 warning(s)" in plain.stderr

    strict = strata("validate", "--strict", cwd=repo)
    assert strict.code == 1, strict.output
    assert [d.where for d in warnings_of(strict)] == [warning.where]
    assert snapshot(repo) == before

    # warnings do not stop generate
    gen = strata("generate", cwd=repo)
    assert gen.code == 0, gen.output
