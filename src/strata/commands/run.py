"""strata plan | apply | destroy | init | refresh | run: terraform over the selected stacks."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from strata import generate as gen
from strata.atomic import PUBLIC, write_atomic
from strata.errors import ProblemsFound
from strata.model.repository import Repository
from strata.model.selection import Selection, select
from strata.model.stack import Stack
from strata.output import color_enabled, err
from strata.output import confirm as ask
from strata.run import report as reporting
from strata.run.display import Display, LiveView, PrefixedLines
from strata.run.engine import Runner, RunOptions, RunReport
from strata.validate import validate
from strata.workspace import Workspace


def prepare(ws: Workspace, repo: Repository, stacks: list[Stack]) -> None:
    """Refuse a configuration validate rejects; write the generated files of the stacks and their dependencies."""
    version = ws.terraform().version
    errors = [d for d in validate(repo, version) if d.severity == "error"]
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
        ask(f"{command} changes infrastructure in {len(stacks)} stack(s)", f"{command} {len(stacks)} stack(s)?",
            f"{command} cancelled")


def run(ws: Workspace, selection: Selection, options: RunOptions, *, include_dependencies: bool = False,
        include_dependents: bool = False, yes: bool = False, detailed_exitcode: bool = False,
        json_report: Path | None = None, quiet: bool = False, bootstrap: bool = False,
        summary_md: Path | None = None) -> int:
    repo = ws.repository()
    repo.require_valid()
    stacks = select(repo, selection, ws.cwd, dependencies=include_dependencies, dependents=include_dependents)
    if not stacks:
        err("no stacks selected")
        return 0
    from strata.migrate.journal import refuse_if_interrupted

    refuse_if_interrupted(repo.root, {s.path for s in stacks})
    binary = ws.terraform()
    prepare(ws, repo, stacks)
    if bootstrap:
        from strata.commands.bootstrap import bootstrap as create_backends
        from strata.commands.bootstrap import targets_for

        needed = repo.graph.closure({s.path for s in stacks}, dependencies=True)
        changes = create_backends(targets_for(ws, [repo.stacks[p] for p in sorted(needed)]), dry_run=False)
        made = [c for c in changes if c.action in ("created", "changed")]
        err(f"backends ready: {len(made)} resource(s) created or repaired, "
            f"{len(changes) - len(made)} already in place")
    if options.command in ("apply", "destroy") and not options.saved_plans:
        confirm(options.command, stacks, yes)
    display: Display
    if sys.stderr.isatty() and color_enabled(sys.stderr) and not os.environ.get("STRATA_NO_LIVE"):
        display = LiveView(len(stacks))
    else:
        display = PrefixedLines(quiet=quiet)
    runner = Runner(repo, binary, options, display)
    try:
        result = runner.execute(stacks)
    finally:
        display.close()
    code = reporting.exit_code(result, detailed_exitcode)
    reporting.print_summary(result)
    if summary_md is not None:
        write_summary(runner, result, summary_md)
    if json_report is not None:
        reporting.write_json(result, code, json_report)
    return code


def write_summary(runner: Runner, result: RunReport, target: Path) -> list[Path]:
    """The plan as Markdown for a pull-request comment (several files when it exceeds one comment)."""
    import json
    import re
    import subprocess

    from strata.run.summary import StackPlan, render

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
        text = re.sub(r"\x1b\[[0-9;]*m", "", text)
        plans.append(StackPlan(stack_result.path, stack_result.status, plan_json, text, stack_result.detail))
    parts = render(plans, secrets=runner.secrets.values)
    written = []
    for n, part in enumerate(parts, start=1):
        path = target if n == 1 else target.with_name(f"{target.stem}-{n}{target.suffix}")
        write_atomic(path, part.encode("utf-8"), mode=PUBLIC)  # redacted: meant to be posted
        written.append(path)
    err(f"plan summary: {', '.join(str(p) for p in written)}")
    return written
