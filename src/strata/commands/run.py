"""strata plan | apply | destroy | init | refresh | run: terraform over the selected stacks."""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from strata import generate as gen
from strata.atomic import PUBLIC, write_atomic
from strata.errors import EXIT_ERROR, EXIT_POLICY, ProblemsFound, StrataError, UsageError
from strata.model.repository import Repository
from strata.model.selection import Selection, select
from strata.model.stack import Stack
from strata.output import color_enabled, err, json_on_stdout, out
from strata.output import confirm as ask
from strata.run import report as reporting
from strata.run.display import Display, LiveView, Passthrough, PrefixedLines
from strata.run.engine import Runner, RunOptions, RunReport, StackResult
from strata.terraform.binary import TerraformBinary
from strata.validate import validate
from strata.workspace import Workspace

if TYPE_CHECKING:
    from strata.run.redact import Secret
    from strata.run.summary import StackPlan


def prepare(ws: Workspace, repo: Repository, stacks: list[Stack], terraform_args: Sequence[str] = ()) -> None:
    """Refuse a configuration validate rejects (the variables ``-var`` sets after ``--`` are set); write the
    generated files of the stacks and their dependencies."""
    version = ws.terraform().version
    errors = [d for d in validate(repo, version, terraform_args) if d.severity == "error"]
    if errors:
        raise ProblemsFound(errors)
    needed = repo.graph.closure({s.path for s in stacks}, dependencies=True)
    files = gen.plan_files(repo, [repo.stacks[p] for p in sorted(needed)], version)
    conflicts = gen.conflicts(files)
    if conflicts:
        raise ProblemsFound(conflicts)
    gen.write_files(files)


def confirm(command: str, stacks: list[Stack], yes: bool) -> None:
    if not yes:
        shown = [f"  {s.path or '.'}" for s in stacks[:30]]
        more = [f"  ... and {len(stacks) - 30} more"] if len(stacks) > 30 else []
        err("\n".join([f"{command} will run in:", *shown, *more]))
        ask(f"{command} changes infrastructure in {len(stacks)} stack(s)", f"{command} {len(stacks)} stack(s)?",
            f"{command} cancelled")


def run(ws: Workspace, selection: Selection, options: RunOptions, *, include_dependencies: bool = False,
        include_dependents: bool = False, yes: bool = False, detailed_exitcode: bool = False,
        json_report: bool = False, quiet: bool = False, bootstrap: bool = False,
        summary_md: Path | None = None, summary_format: str = "github", terraform_report: Path | None = None,
        non_interactive: bool = False, check_policy: bool = False) -> int:
    repo = ws.repository()
    repo.require_valid()
    stacks = select(repo, selection, ws.cwd, dependencies=include_dependencies, dependents=include_dependents)
    if not stacks:
        err("no stacks selected")
        if summary_md is not None:  # the pull request's comment must say so, not go on showing an earlier plan
            _write_parts(render_summary(repo, [], summary_format), summary_md)
        return 0
    from strata.migrate.journal import refuse_if_interrupted

    refuse_if_interrupted(repo.root, {s.path for s in stacks})
    if summary_md is not None:
        writable_folder(summary_md.parent, "--summary-md")  # before the plan, not after it
    if terraform_report is not None:
        writable_folder(terraform_report, "--terraform-report")
    binary = ws.terraform()
    options = with_policy(repo, options, check_policy)
    prepare(ws, repo, stacks, options.terraform_args)
    if bootstrap:
        from strata.commands.bootstrap import bootstrap as create_backends
        from strata.commands.bootstrap import targets_for

        needed = repo.graph.closure({s.path for s in stacks}, dependencies=True)
        changes = create_backends(targets_for(ws, [repo.stacks[p] for p in sorted(needed)]), dry_run=False)
        made = [c for c in changes if c.action in ("created", "changed")]
        err(f"backends ready: {len(made)} resource(s) created or repaired, "
            f"{len(changes) - len(made)} already in place")
    if options.command == "apply" and not options.saved_plans and (not yes or options.policy is not None):
        # with policy checks, apply --yes too applies only checked plans: plan, check, apply those plans
        return apply_as_shown(repo, binary, stacks, options, quiet=quiet, json_report=json_report,
                              non_interactive=non_interactive, ask_first=not yes)
    if options.command == "destroy" and not yes:
        if non_interactive:
            raise UsageError("destroy changes infrastructure: pass --yes (--non-interactive never asks)")
        confirm(options.command, stacks, yes)
    runner, result = execute(repo, binary, options, stacks, quiet)
    code = reporting.exit_code(result, detailed_exitcode)
    reporting.print_summary(result, to_stderr=stdout_taken(len(stacks), quiet))
    if summary_md is not None or terraform_report is not None:
        why = why_affected(repo, selection, stacks, ws.cwd, widened=include_dependencies or include_dependents)
        plans = stack_plans(runner, result, why)
        if summary_md is not None:
            write_summary(runner, plans, summary_md, flavour=summary_format)
        if terraform_report is not None:
            write_terraform_reports(plans, terraform_report)
    if json_report:
        reporting.print_report(result, code)
    return code


def with_policy(repo: Repository, options: RunOptions, asked: bool) -> RunOptions:
    """Plans are checked with ``plan --policy``, or on every plan with ``policy { enabled = true }`` (``apply``
    without ``--plan`` plans first, so it checks too); a checked plan is always saved, its check in its record."""
    settings = repo.settings.policy
    planning = options.command == "plan" or (options.command == "apply" and not options.saved_plans)
    if not planning or not (asked or settings.enabled):
        return options
    from strata.policy.check import prepare as prepare_policy

    return dataclasses.replace(options, policy=prepare_policy(repo.root, settings),
                               save_plans=options.save_plans or options.command == "plan")


def execute(repo: Repository, binary: TerraformBinary, options: RunOptions, stacks: list[Stack],
            quiet: bool) -> tuple[Runner, RunReport]:
    display = choose_display(len(stacks), quiet, options.command)
    color = ((isinstance(display, Passthrough) and display.stream.isatty() and color_enabled(display.stream))
             or (isinstance(display, LiveView) and color_enabled(sys.stderr)))
    runner = Runner(repo, binary, dataclasses.replace(options, color=color), display)
    try:
        return runner, runner.execute(stacks)
    finally:
        display.close()


def apply_as_shown(repo: Repository, binary: TerraformBinary, stacks: list[Stack], options: RunOptions, *,
                   quiet: bool, json_report: bool, non_interactive: bool, ask_first: bool = True) -> int:
    """``apply`` without ``--yes``: plan every stack, show the diffs and the summary, ask once, then apply
    exactly those saved plans (as terraform's own apply does), never a second, different plan.

    A stack is planned again, shown, and asked about again before it is applied when its shown plan cannot be
    applied as shown: one made with placeholder outputs of a dependency that had no state yet
    (``mock_outputs``), one whose code or inputs changed after it was shown (the engine refuses it as stale),
    and every stack not applied yet downstream of one just applied (its plan, even "no changes", was made
    with the outputs before). The plans a round made and did not apply are removed, so a later
    ``apply --plan`` never applies a plan that was declined. The diffs are shown even with ``--quiet``.

    With policy checks (``ask_first`` False: ``apply --yes``, which comes here only then), a plan that failed its
    check stops the apply before anything is applied, unless ``--override-policy REASON``.
    """
    if ask_first and (non_interactive or not sys.stdin.isatty()):  # refused before planning: nobody could answer
        why = "--non-interactive never asks" if non_interactive else "there is no terminal to ask"
        raise UsageError(f"apply changes infrastructure in {len(stacks)} stack(s): pass --yes to apply without "
                         f"asking ({why})")
    by_path = {s.path: s for s in stacks}
    pending = [s.path for s in stacks]
    applied: list[StackResult] = []
    last: RunReport | None = None
    for _round in range(len(stacks) + 1):
        plan_options = dataclasses.replace(options, command="plan", save_plans=True, saved_plans=False)
        runner, planned = execute(repo, binary, plan_options, [by_path[p] for p in pending], quiet=False)
        try:
            reporting.print_summary(planned, to_stderr=stdout_taken(len(pending), False))
            last = planned
            code = reporting.exit_code(planned, False)
            if code == EXIT_POLICY and options.override_policy is None:
                err("nothing applied: a policy check did not pass (see above); fix the plans, or apply anyway with "
                    "--override-policy \"REASON\" (recorded)")
                return _finish(planned, applied, json_report, code)
            if code not in (0, EXIT_POLICY):
                err("nothing more applied: the plan failed")
                return _finish(planned, applied, json_report, code)
            ready = [r.path for r in planned.results if r.status == "changes" and not r.mocked]
            placeholders = [r.path for r in planned.results if r.mocked]
            if not ready:
                if placeholders:
                    err(f"nothing can be applied as planned: {len(placeholders)} stack(s) were planned with "
                        "placeholder outputs (mock_outputs) of dependencies that are not applied yet; select those "
                        "dependencies too")
                    return _finish(planned, applied, json_report, EXIT_ERROR)
                (err if json_on_stdout() else out)("nothing to apply: the infrastructure matches the configuration")
                return _finish(planned, applied, json_report, 0)
            later = f" ({len(placeholders)} more, planned with placeholder outputs, come next)" if placeholders else ""
            try:
                if ask_first:
                    ask(f"apply changes infrastructure in {len(ready)} stack(s)",
                        f"Apply the {len(ready)} plan(s) shown above{later}?", "apply cancelled")
            except (UsageError, EOFError):
                done = f"; {len(applied)} stack(s) were applied in earlier rounds" if applied else ": nothing applied"
                err(f"apply cancelled{done}")
                return _finish(planned, applied, json_report, EXIT_ERROR)
            apply_options = dataclasses.replace(options, saved_plans=True, save_plans=False)
            _, result = execute(repo, binary, apply_options, [by_path[p] for p in ready], quiet)
        finally:
            for path in pending:  # a plan shown and not applied (declined, failed, stale) must not stay
                plan_file = runner.plan_dir / (path or "_root") / "plan.tfplan"
                plan_file.unlink(missing_ok=True)
                plan_file.with_suffix(".json").unlink(missing_ok=True)
        reporting.print_summary(result, to_stderr=stdout_taken(len(ready), quiet))
        last = result
        stale = {r.path for r in result.results if r.status == "failed" and "saved plan" in r.detail}
        skipped = {r.path for r in result.results if r.status == "skipped"}
        done_now = {r.path for r in result.results} - stale - skipped
        applied.extend(r for r in result.results if r.path in done_now)
        if result.interrupted or any(r.status in ("failed", "interrupted") for r in applied):
            return _finish(result, applied, json_report, reporting.exit_code(result, False))
        finished = {r.path for r in applied}
        downstream = repo.graph.closure(done_now, dependents=True) & set(by_path)
        pending = sorted((stale | skipped | set(placeholders) | downstream) - finished)
        if not pending:
            return _finish(result, applied, json_report, 0)
        err(f"{len(pending)} stack(s) are planned again before anything more is applied: their code or inputs "
            "changed since they were shown, a dependency was just applied, or they were planned with placeholder "
            "outputs")
    assert last is not None
    return _finish(last, applied, json_report, EXIT_ERROR)


def _finish(last: RunReport, applied: list[StackResult], json_report: bool, code: int) -> int:
    """The JSON report of an apply as shown: every stack applied across its rounds, else the last report."""
    if json_report:
        report = dataclasses.replace(last, command="apply", results=applied) if applied else last
        reporting.print_report(report, code)
    return code


def passthrough(count: int, quiet: bool) -> bool:
    """Whether stdout carries terraform's own output (one stack, not --quiet): strata's words go to stderr."""
    return count == 1 and not quiet


def stdout_taken(count: int, quiet: bool) -> bool:
    """Whether stdout carries terraform's own output or the JSON report (``--json -``): strata's words, and
    then terraform's too, go to stderr."""
    return passthrough(count, quiet) or json_on_stdout()


def choose_display(count: int, quiet: bool, command: str = "plan") -> Display:
    """One stack: terraform's own output; many on a terminal: the live view with each diff once finished;
    otherwise (CI, pipes) prefixed whole lines. ``--quiet`` and STRATA_NO_LIVE keep the prefixed lines.
    With the JSON report on stdout, terraform's output and the lines go to stderr."""
    stream = sys.stderr if json_on_stdout() else sys.stdout
    if passthrough(count, quiet):
        return Passthrough(stream)
    if quiet:
        return PrefixedLines(stream, quiet=True)
    if sys.stderr.isatty() and (sys.stdout.isatty() or json_on_stdout()) and not os.environ.get("STRATA_NO_LIVE"):
        # (stdout piped or redirected: the lines go there)
        return LiveView(count, color=color_enabled(sys.stderr), everything=command == "run")
    return PrefixedLines(stream)


def why_affected(repo: Repository, selection: Selection, stacks: list[Stack], cwd: Path, *,
                 widened: bool) -> dict[str, str]:
    """Why each stack is in the run, for the summary's table: with ``--changed`` the reasons ``strata ls
    --changed --explain`` gives, else "selected"; stacks ``--include-dependencies``/``--include-dependents``
    brought in say so."""
    from strata.run.summary import why_text

    changes = selection.change_set
    picked = {s.path for s in selection.apply(repo, cwd)} if widened else {s.path for s in stacks}
    dependencies = repo.graph.closure(picked, dependencies=True)
    why = {}
    for stack in stacks:
        if changes is not None and stack.path in changes.affected:
            why[stack.path] = why_text(stack.path, changes.affected[stack.path].reasons)
        elif stack.path in picked:
            why[stack.path] = "selected"
        elif stack.path in dependencies:
            why[stack.path] = "a selected stack depends on it (--include-dependencies)"
        else:
            why[stack.path] = "depends on a selected stack (--include-dependents)"
    return why


def stack_plans(runner: Runner, result: RunReport, why: dict[str, str]) -> list[StackPlan]:
    """Each planned stack's plan JSON (``terraform show -json``) and plan text (its log, without strata's
    ``$ terraform ...`` command lines, which name the runner's paths)."""
    import json
    import re
    import subprocess

    from strata.policy.check import summary_of
    from strata.run.summary import StackPlan

    echo = re.compile(r"(?m)^\$ " + re.escape(str(runner.binary.path)) + r"(?: .*)?\n?")
    plans = []
    for stack_result in result.results:
        stack_dir = runner.repo.root / stack_result.path
        plan_file = runner.plan_dir / (stack_result.path or "_root") / "plan.tfplan"
        plan_json = None
        if stack_result.status in ("ok", "changes") and plan_file.is_file():
            proc = subprocess.run([runner.binary.path, "show", "-json", str(plan_file)], cwd=stack_dir,
                                  env=runner.base_env, capture_output=True, text=True, check=False)
            if proc.returncode == 0:
                plan_json = json.loads(proc.stdout)
        log = runner.log_dir / (stack_result.path.replace("/", "__") or "root") / "terraform.log"
        text = log.read_text(errors="replace") if log.is_file() else ""
        marker = text.rfind("Terraform has been successfully initialized")
        if marker >= 0:
            text = text[text.find("\n", marker) + 1:]
        text = echo.sub("", re.sub(r"\x1b\[[0-9;]*m", "", text))
        stack = runner.repo.stacks.get(stack_result.path)
        plans.append(StackPlan(stack_result.path, stack_result.status, plan_json, text, stack_result.detail,
                               why=why.get(stack_result.path), environment=stack.environment if stack else None,
                               policy=summary_of(stack_result.policy)))
    return plans


# folders CI systems name in variables: the checkout, the runner's temporary and work folders
CI_FOLDERS = ("GITHUB_WORKSPACE", "RUNNER_TEMP", "RUNNER_TOOL_CACHE", "CI_PROJECT_DIR", "CI_BUILDS_DIR",
              "BUILD_SOURCESDIRECTORY", "AGENT_BUILDDIRECTORY", "AGENT_TEMPDIRECTORY", "AGENT_TOOLSDIRECTORY",
              "PIPELINE_WORKSPACE")


def hidden_paths(root: Path) -> dict[str, str]:
    """The absolute paths of this machine a summary must not show, and what it shows instead: the repository
    (relative paths), the CI system's folders (``$GITHUB_WORKSPACE``...), the temporary and home folders."""
    import tempfile

    paths: dict[str, str] = {}
    home = os.path.expanduser("~")
    if home not in ("/", "~", ""):
        paths[home] = "~"
    for folder, shown in ((tempfile.gettempdir(), "$TMPDIR"), *((os.environ.get(v, ""), f"${v}") for v in CI_FOLDERS)):
        if folder.startswith("/") and folder.rstrip("/"):
            paths[folder] = paths[os.path.realpath(folder)] = shown
    paths[str(root)] = paths[os.path.realpath(root)] = "."
    return paths


def writable_folder(folder: Path, option: str) -> None:
    """``folder`` exists (made if need be) and is a folder, or a clear error."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StrataError(f"{option}: cannot write into {folder}: {exc.strerror or exc}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StrataError(f"{option}: cannot write into {folder}: permission denied")


def protected_environments(repo: Repository) -> set[str]:
    """The environments whose apply waits for an approval (the summary's next step names them)."""
    from strata.ci.settings import environments, is_protected

    return {env for env in environments(repo) if is_protected(repo, env)}


def write_summary(runner: Runner, plans: list[StackPlan], target: Path, *, flavour: str = "github") -> list[Path]:
    """The plan as Markdown for a pull-request comment (several files when it exceeds one comment)."""
    return _write_parts(render_summary(runner.repo, plans, flavour, runner.secrets.values), target)


def render_summary(repo: Repository, plans: list[StackPlan], flavour: str,
                   secrets: Iterable[Secret] = ()) -> list[str]:
    """The summary's parts: the plans, the commit reviewed, the protected environments, no machine paths."""
    from strata.ci.commit import reviewed_commit
    from strata.run.summary import render

    return render(plans, secrets=secrets, flavour=flavour, commit=reviewed_commit(repo.root),
                  protected=protected_environments(repo), hide_paths=hidden_paths(repo.root))


def _write_parts(parts: list[str], target: Path) -> list[Path]:
    written = []
    for n, part in enumerate(parts, start=1):
        path = target if n == 1 else target.with_name(f"{target.stem}-{n}{target.suffix}")
        try:
            write_atomic(path, part.encode("utf-8"), mode=PUBLIC)  # redacted: meant to be posted
        except OSError as exc:
            raise StrataError(f"--summary-md: cannot write {path}: {exc.strerror or exc}") from None
        written.append(path)
    err(f"plan summary: {', '.join(str(p) for p in written)}")
    return written


def write_terraform_reports(plans: list[StackPlan], folder: Path) -> list[Path]:
    """GitLab Terraform reports (counts only), one per stack with a plan."""
    from strata.run import terraform_report

    try:
        written = terraform_report.write({p.stack: p.plan_json for p in plans if p.plan_json is not None}, folder)
    except OSError as exc:
        raise StrataError(f"--terraform-report: cannot write into {folder}: {exc.strerror or exc}") from None
    err(f"terraform reports: {len(written)} in {folder}")
    return written
