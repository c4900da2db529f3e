"""Prove that migrated states are a no-op for the code, in temporary copies of the stacks.

For every stack to check (dependencies first), strata copies the stack's code and the local modules it
uses under ``work/``, at the same relative places so that ``../../modules/x`` still resolves, and points
a generated ``backend "local"`` at a state file inside the copy that holds the migrated state. Then,
with the provider store the run engine uses (offline, nothing downloaded twice):

- ``terraform init``;
- ``terraform apply -refresh-only`` fills in the outputs exactly as Terraform types them (a refresh
  reads the infrastructure, never changes it; it writes only the copy's state file);
- ``terraform plan -detailed-exitcode -out=plan`` and ``terraform show -json plan``: exit code 0 is the
  proof; otherwise every planned resource change is listed (``null_resource.b: delete, create``).

The inputs read dependency outputs from the refreshed copy of a dependency checked in the same call,
otherwise from the dependency's real state (read only). The real stack folders, their ``.terraform``
and their backends are never written: only ``work/`` and strata's provider store are.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import IO, Any

from strata import generate
from strata.atomic import private_dir
from strata.errors import ConfigError, StrataError
from strata.model.loader import resolve_inputs
from strata.model.repository import Repository
from strata.model.stack import Stack
from strata.run.engine import default_cli_config, last_error
from strata.run.outputs import OutputReader, parse_outputs
from strata.run.redact import Secrets, open_log
from strata.terraform import commands as tf
from strata.terraform.binary import TerraformBinary
from strata.terraform.hclwrite import hcl_string
from strata.terraform.modules import local_modules
from strata.terraform.process import ProcessGroup, run
from strata.terraform.providers import ProviderStore

STATE_FILE = "verify.tfstate"  # not terraform.tfstate: init would take that for a local state to migrate
PLAN_FILE = "plan"
# Never copied from a stack folder: terraform's working data, state files and strata's generated files
# (the backend and inputs files are written anew for the copy).
_SKIP_NAMES = frozenset({".terraform", "terraform.tfstate", "terraform.tfstate.backup", "terraform.tfstate.d",
                         "strata.hcl"})
_SKIP_SUFFIXES = (".tfstate", ".tfstate.backup", ".tfplan")
# Environment that would send terraform somewhere else than the copy, or change what the plan means.
_UNSAFE_ENV = ("TF_PLUGIN_CACHE_DIR", "TF_PLUGIN_CACHE_MAY_BREAK_DEPENDENCY_LOCK_FILE", "TF_WORKSPACE",
               "TF_DATA_DIR", "TF_CLI_ARGS")


@dataclass(frozen=True)
class Verdict:
    stack: str
    ok: bool  # plan exit code 0 after a refresh-only apply
    changes: tuple[str, ...]  # e.g. ("null_resource.b: create", "module.x.null_resource.c: delete, create")
    detail: str  # the first error line, or ""
    log: Path | None  # every terraform line of this stack (the plan text too)


@dataclass
class Verification:
    verdicts: list[Verdict]
    states: dict[str, bytes] = field(default_factory=dict)  # per stack: its state after the refresh-only apply

    def ok(self) -> bool:
        return all(v.ok for v in self.verdicts)


def verify(repo: Repository, binary: TerraformBinary, states: dict[str, bytes], *, work: Path,
           log: Callable[[str], None] = lambda _: None) -> Verification:
    """Check ``states`` (stack path -> state bytes) against the code of their stacks, one stack at a time."""
    return _Verifier(repo, binary, work, log).run(states)


class _Verifier:
    def __init__(self, repo: Repository, binary: TerraformBinary, work: Path, log: Callable[[str], None]) -> None:
        self.repo = repo
        self.binary = binary
        self.work = work.resolve()
        self.progress = log
        self.group = ProcessGroup()
        self.providers = ProviderStore(repo.root, os.environ.get("TF_CLI_CONFIG_FILE") or default_cli_config())
        self.secrets = Secrets()  # sensitive dependency outputs, redacted in the logs and verdicts
        self.real_outputs = OutputReader(repo.root, secrets=self.secrets)  # no fallback: it would run terraform
        self.refreshed: dict[str, bytes] = {}
        self.checked: set[str] = set()
        self.modules: set[Path] = set()
        self.env: dict[str, str] = {}
        self.anchor = repo.root
        self.tree = self.work / "tree"

    def run(self, states: dict[str, bytes]) -> Verification:
        known = [path for path in states if path in self.repo.stacks]
        order = self.repo.graph.run_order(known)
        verdicts: list[Verdict] = []
        for path in sorted(set(states) - set(known)):
            verdicts.append(Verdict(path, False, (), f"{path or '.'} is not a stack of this repository", None))
        for path in sorted(set(known) - set(order)):
            verdicts.append(Verdict(path, False, (), f"{path or '.'} is in a dependency cycle", None))
        if not order:
            return Verification(verdicts)
        self._prepare([self.repo.stacks[p] for p in order])
        for path in order:
            self.progress(f"verifying {path or '.'}")
            verdict = self._stack(self.repo.stacks[path], states[path])
            self.checked.add(path)
            self.progress(f"verified {path or '.'}: " + ("no changes" if verdict.ok else
                                                           verdict.detail or f"{len(verdict.changes)} change(s)"))
            verdicts.append(verdict)
        verdicts.sort(key=lambda v: order.index(v.stack) if v.stack in order else -1)
        return Verification(verdicts, dict(self.refreshed))

    # -- the copies ----------------------------------------------------------------------------------

    def _prepare(self, stacks: list[Stack]) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        # The copies keep the layout relative to a folder that holds the repository and every local module
        # it uses (a module may live beside the repository: ../shared-modules/x).
        folders = [self.repo.root.resolve()]
        for stack in stacks:
            folders.extend(local_modules(self.repo.root / stack.path))
        self.anchor = Path(os.path.commonpath([str(f) for f in folders]))
        if self.tree.exists():
            shutil.rmtree(self.tree)
        private_dir(self.work / "logs")
        env = dict(os.environ)
        for name in list(env):
            if name in _UNSAFE_ENV or name.startswith("TF_CLI_ARGS"):
                env.pop(name)
        env.update(self.providers.prepare())
        env.update({"TF_IN_AUTOMATION": "1", "TF_INPUT": "0"})
        self.env = env

    def _copy_of(self, real: Path) -> Path:
        return self.tree / real.resolve().relative_to(self.anchor)

    def _copy_stack(self, stack: Stack) -> Path:
        real = self.repo.root / stack.path
        copy = self._copy_of(real)
        copy.mkdir(parents=True, exist_ok=True)
        generated = {self.repo.settings.backend_file, self.repo.settings.inputs_file}
        for entry in sorted(real.iterdir()):
            name = entry.name
            if name in _SKIP_NAMES or name in generated or name.endswith(_SKIP_SUFFIXES):
                continue
            if entry.is_dir():
                # data the code reads (templates/, files/); not hidden folders, not other strata folders
                if name.startswith(".") or _has_config(entry):
                    continue
                _copy_tree(entry, copy / name)
            elif entry.is_file() and (not name.startswith(".") or name == ".terraform.lock.hcl"):
                shutil.copy2(entry, copy / name)
        for module in local_modules(real):
            if module not in self.modules:  # shared by several stacks: copied once
                _copy_tree(module, self._copy_of(module))
                self.modules.add(module)
        return copy

    # -- one stack -----------------------------------------------------------------------------------

    def _stack(self, stack: Stack, state: bytes) -> Verdict:
        log_path = self.work / "logs" / f"{stack.path.replace('/', '__') or 'root'}.log"
        with open_log(log_path, self.secrets) as log:
            try:
                verdict = self._check(stack, state, log, log_path)
                return replace(verdict, detail=self.secrets.redact(verdict.detail))
            except (StrataError, ConfigError) as exc:
                log.write(f"strata: {exc}\n")
                return Verdict(stack.path, False, (), str(exc), log_path)
            except OSError as exc:
                log.write(f"strata: {exc}\n")
                return Verdict(stack.path, False, (), f"{type(exc).__name__}: {exc}", log_path)

    def _check(self, stack: Stack, state: bytes, log: IO[str], log_path: Path) -> Verdict:
        def failed(detail: str, changes: tuple[str, ...] = ()) -> Verdict:
            log.write(f"strata: not verified: {detail}\n")
            return Verdict(stack.path, False, changes, detail, log_path)

        inputs, problem = self._inputs(stack, log)
        if problem:
            return failed(problem)
        copy = self._copy_stack(stack)
        state_path = copy / STATE_FILE
        settings = self.repo.settings
        (copy / settings.backend_file).write_text(
            f'{generate.MARKER} for a verification copy: the state is the file below, never the real one.\n'
            f'terraform {{\n  backend "local" {{\n    path = {hcl_string(str(state_path))}\n  }}\n}}\n',
            encoding="utf-8")
        _write_private(copy / settings.inputs_file, generate.inputs_text(stack, inputs).encode("utf-8"))
        if state.strip():
            _write_private(state_path, state)
        log.write(f"strata: verifying {stack.path or '.'} in {copy}\nstrata: state file {state_path}\n")

        binary = self.binary.path
        done = run(tf.init(binary), copy, self.env, self.group, log)
        if done.exit_code != 0:
            return failed(f"terraform init failed: {last_error(done.output)}")
        self.providers.harvest(copy)

        done = run([binary, "apply", "-refresh-only", *tf.COMMON, "-auto-approve"], copy, self.env, self.group, log)
        refresh_problem = ""
        if done.exit_code == 0:
            self.refreshed[stack.path] = state_path.read_bytes() if state_path.is_file() else b""
        else:
            # Terraform >= 1.x refuses to apply a refresh-only plan whose outputs become unknown ("Cannot
            # apply non-applyable plan"), e.g. when the state lacks a resource an output reads: the plan
            # below still shows why. No refreshed state for this stack then.
            refresh_problem = f"terraform apply -refresh-only failed: {last_error(done.output)}"
            log.write(f"strata: {refresh_problem}; planning anyway\n")

        done = run(tf.plan(binary, out=PLAN_FILE), copy, self.env, self.group, log)
        if done.exit_code not in (0, 2):
            return failed(f"terraform plan failed: {last_error(done.output)}")
        changes, problem = self._show(copy, log)
        if problem:
            return failed(problem, changes)
        if done.exit_code == 0 and refresh_problem:
            return failed(refresh_problem, changes)
        if done.exit_code == 0:
            log.write("strata: verified: the plan is a no-op\n")
            return Verdict(stack.path, True, changes, "", log_path)
        log.write(f"strata: the plan shows changes: {'; '.join(changes) or '(see the plan above)'}\n")
        return Verdict(stack.path, False, changes, "", log_path)

    def _inputs(self, stack: Stack, log: IO[str]) -> tuple[dict[str, Any], str]:
        """The inputs that read dependency outputs; or a message saying which dependency has none."""
        values: dict[str, dict[str, Any]] = {}
        for dep in stack.dependencies:
            if not dep.name or not dep.used:
                continue
            target = self.repo.stacks.get(dep.path)
            if target is None:
                return {}, f'dependency "{dep.name}" ({dep.path}) is not a stack of this repository'
            if dep.path in self.checked:
                refreshed = self.refreshed.get(dep.path)
                if refreshed is None:
                    return {}, (f'dependency "{dep.name}" ({dep.path}) is verified too but its refresh failed: '
                                "its outputs are unknown")
                outputs = parse_outputs(refreshed, target) if refreshed.strip() else None
                self.secrets.add_outputs(outputs)
                origin = "its verified copy"
            else:
                outputs = self.real_outputs.outputs(target)
                origin = "its state"
            if outputs is not None:
                values[dep.name] = {k: v.get("value") for k, v in outputs.items()}
                log.write(f'strata: dependency "{dep.name}" ({dep.path}): outputs from {origin}\n')
            elif dep.mock_outputs is not None:
                values[dep.name] = dep.mock_outputs
                log.write(f'strata: dependency "{dep.name}" ({dep.path}): no outputs; its mock_outputs are used\n')
            else:
                return {}, (f'dependency "{dep.name}" ({dep.path}) has no outputs (no state yet) and no '
                            "mock_outputs: its inputs cannot be set")
        return resolve_inputs(stack, values, secrets=self.secrets), ""

    def _show(self, copy: Path, log: IO[str]) -> tuple[tuple[str, ...], str]:
        """Every planned change of the saved plan (resources, then outputs); or why it could not be read."""
        argv = [self.binary.path, "show", "-json", "-no-color", PLAN_FILE]
        log.write(f"$ {' '.join(argv)}\n")
        log.flush()
        try:
            proc = subprocess.run(argv, cwd=copy, env=self.env, stdin=subprocess.DEVNULL, capture_output=True,
                                  check=False)
        except OSError as exc:
            return (), f"cannot start {argv[0]}: {exc.strerror}"
        err_text = proc.stderr.decode("utf-8", errors="replace")
        if err_text:
            log.write(err_text.rstrip("\n") + "\n")
        if proc.returncode != 0:
            return (), f"terraform show failed: {last_error(err_text or proc.stdout.decode(errors='replace'))}"
        (copy / "plan.json").write_bytes(proc.stdout)
        try:
            plan = json.loads(proc.stdout)
        except ValueError:
            return (), "terraform show -json did not print JSON"
        return plan_changes(plan), ""


def plan_changes(plan: dict[str, Any]) -> tuple[str, ...]:
    """``address: action[, action]`` for every resource change that is not a no-op or a read.

    Output changes (``output.<name>: update``) are listed only when no resource changes: then they are the
    reason the plan is not a no-op; otherwise they merely follow from the resource changes.
    """
    out: list[str] = []
    for change in plan.get("resource_changes") or []:
        actions = [a for a in (change.get("change") or {}).get("actions") or [] if a not in ("no-op", "read")]
        moved = change.get("previous_address")
        if moved and moved != change.get("address"):
            actions.append(f"moved from {moved}")
        if actions:
            out.append(f"{change.get('address')}: {', '.join(actions)}")
    if out:
        return tuple(out)
    for name, change in sorted((plan.get("output_changes") or {}).items()):
        actions = [a for a in (change or {}).get("actions") or [] if a not in ("no-op", "read")]
        if actions:
            out.append(f"output.{name}: {', '.join(actions)}")
    return tuple(out)


def _has_config(folder: Path) -> bool:
    """Whether ``folder`` holds strata configuration (another stack or a folder of stacks): not copied."""
    try:
        return any(folder.rglob("strata.hcl"))
    except OSError:
        return True


def _copy_tree(source: Path, target: Path) -> None:
    """Files behind symbolic links are copied (a relative link would point elsewhere from the copy)."""
    shutil.copytree(source, target, symlinks=False, ignore=_ignore, dirs_exist_ok=True, ignore_dangling_symlinks=True)


def _ignore(folder: str, names: list[str]) -> set[str]:
    return {n for n in names if n.startswith(".") or n.endswith(_SKIP_SUFFIXES) or n in _SKIP_NAMES}


def _write_private(path: Path, data: bytes) -> None:
    """State and inputs hold secrets: readable by their owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
