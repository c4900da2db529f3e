"""Run a terraform command over the selected stacks, in dependency order, in parallel.

For each stack: read the outputs of its dependencies from their state (mocks only where the command
allows them), pass the inputs that read them as TF_VAR_* variables, run ``terraform init`` only when
the stack's code, lock file or backend changed since the last init, then the command itself. Every
line terraform prints goes to the stack's log file under ``.strata/logs/<run>/``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import itertools
import json
import os
import re
import signal
import subprocess
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from strata.atomic import SECRET, private_dir, write_atomic
from strata.backends import get_backend
from strata.backends.base import BackendError, LockInfo
from strata.errors import ConfigError, StrataError
from strata.model.loader import resolve_inputs
from strata.model.repository import Repository
from strata.model.stack import Stack
from strata.run import running
from strata.run.display import Display
from strata.run.outputs import OutputReader
from strata.run.redact import Secrets, open_log
from strata.scheduler import CHANGES, FAILED, INTERRUPTED, OK, Outcome, Scheduler
from strata.state.operations import duration_seconds, live_local_holder, open_store, sound
from strata.terraform import commands as tf
from strata.terraform.binary import TerraformBinary
from strata.terraform.modules import code_files, local_modules, read_code
from strata.terraform.process import Completed, ProcessGroup, run
from strata.terraform.providers import ProviderStore
from strata.terraform.variables import declared_variables, tf_var_text

if TYPE_CHECKING:
    from strata.policy.check import PolicyRun

# Commands that may use a dependency's mock_outputs when it has no state yet. Never apply or refresh:
# their results would be written to state from values that do not exist.
MOCKS_ALLOWED = frozenset({"plan", "validate", "destroy"})
NO_INPUTS = frozenset({"init", "validate"})  # terraform does not read variables for these
INIT_STAMP = "strata-init.sha256"
# Where terraform leaves the state it could not save (in its working folder), and the commands refused
# while it is there: planning or applying on the old state would fork it or repeat what was done.
ERRORED_STATE = "errored.tfstate"
# The variable files terraform loads by itself: part of what a saved plan was made from.
VARIABLE_FILES = ("terraform.tfvars", "terraform.tfvars.json", "*.auto.tfvars", "*.auto.tfvars.json")
# strata's own secrets in CI (the plan bundles' key, the comment tokens): terraform, its providers and the policy
# checks run the repository's code (a pull request's, in its job) and have no use for them
STRATA_SECRETS = ("STRATA_PLAN_KEY", "STRATA_GITLAB_TOKEN", "SYSTEM_ACCESSTOKEN")
STATE_COMMANDS = frozenset({"plan", "apply", "destroy", "refresh"})
# A command that applies: its counts are what it did (and saved), not what its plan announced.
APPLYING = frozenset({"apply", "destroy"})


@dataclass(slots=True)
class RunOptions:
    command: str  # init | validate | plan | apply | destroy | refresh | run
    parallelism: int
    args: list[str] = field(default_factory=list)  # for `strata run -- ...`
    terraform_args: list[str] = field(default_factory=list)  # `strata plan ... -- -target=x`: to terraform as-is
    color: bool = False  # terraform's own colours (its output goes to a terminal)
    fail_fast: bool = False
    lock_timeout: str = "0s"
    save_plans: bool = False  # plan --out
    keep_valid: bool = False  # plan --out --keep-valid: a saved plan still valid is kept, not made again
    saved_plans: bool = False  # apply --plan
    ignore_errored_state: bool = False  # run although terraform left an unsaved state (errored.tfstate)
    policy: PolicyRun | None = None  # plan: check each saved plan (strata.policy)
    override_policy: str | None = None  # apply --plan: apply a plan that failed its policy check, for this reason

    @property
    def touches_state(self) -> bool:
        """Whether the command reads or writes the stack's state (refused while an errored.tfstate waits)."""
        command = self.args[0] if self.command == "run" and self.args else self.command
        return command in STATE_COMMANDS

    @property
    def reverse(self) -> bool:
        return self.command == "destroy" or (self.command == "run" and self.args[:1] == ["destroy"])


@dataclass(slots=True)
class StackResult:
    path: str
    status: str
    duration: float
    detail: str = ""
    add: int | None = None
    change: int | None = None
    destroy: int | None = None
    log: str = ""
    mocked: list[str] = field(default_factory=list)
    plan_file: str = ""
    errored_state: str = ""  # the errored.tfstate terraform wrote because it could not save the state
    policy: dict[str, Any] | None = None  # the policy check of its plan (strata.policy.check), if any

    def to_json(self) -> dict[str, Any]:
        return {"path": self.path, "status": self.status, "duration": round(self.duration, 3),
                "detail": self.detail, "add": self.add, "change": self.change, "destroy": self.destroy,
                "log": self.log, "mocked_dependencies": self.mocked, "plan_file": self.plan_file or None,
                "errored_state": self.errored_state or None, "policy": self.policy}


@dataclass(slots=True)
class RunReport:
    command: str
    started: float
    duration: float
    results: list[StackResult]
    log_dir: str
    interrupted: bool

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.results:
            out[r.status] = out.get(r.status, 0) + 1
        return out


class Runner:
    def __init__(self, repo: Repository, binary: TerraformBinary, options: RunOptions, display: Display) -> None:
        self.repo = repo
        self.binary = binary
        self.options = options
        self.display = display
        self.group = ProcessGroup()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        self.run_id = f"{stamp}-{options.command}-{os.getpid()}"
        self.log_dir = repo.root / ".strata" / "logs" / self.run_id
        self.plan_dir = repo.root / ".strata" / "plans"
        self.providers = ProviderStore(repo.root, os.environ.get("TF_CLI_CONFIG_FILE") or default_cli_config())
        self.secrets = Secrets()  # every sensitive output read, redacted wherever strata writes
        self.outputs = OutputReader(repo.root, fallback=self._outputs_from_terraform, secrets=self.secrets,
                                    ignore_errored_state=options.ignore_errored_state)
        self.base_env: dict[str, str] = {}
        self._runs = itertools.count(1)  # numbers the terraform output files of the run

    # -- the run -------------------------------------------------------------------------------------

    def execute(self, stacks: list[Stack]) -> RunReport:
        started = time.time()
        private_dir(self.log_dir)
        env = dict(os.environ)  # the user's own TF_VAR_* (secrets in CI) stay; inputs below override by name
        for secret in STRATA_SECRETS:
            env.pop(secret, None)
        for unsafe in ("TF_PLUGIN_CACHE_DIR", "TF_PLUGIN_CACHE_MAY_BREAK_DEPENDENCY_LOCK_FILE"):
            env.pop(unsafe, None)  # terraform's own cache races under parallel init; the store replaces it
        env.update(self.providers.prepare())
        env.update({"TF_IN_AUTOMATION": "1", "TF_INPUT": "0"})
        self.base_env = env
        paths = [s.path for s in stacks]
        graph = self.repo.graph
        edges = graph.dependents if self.options.reverse else graph.depends_on
        scheduler = Scheduler(paths, edges, self.options.parallelism, self.group, self.options.fail_fast)
        outcomes = scheduler.run(self._work, on_start=self.display.start, on_finish=self.display.finish)
        results = [self._result(path, outcomes[path]) for path in sorted(paths)]
        return RunReport(self.options.command, started, time.time() - started, results,
                         self.repo.display(os.path.relpath(self.log_dir, self.repo.root)), self.group.interrupted)

    def _result(self, path: str, outcome: Outcome) -> StackResult:
        data = outcome.data
        return StackResult(path, outcome.status, outcome.duration, outcome.detail, data.get("add"),
                           data.get("change"), data.get("destroy"), data.get("log", ""), data.get("mocked", []),
                           data.get("plan_file", ""), data.get("errored_state", ""), data.get("policy"))

    def _work(self, path: str) -> Outcome:
        stack = self.repo.stacks[path]
        started = time.monotonic()
        log_path = self.log_dir / (path.replace("/", "__") or "root") / "terraform.log"
        private_dir(log_path.parent)
        data: dict[str, Any] = {"log": self.repo.display(os.path.relpath(log_path, self.repo.root))}
        with open_log(log_path, self.secrets) as log:
            try:
                outcome = self._stack(stack, log, data)
            except (StrataError, ConfigError) as exc:
                log.write(f"strata: {exc}\n")
                outcome = Outcome(FAILED, str(exc))
            except OSError as exc:
                log.write(f"strata: {exc}\n")
                outcome = Outcome(FAILED, f"{type(exc).__name__}: {exc}")
        outcome.duration = time.monotonic() - started
        outcome.detail = self.secrets.redact(outcome.detail)  # shown on the terminal and in every report
        outcome.data = data
        return outcome

    def _stack(self, stack: Stack, log: IO[str], data: dict[str, Any]) -> Outcome:
        command = self.options.command
        env = dict(self.base_env)
        inputs: dict[str, Any] = {}
        blocked = self._blocked(stack, log, data)
        if blocked:
            return blocked
        if command in ("plan", "apply", "destroy", "refresh"):
            # strata.state (issue 10): a damaged state, or one emptied while its history shows it had one, stops here
            from strata.state.operations import check_usable

            check_usable(self.repo.root, stack)
        if command == "destroy" and self.outputs.outputs(stack) is None and self._has_no_state(stack):
            log.write("strata: no state: nothing to destroy\n")
            return Outcome(OK, "no state: nothing to destroy")
        if command == "apply" and self.options.saved_plans:
            self._saved_plan_meta(stack)  # refuse a missing or mocked plan before anything else
        if command not in NO_INPUTS:
            # its own state's secrets, older ones too: terraform may print them (`run -- plan` of a dependent that
            # still holds a rotated secret); `strata output --json` is the way to read them unredacted
            self.outputs.learn_secrets(stack)
            inputs, mocked = self._inputs(stack)
            data["mocked"] = mocked
            env.update(_tf_vars(inputs, self.repo.root / stack.path))
        if self.group.interrupted:
            return Outcome(INTERRUPTED, "interrupted before it started")
        state = self._local_state(stack)
        if state is not None:  # terraform would make its folder 0755 (its states 0644), and git would see it
            private_dir(state.parent, repository=self.repo.root)
        problem = self._ensure_init(stack, env, log)
        if problem:
            return problem
        if command == "init":
            return Outcome(OK)
        cwd = self.repo.root / stack.path
        binary = self.binary.path
        timeout = self.options.lock_timeout
        if command == "validate":
            argv = tf.validate(binary)
        elif command == "plan":
            plan_file = self._plan_file(stack) if self.options.save_plans else None
            if plan_file is not None and self.options.keep_valid:
                kept = self._keep_saved_plan(stack, inputs, data, log)
                if kept is not None:
                    return kept
            if plan_file is not None:  # an older plan must never pass for this one, whatever happens next
                plan_file.unlink(missing_ok=True)
                plan_file.with_suffix(".json").unlink(missing_ok=True)
            argv = tf.plan(binary, out=str(plan_file) if plan_file else None, lock_timeout=timeout)
        elif command == "apply":
            argv = self._apply_argv(stack, inputs, data)
        elif command == "destroy":
            argv = tf.destroy(binary, lock_timeout=timeout)
        elif command == "refresh":
            argv = tf.refresh(binary, lock_timeout=timeout)
        else:
            argv = [binary, *self.options.args]
        if command in ("plan", "destroy", "refresh") or (command == "apply" and not self.options.saved_plans):
            argv += self.options.terraform_args  # a saved plan already is what its flags shaped
        mutating = command in ("apply", "destroy", "refresh", "run")
        if mutating:
            self._remember(stack, f"before {command}", log)
        errored_before = _file_identity(cwd / ERRORED_STATE)
        done = self._terraform(stack, argv, cwd, env, log)
        if state is not None:
            for written in (state, state.with_name(state.name + ".backup")):
                _private_file(written)
        if command == "plan" and self.options.save_plans:
            _private_file(self._plan_file(stack))
        if mutating and done.exit_code == 0:
            self._remember(stack, command, log)
        unsaved = _file_identity(cwd / ERRORED_STATE) not in (None, errored_before)
        if unsaved:
            _private_file(cwd / ERRORED_STATE)  # the whole state, secrets included: terraform writes it 0644
        changes = tf.applied(done.output) if self._applying() else tf.changes(done.output)
        if changes is not None and not unsaved and done.signal is None:  # else nothing is known to be saved
            data.update(add=changes.add, change=changes.change, destroy=changes.destroy)
        if command in ("apply", "destroy", "refresh") or (command == "run" and done.exit_code == 0):
            self.outputs.forget(stack)
        if unsaved:
            return self._unsaved(stack, done, log, data)
        if done.signal is not None and not done.interrupted:
            return Outcome(FAILED, f"terraform was killed by signal {_signal_name(done.signal)}")
        if done.interrupted and done.exit_code != 0:
            return Outcome(INTERRUPTED, "stopped by an interrupt")
        if done.exit_code not in (0, 2) and "Error acquiring the state lock" in done.output:
            return Outcome(FAILED, self._lock_detail(stack, done.output))
        if command == "plan":
            if done.exit_code not in (0, 2):
                return Outcome(FAILED, last_error(done.output, stack.path))
            if self.options.save_plans:
                if self.options.policy is not None:
                    data["policy"] = self._check_policy(stack, env)
                data["changes"] = done.exit_code == 2
                self._write_plan_meta(stack, inputs, data)
            again = f"planned again: {data['replanned']}" if data.get("replanned") else ""
            return Outcome(CHANGES if done.exit_code == 2 else OK, again)
        if done.exit_code != 0 and data.get("plan_file") and "Saved plan is stale" in done.output:
            return Outcome(FAILED, f"the saved plan of {stack.path} is stale: its state changed since the plan was "
                                   "made (terraform: Saved plan is stale); plan again")
        if done.exit_code != 0:
            return Outcome(FAILED, last_error(done.output, stack.path))
        if command == "apply" and data.get("plan_file"):
            self._plan_file(stack).unlink(missing_ok=True)  # a saved plan is applied once
        return Outcome(OK)

    def _applying(self) -> bool:
        command = self.options.command
        return command in APPLYING or (command == "run" and self.options.args[:1] in (["apply"], ["destroy"]))

    # -- what must stop a stack before it starts, and a state terraform could not save --------------------

    def _blocked(self, stack: Stack, log: IO[str], data: dict[str, Any]) -> Outcome | None:
        """A terraform from a strata run that died still runs in the stack; or terraform could not save the
        state in an earlier run and left it in errored.tfstate."""
        alive = running.orphan(self.repo.root, stack.path)
        if alive is not None:
            output = self.repo.display(alive.output)
            holds = "still runs in" if alive.command in running.LOCK_FREE else "still holds the lock on"
            return Outcome(FAILED, f"{alive.describe()} from an earlier strata run {holds} {stack.path or '.'}; "
                                   f"wait for it to finish (it writes to {output}), or stop it gracefully with "
                                   f"`kill -INT {alive.pid}`; strata removes no lock")
        errored = self.repo.root / stack.path / ERRORED_STATE
        if not self.options.touches_state or not errored.is_file():
            return None
        shown = self.repo.display(os.path.relpath(errored, self.repo.root))
        if self.options.ignore_errored_state:
            log.write(f"strata: warning: {shown} holds a state terraform could not save; going on without it "
                      "(--ignore-errored-state)\n")
            return None
        data["errored_state"] = shown
        return Outcome(FAILED, f"{shown} holds the state terraform could not save in an earlier run: push it with "
                               f"`strata state push {stack.path or '.'} {shown}` (which then moves it aside), or "
                               "pass --ignore-errored-state to go on from the state as saved")

    def _unsaved(self, stack: Stack, done: Completed, log: IO[str], data: dict[str, Any]) -> Outcome:
        """terraform could not save the state (its backend failed) and wrote it to errored.tfstate instead."""
        shown = self.repo.display(os.path.relpath(self.repo.root / stack.path / ERRORED_STATE, self.repo.root))
        data["errored_state"] = shown
        data.update(add=None, change=None, destroy=None)
        log.write(f"strata: terraform could not save the state; it is in {shown}\n")
        why = "terraform was interrupted" if done.interrupted else last_error(done.output, stack.path)
        status = INTERRUPTED if done.interrupted else FAILED
        return Outcome(status, f"state not saved ({why}): terraform wrote it to {shown}; push it with "
                               f"`strata state push {stack.path or '.'} {shown}`")

    # -- inputs from dependency outputs ---------------------------------------------------------------

    def _inputs(self, stack: Stack) -> tuple[dict[str, Any], list[str]]:
        values: dict[str, dict[str, Any]] = {}
        mocked: list[str] = []
        for dep in stack.dependencies:
            if not dep.name or not dep.used:
                continue
            target = self.repo.stacks.get(dep.path)
            outputs = self.outputs.values(target) if target else None
            if outputs is None:
                if self.options.command == "run":
                    continue  # any terraform command: pass no made-up values; terraform asks if it needs them
                if self.options.command in MOCKS_ALLOWED and dep.mock_outputs is not None:
                    values[dep.name] = dep.mock_outputs
                    mocked.append(dep.name)
                    continue
                if self.options.command in MOCKS_ALLOWED:
                    hint = f"give the dependency block mock_outputs so that {self.options.command} has values"
                else:
                    hint = ("apply it first (or select it too, or add --include-dependencies); mock_outputs are "
                            "used only by plan, validate and destroy")
                raise StrataError(f'dependency "{dep.name}" ({dep.path}) has no state yet: {hint}', dep.source)
            values[dep.name] = outputs
        return resolve_inputs(stack, values, partial=self.options.command == "run", secrets=self.secrets), mocked

    def _outputs_from_terraform(self, stack: Stack) -> dict[str, Any] | None:
        """The slow path, for backends strata cannot read itself: init + terraform output -json."""
        log_path = self.log_dir / (stack.path.replace("/", "__") or "root") / "output.log"
        private_dir(log_path.parent)
        with open_log(log_path, self.secrets, append=True) as log:
            problem = self._ensure_init(stack, dict(self.base_env), log)
            if problem:
                raise StrataError(f"cannot read the outputs of {stack.path}: {problem.detail}")
            printed = io.StringIO()  # it prints sensitive values in clear: logged once they are known
            done = run(tf.output(self.binary.path), self.repo.root / stack.path, dict(self.base_env), self.group,
                       printed)
            try:
                outputs = json.loads(done.output or "{}")
            except ValueError:
                outputs = None
            self.secrets.add_outputs(outputs)
            log.write(printed.getvalue())
        if done.exit_code != 0:
            raise StrataError(f"cannot read the outputs of {stack.path}: {last_error(done.output, stack.path)}")
        if not isinstance(outputs, dict):
            raise StrataError(f"terraform output -json in {stack.path} did not print JSON")
        return outputs or None

    # -- init only when needed ------------------------------------------------------------------------

    def _code_files(self, stack: Stack, *extra: str) -> list[Path]:
        """The stack's own code, the code of every local module it uses, and ``extra`` globs of its folder."""
        folder = self.repo.root / stack.path
        files = [*code_files(folder), folder / ".terraform.lock.hcl"]
        for pattern in extra:
            files.extend(sorted(folder.glob(pattern)))
        for module in local_modules(folder):
            files.extend(code_files(module))
        return files

    def _digest(self, files: list[Path], seed: bytes) -> str:
        digest = hashlib.sha256(seed)
        for path in files:
            data = read_code(path)
            if data is not None:  # named from the repository root: a saved plan verifies in another clone
                digest.update(os.path.relpath(path, self.repo.root).encode() + b"\0" + data + b"\0")
        return digest.hexdigest()

    def _fingerprint(self, stack: Stack) -> str:
        seed = f"{self.repo.root}\n{self.binary.path}:{self.binary.version}\n{self.providers.config_text()}".encode()
        return self._digest(self._code_files(stack), seed)

    def _ensure_init(self, stack: Stack, env: dict[str, str], log: IO[str]) -> Outcome | None:
        folder = self.repo.root / stack.path
        stamp = folder / ".terraform" / INIT_STAMP
        # always first, stamp or not: it reads the code through read_code, so a FIFO or a device as a .tf
        # file fails the stack here instead of blocking terraform (which would outlive strata)
        fingerprint = self._fingerprint(stack)
        if read_code(stamp) == f"{fingerprint}\n".encode() and self.options.command != "init":
            return None  # the stamp too is read as a regular file: a committed link to /dev/zero must not hang
        argv = tf.init(self.binary.path)
        if self.options.command == "init":
            argv += self.options.terraform_args
        done = self._terraform(stack, argv, folder, env, log, shown=self.options.command == "init")
        if done.exit_code != 0:
            if done.interrupted:
                return Outcome(INTERRUPTED, "stopped by an interrupt during init")
            return Outcome(FAILED, f"terraform init failed: {last_error(done.output, stack.path)}")
        self.providers.harvest(folder)
        stamp.parent.mkdir(parents=True, exist_ok=True)
        stamp.write_text(self._fingerprint(stack) + "\n")
        return None

    # -- saved plans ----------------------------------------------------------------------------------

    def _plan_file(self, stack: Stack) -> Path:
        path = saved_plan_path(self.repo.root, stack.path)
        private_dir(path.parent)  # a plan holds every variable's value, secrets included
        return path

    def _config_digest(self, stack: Stack, inputs: dict[str, Any]) -> str:
        files = self._code_files(stack, *VARIABLE_FILES)
        return self._digest(files, json.dumps(inputs, sort_keys=True, default=str).encode())

    def _code_digest(self, stack: Stack) -> str:
        """The digest of the code alone (inputs apart): tells a plan whose code changed from one whose inputs did."""
        return self._digest(self._code_files(stack, *VARIABLE_FILES), b"code")

    def _keep_saved_plan(self, stack: Stack, inputs: dict[str, Any], data: dict[str, Any],
                         log: IO[str]) -> Outcome | None:
        """``plan --out --keep-valid``: the saved plan stays when it is still what applying would do.

        - code, inputs and state as when it was made: kept (no terraform run);
        - only the inputs differ (a dependency applied since changed its outputs: a dependent planned in a
          pull request cannot have seen them): None, the stack is planned again;
        - its code or its state changed (a new commit, an apply from elsewhere): refused, it must be reviewed
          again, as `apply --plan` would refuse it.
        """
        plan = self._plan_file(stack)
        meta_path = plan.with_suffix(".json")
        if not plan.is_file() or not meta_path.is_file():
            return None
        try:
            meta: dict[str, Any] = json.loads(meta_path.read_text())
        except (OSError, ValueError):
            return None  # a damaged record: the plan is made again
        if meta.get("sha256") != _sha256_of(plan):
            return Outcome(FAILED, f"the saved plan of {stack.path} is not the one `strata plan --out` made (the "
                                   "file changed since); remove it or plan without --keep-valid")
        if meta.get("code") != self._code_digest(stack):
            return Outcome(FAILED, f"the saved plan of {stack.path} is stale: its code changed since the plan was "
                                   "made; plan it without --keep-valid and review it again")
        moved = self._state_moved(stack, plan)
        if moved:
            return Outcome(FAILED, f"the saved plan of {stack.path} is stale: its state changed since the plan was "
                                   "made (an apply from elsewhere); plan it without --keep-valid and review it again")
        if meta.get("inputs") != _inputs_digest(inputs) or data.get("mocked") or meta.get("mocked_dependencies"):
            log.write("strata: planning again: the outputs of its dependencies changed since the saved plan\n")
            data["replanned"] = "the outputs of its dependencies changed since the saved plan"
            return None
        log.write(f"strata: the saved plan is still valid (made {meta.get('created', '?')}): kept\n")
        data["plan_file"] = self.repo.display(os.path.relpath(plan, self.repo.root))
        data["kept"] = True
        data.update({k: v for k, v in (meta.get("counts") or {}).items() if isinstance(v, int)})
        if meta.get("policy") is not None:
            data["policy"] = meta["policy"]
        return Outcome(OK if meta.get("changes") is False else CHANGES, "saved plan kept: still valid")

    def _state_moved(self, stack: Stack, plan: Path) -> bool | None:
        """Whether the stack's state is no longer the one ``plan`` was made from (lineage and serial of the
        prior state inside the plan file against the backend's); None when strata cannot read the backend
        (terraform then refuses a stale plan when it is applied)."""
        import zipfile

        try:
            with zipfile.ZipFile(plan) as archive:
                prior = _lineage_serial(archive.read("tfstate")) if "tfstate" in archive.namelist() else None
        except (OSError, zipfile.BadZipFile, KeyError):
            return None
        if stack.backend is None:
            return None
        backend = get_backend(stack.backend.type)
        try:
            current = backend.read_state(stack.backend.values(), self.repo.root / stack.path) if backend else None
        except (NotImplementedError, BackendError):
            return None
        now = _lineage_serial(current) if current is not None else None
        return prior != now

    def _write_plan_meta(self, stack: Stack, inputs: dict[str, Any], data: dict[str, Any]) -> None:
        plan = self._plan_file(stack)
        meta = {"stack": stack.path, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "mocked_dependencies": data.get("mocked", []), "config": self._config_digest(stack, inputs),
                "code": self._code_digest(stack), "inputs": _inputs_digest(inputs),
                "changes": data.get("changes"),
                "counts": {k: data[k] for k in ("add", "change", "destroy") if k in data},
                "terraform": self.binary.describe(), "sha256": _sha256_of(plan), "policy": data.get("policy")}
        write_atomic(plan.with_suffix(".json"), (json.dumps(meta, indent=2) + "\n").encode(), mode=SECRET)
        data["plan_file"] = self.repo.display(os.path.relpath(plan, self.repo.root))

    def _terraform(self, stack: Stack, argv: list[str], cwd: Path, env: dict[str, str], log: IO[str], *,
                   shown: bool = True) -> Completed:
        """Run terraform, trying again where terraform gives up on a lock that nothing holds any more.

        - Terraform's pg backend takes advisory lock -1 whenever it creates a state row (``init`` of a new
          stack) and tries it on every lock: another stack of the same database starting at that moment
          fails with "already locked for workspace creation", although nobody holds this stack's lock.
        - With ``-lock-timeout``, terraform gives up at once (not at the timeout) when it cannot read who
          holds the lock: S3's lock file, for one, is read after the conditional write that found it, and a
          holder that releases between the two leaves terraform with no lock info ("NoSuchKey").
        Both fail before anything ran, so strata runs the command again (within ``--lock-timeout``, which
        is passed on shortened by the time already spent). A real holder still fails at once without
        ``--lock-timeout``, naming the holder.
        """
        delay = 0.5
        creation_retries = 0
        orphan_cleared = False
        budget = duration_seconds(self.options.lock_timeout)
        deadline = time.monotonic() + budget
        while True:
            started = datetime.now(UTC) - timedelta(seconds=1)
            done = self._run_recorded(stack, argv, cwd, env, log, shown)
            if done.exit_code in (0, 2) or done.interrupted or self.group.interrupted:
                return done
            lock_failure = "Error acquiring the state lock" in done.output
            if lock_failure and not orphan_cleared and self._clear_own_orphan_lock(stack, started, log):
                orphan_cleared = True
                continue
            if "locked for workspace creation" in done.output and creation_retries < 5:
                creation_retries += 1
                log.write(f"strata: the pg backend's creation lock is busy (another stack is being created); "
                          f"trying again in {delay:.1f}s\n")
            elif lock_failure and budget > 0 and time.monotonic() + delay < deadline:
                log.write(f"strata: terraform gave up on the lock before --lock-timeout={self.options.lock_timeout} "
                          f"ran out (it could not read the holder's lock info); trying again in {delay:.1f}s\n")
            else:
                return done
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            if budget > 0:
                left = max(0, int(deadline - time.monotonic()))
                argv = [f"-lock-timeout={left}s" if a.startswith("-lock-timeout=") else a for a in argv]

    def _run_recorded(self, stack: Stack, argv: list[str], cwd: Path, env: dict[str, str], log: IO[str],
                      shown: bool = True) -> Completed:
        """One terraform process, writing to a file of the stack's log folder, recorded while it runs so that
        a later run sees it if this strata dies first (see :mod:`strata.run.running`)."""
        subcommand = next((a for a in argv[1:] if not a.startswith("-")), "terraform")
        folder = private_dir(self.log_dir / (stack.path.replace("/", "__") or "root"))
        output = folder / f"{subcommand}-{next(self._runs)}.out"
        records: list[Path] = []
        show = self.display.line if shown else self.display.init_line
        if self.options.color and shown and subcommand != "terraform":
            argv = [a for a in argv if a != "-no-color"]  # terraform's colours, on the user's terminal

        def started(pid: int) -> None:
            try:
                records.append(running.record(self.repo.root, stack.path, pid, subcommand, output))
            except OSError as exc:
                log.write(f"strata: warning: could not record the running terraform: {exc}\n")

        try:
            done = run(argv, cwd, env, self.group, log, lambda line: show(stack.path, self.secrets.redact(line)),
                       output=output, on_start=started)
            # what strata reads in the output (errors, counts, lock holders) is read without colours
            return dataclasses.replace(done, output=tf.ANSI.sub("", done.output)) if "\x1b[" in done.output else done
        finally:
            for record in records:
                running.forget(record)

    def _clear_own_orphan_lock(self, stack: Stack, started: datetime, log: IO[str]) -> bool:
        """A lock terraform itself took during the attempt that just failed, left behind.

        The AWS SDK retries a DynamoDB PutItem whose answer got lost (a slow or overloaded endpoint): the
        retry then finds terraform's own lock item and fails "already locked", and the item stays. The
        lock was created after the attempt started, by this user on this host, and no terraform runs in
        the stack any more: nobody else can hold it, so strata removes it and runs the command once more.
        """
        if stack.backend is None or stack.backend.type != "s3":
            return False
        try:
            with open_store(self.repo.root, stack) as store:
                holder = store.current_lock()
                if holder is None:
                    return False
                created = _parse_created(holder.created)
                mine = holder.who == LockInfo.new("probe").who
                if created is None or created < started or not mine or holder.strata_pid() is not None:
                    return False
                if live_local_holder(holder, self.repo.root / stack.path) is not None:
                    return False
                store.force_unlock(holder)
        except (NotImplementedError, BackendError, StrataError):
            return False
        log.write(f"strata: removed lock {holder.id}, left by this terraform's own retried request; "
                  "running the command again\n")
        return True

    def _remember(self, stack: Stack, operation: str, log: IO[str]) -> None:
        """Keep the current state in strata's history (local and pg; S3 versions objects itself)."""
        if stack.backend is None or stack.backend.type not in ("local", "pg"):
            return
        try:
            with open_store(self.repo.root, stack) as store:
                data = store.read()
                if data is not None and sound(data):
                    store.remember(data, operation)
        except (NotImplementedError, BackendError, StrataError, OSError) as exc:
            log.write(f"strata: warning: could not keep the state in strata's history: {exc}\n")

    def _lock_detail(self, stack: Stack, output: str) -> str:
        """Who holds the lock terraform could not take: asked of the backend itself (terraform prints the
        requester's own details for some backends, e.g. pg), else what terraform printed."""
        holder = None
        if stack.backend is not None:
            try:
                with open_store(self.repo.root, stack) as store:
                    holder = store.current_lock()
            except (NotImplementedError, BackendError, StrataError):
                holder = None
        if holder is not None:
            who = holder.describe()
            live = live_local_holder(holder, self.repo.root / stack.path)
            if live is not None:
                who += f" ({live})"
        else:
            fields = dict(re.findall(r"^[│ ]*(ID|Who|Operation|Created):\s+(.*?)\s*$", output, re.MULTILINE))
            who = " ".join(p for p in (fields.get("Who", "someone"), f"since {fields['Created']}" if "Created" in
                                       fields else "", f"({fields['Operation']})" if "Operation" in fields else "",
                                       f"lock ID {fields['ID']}" if "ID" in fields else "") if p)
        return f"the state is locked by {who}; retry with --lock-timeout, or see `strata locks`"

    def _local_state(self, stack: Stack) -> Path | None:
        """The file terraform keeps the stack's state in, for a local backend (None for the others)."""
        if stack.backend is None or stack.backend.type != "local":
            return None
        from strata.backends.local import LocalStore

        with open_store(self.repo.root, stack) as store:
            return store.path if isinstance(store, LocalStore) else None

    def _has_no_state(self, stack: Stack) -> bool:
        """True when the backend holds no state for the stack (an empty state still counts as state)."""
        if stack.backend is None:
            return True
        backend = get_backend(stack.backend.type)
        try:
            return backend is None or backend.read_state(stack.backend.values(), self.repo.root / stack.path) is None
        except (NotImplementedError, BackendError):
            return False  # cannot tell without terraform: let terraform destroy decide (and say why)

    def _saved_plan_meta(self, stack: Stack) -> dict[str, Any]:
        plan = self._plan_file(stack)
        meta_path = plan.with_suffix(".json")
        if not plan.is_file() or not meta_path.is_file():
            raise StrataError(f"no saved plan for {stack.path}: run `strata plan --out` first")
        meta: dict[str, Any] = json.loads(meta_path.read_text())
        if meta.get("mocked_dependencies"):
            raise StrataError(
                f"the saved plan of {stack.path} was made with mock outputs of "
                f"{', '.join(meta['mocked_dependencies'])}: it cannot be applied; apply those dependencies "
                "first, then plan again")
        return meta

    def _apply_argv(self, stack: Stack, inputs: dict[str, Any], data: dict[str, Any]) -> list[str]:
        if not self.options.saved_plans:
            return tf.apply(self.binary.path, lock_timeout=self.options.lock_timeout)
        plan = self._plan_file(stack)
        meta = self._saved_plan_meta(stack)
        if meta.get("config") != self._config_digest(stack, inputs):
            raise StrataError(f"the saved plan of {stack.path} is stale: its code or inputs changed since "
                              "`strata plan --out`; plan again")
        if meta.get("sha256") != _sha256_of(plan):
            raise StrataError(f"the saved plan of {stack.path} is not the one `strata plan --out` made (the file "
                              "changed since); plan again")
        self._check_plan_contents(stack, plan, inputs)
        data["plan_file"] = self.repo.display(os.path.relpath(plan, self.repo.root))
        from strata.policy.gate import admit

        data["policy"] = admit(self.repo.root, stack.path, meta, required=self.repo.settings.policy.enabled,
                               override=self.options.override_policy, run_id=self.run_id,
                               plan_sha256=meta.get("sha256"))
        return tf.apply(self.binary.path, plan_file=str(plan), lock_timeout=self.options.lock_timeout)

    def _check_plan_contents(self, stack: Stack, plan: Path, inputs: dict[str, Any]) -> None:
        """Terraform applies the configuration and the variables inside a plan file, not the checkout's: a plan
        made elsewhere (a pull request's job, whose code the pull request controls, packed with a record that
        says what it likes) must carry exactly this checkout's code and the inputs strata computes here."""
        from strata.run.planfile import configuration_differences, variable_differences

        folder = self.repo.root / stack.path
        differ = configuration_differences(plan, folder)
        if differ:
            more = f" (and {len(differ) - 1} more)" if len(differ) > 1 else ""
            raise StrataError(f"the saved plan of {stack.path} does not carry this checkout's code: {differ[0]}{more}; "
                              "it was made from other code: plan again")
        done = subprocess.run(tf.show_plan(self.binary.path, str(plan)), cwd=folder, env=self.base_env,
                              capture_output=True, text=True, check=False)
        try:
            shown = json.loads(done.stdout.strip().splitlines()[-1]) if done.returncode == 0 else None
        except (ValueError, IndexError):
            shown = None
        if not isinstance(shown, dict):
            raise StrataError(f"cannot read the saved plan of {stack.path} with terraform show: "
                              f"{last_error(done.stdout + done.stderr, stack.path)}")
        # the static inputs (strata's generated *.auto.tfvars) and those read from dependencies (TF_VAR_*)
        expected = {name: setting.plain() for name, setting in stack.inputs.items() if not setting.has_deferred()}
        expected.update(inputs)
        wrong = variable_differences(shown, expected, _tf_vars(inputs, folder))
        if wrong:
            raise StrataError(f"the saved plan of {stack.path} was made with other inputs than strata passes here "
                              f"({', '.join(wrong)}): plan again")

    def _check_policy(self, stack: Stack, env: dict[str, str]) -> dict[str, Any]:
        """The policy check of the plan just saved (checkov on its JSON): kept in the plan's record."""
        from strata.policy.check import check_plan

        assert self.options.policy is not None
        folder = self.log_dir / (stack.path.replace("/", "__") or "root")
        with open_log(folder / "policy.log", self.secrets) as policy_log:  # terraform.log stays terraform's
            return check_plan(self.options.policy, stack.path, self._plan_file(stack), self.repo.root / stack.path,
                              env, self.binary.path, self.group, self.secrets, policy_log,
                              work_dir=self.log_dir).to_json()


def _inputs_digest(inputs: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()


def _lineage_serial(raw: bytes) -> tuple[str, int] | None:
    """(lineage, serial) of a state document; None for an empty one (no state yet)."""
    try:
        doc = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(doc, dict) or not doc.get("lineage"):
        return None
    return str(doc["lineage"]), int(doc.get("serial") or 0)


def saved_plan_path(root: Path, stack_path: str) -> Path:
    """Where `plan --out` saves a stack's plan (its record is the same name with .json)."""
    return root / ".strata" / "plans" / (stack_path or "_root") / "plan.tfplan"


def _sha256_of(path: Path) -> str | None:
    """The digest of a saved plan (None when there is none): ties the plan file to the record made with it."""
    try:
        with open(path, "rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except OSError:
        return None


def _file_identity(path: Path) -> tuple[int, int, int] | None:
    """What tells one version of a file from the next (None when there is no file)."""
    try:
        found = path.stat()
    except OSError:
        return None
    return found.st_ino, found.st_mtime_ns, found.st_size


def _signal_name(number: int) -> str:
    try:
        return f"{number} ({signal.Signals(number).name})"
    except ValueError:
        return str(number)


def _tf_vars(inputs: dict[str, Any], folder: Path) -> dict[str, str]:
    """Inputs as TF_VAR_*, each written so that terraform reads back the value itself: how it reads one
    depends on the variable's declared type (strata.terraform.variables)."""
    try:
        declared = declared_variables(folder)
    except ConfigError:
        declared = {}  # code strata cannot read: terraform reports it; meanwhile strings go as they are
    return {f"TF_VAR_{name}": tf_var_text(value, declared.get(name)) for name, value in inputs.items()}


def _private_file(path: Path) -> None:
    """A saved plan or a local state holds every variable's value, secrets included: terraform creates it with
    the umask's mode (inside a 0700 folder, so nobody else could read it meanwhile); make it 0600."""
    if path.is_file():
        os.chmod(path, SECRET)


def _parse_created(text: str) -> datetime | None:
    """A Go RFC 3339 time as Terraform writes LockInfo.Created ("2026-01-02T03:04:05.123456789Z")."""
    found = re.match(r"(\d{4}-\d{2}-\d{2})[T ](\d{2}:\d{2}:\d{2})", text)
    if found is None:
        return None
    return datetime.strptime(f"{found[1]}T{found[2]}", "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)


def last_error(output: str, folder: str = "") -> str:
    """Terraform's first error with its file:line (relative to the repository when ``folder`` is the stack's
    path), and how many more; else its last line."""
    return tf.first_error(output, folder)


def default_cli_config() -> str | None:
    home_rc = os.path.expanduser("~/.terraformrc")
    return home_rc if os.path.isfile(home_rc) else None
