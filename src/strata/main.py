"""The command line: argument parsing only. Each command's work lives in strata.commands.<name>.

Imports of the commands (and of everything heavy) happen inside the command functions, so
``strata --help`` stays fast.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import click

from strata import __version__
from strata.errors import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_USAGE, ProblemsFound, StrataError

F = TypeVar("F", bound=Callable[..., Any])

EPILOG = """\b
Exit codes: 0 success; 1 errors (configuration, validation, failed stacks);
2 changes (plan --detailed-exitcode); 3 a policy check failed; 64 wrong usage; 130 interrupted.
Set NO_COLOR (or pass --no-color) for plain output."""


# Terraform's single-dash spellings of what strata spells otherwise; any other single-dash word is a terraform
# flag, which goes after `--`.
_TERRAFORM_SPELLINGS = {"chdir": "-C DIR (or --chdir DIR), before the command", "auto-approve": "--yes",
                        "lock-timeout": "--lock-timeout", "parallelism": "-j N (or --parallelism N)",
                        "no-color": "--no-color", "json": "--json", "help": "--help", "version": "--version",
                        "out": "--out (on plan)", "detailed-exitcode": "--detailed-exitcode (on plan)"}
# Flags strata gives terraform itself on plan/apply/destroy/init/refresh: after `--` they would override strata's
# (a user's -out would leave strata's saved plan stale), so they are refused there with strata's spelling.
_OWNED_AFTER_DASHES = {"-out": "--out (strata keeps the plan for apply --plan)", "-no-color": "--no-color",
                       "-input": "nothing: terraform never asks for input under strata",
                       "-lock-timeout": "--lock-timeout", "-detailed-exitcode": "--detailed-exitcode",
                       "-auto-approve": "--yes", "-json": "--json (strata's report; terraform's -json stream "
                       "would hide the diff and what strata reads in it)"}
_TAKES_TERRAFORM_FLAGS = ("plan", "apply", "destroy", "init", "refresh", "run")


def refuse_terraform_spellings(args: list[str], command: str | None) -> None:
    """``-auto-approve``, ``-chdir=x``, ``-target=x`` before ``--`` are terraform's spellings: click would read
    them as bundles of short options ("no such option -a"); say what strata calls them instead."""
    import re

    for arg in args:
        if arg == "--":
            return
        found = re.fullmatch(r"-([a-z][a-z-]{2,})(=.*)?", arg, re.DOTALL)  # -target=x, never -j4 or -qy
        if found is None:
            continue
        word = found[1]
        if word in _TERRAFORM_SPELLINGS:
            raise click.UsageError(f"{arg} is terraform's spelling: strata's is {_TERRAFORM_SPELLINGS[word]}")
        if command is not None and command not in _TAKES_TERRAFORM_FLAGS:
            raise click.UsageError(f"no such option: {arg}")
        example = f"strata {command or 'plan'} STACK -- {arg}"
        raise click.UsageError(f"{arg} is a terraform flag: give terraform's flags after --, e.g. {example}")


def spell_json_target(args: list[str]) -> list[str]:
    """``--json`` takes the next word as its FILE only when that word is ``-`` or ends with ``.json``, so that
    ``strata ls --json production`` lists production; ``--json=FILE`` always names a file. Rewrites every
    ``--json`` before ``--`` as ``--json=TARGET`` (``-``: stdout)."""
    spelled: list[str] = []
    at = 0
    while at < len(args):
        arg = args[at]
        if arg == "--":
            return spelled + args[at:]
        if arg == "--json":
            following = args[at + 1] if at + 1 < len(args) else ""
            if following == "-" or following.endswith(".json"):
                spelled.append(f"--json={following}")
                at += 2
                continue
            arg = "--json=-"
        spelled.append(arg)
        at += 1
    return spelled


class _StrataCommand(click.Command):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        from strata.output import send_json_to

        refuse_terraform_spellings(args, self.name)
        send_json_to(None)  # one command per process, but tests run several in one
        return super().parse_args(ctx, spell_json_target(args))


class _StrataGroup(click.Group):
    command_class = _StrataCommand
    group_class = type  # sub-groups (state, ci) are _StrataGroups too

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        refuse_terraform_spellings(args[:1], None)  # before the command: strata -chdir=x plan
        return super().parse_args(ctx, args)


class _SplitAtDashes(_StrataCommand):
    """``strata plan|apply|... [selection] -- ARGS``: what follows ``--`` is terraform's, never parsed by strata."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if "--" in args:
            at = args.index("--")
            ctx.meta["terraform_args"] = args[at + 1:]
            args = args[:at]
        else:
            ctx.meta["terraform_args"] = []
        return super().parse_args(ctx, args)


@click.group(cls=_StrataGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=EPILOG)
@click.option("--version", is_flag=True, expose_value=False, is_eager=True, callback=lambda ctx, _p, value:
              _print_version(ctx) if value else None,
              help="Show strata's version and the terraform/tofu binary it would use, then exit.")
@click.option("-C", "--chdir", type=click.Path(file_okay=False, path_type=Path),
              help="Run as if strata was started in DIR (like git -C).")
@click.option("--no-color", is_flag=True, help="Plain output without colours (also: NO_COLOR=1).")
@click.pass_context
def cli(ctx: click.Context, chdir: Path | None, no_color: bool) -> None:
    """strata: layered Terraform/OpenTofu across environments, regions, layers and clients.

    Every stack (a folder whose strata.hcl has a stack {} block) gets its own isolated state;
    configuration is inherited from every strata.hcl above it.
    """
    from strata.workspace import Workspace

    if no_color:
        from strata.output import disable_color

        disable_color()
    cwd = Path.cwd()
    if chdir is not None:
        if not chdir.is_dir():
            raise click.BadParameter(f"{chdir} is not a folder", param_hint="-C")
        cwd = chdir.resolve()
    ctx.obj = Workspace(cwd=cwd)


def _print_version(ctx: click.Context) -> None:
    """strata's version (distribution tfstrata), and which terraform or tofu a run here would use."""
    from strata.errors import StrataError
    from strata.terraform.binary import find_binary
    from strata.workspace import Workspace

    click.echo(f"strata {__version__} (tfstrata)")
    ws = Workspace(cwd=Path.cwd())
    try:
        configured, cache = ws.repository().settings.terraform_binary, ws.cache_dir
    except StrataError:  # outside a repository, or its configuration has errors: what PATH offers
        configured, cache = "terraform", None
    try:
        click.echo(find_binary(configured, cache).describe())
    except StrataError as exc:
        click.echo(f"terraform: none usable: {exc}")
    ctx.exit(0)


def complete(kind: str, incomplete: str) -> list[Any]:
    """Shell completion of stack paths (``path``: also the folders above them; ``stack``: stacks only) and of
    dimension values, from the repository around the working directory; nothing when there is none."""
    from click.shell_completion import CompletionItem

    from strata.errors import StrataError
    from strata.model.selection import stack_folders
    from strata.workspace import Workspace

    try:
        repo = Workspace(cwd=Path.cwd()).repository()
    except StrataError:
        return []
    stacks = list(repo.stacks.values())
    if kind in ("path", "stack"):
        names = set(repo.stacks) if kind == "stack" else stack_folders(repo.stacks)
    elif kind == "tag":
        names = {tag for s in stacks for tag in s.tags}
    else:
        dimension = {"account": "account_id"}.get(kind, kind)
        names = {v for s in stacks if (v := s.dimension(dimension))}
        if kind == "layer":  # a layer may be named without its number
            names |= {v.partition("-")[2] for v in list(names) if v.partition("-")[0].isdigit()}
    return [CompletionItem(n) for n in sorted(names) if n and n.startswith(incomplete)]


def _json_target(_ctx: click.Context, _param: click.Parameter, value: str | None) -> bool:
    from strata.output import send_json_to

    if value == "":
        raise click.BadParameter("--json= names no file: give --json FILE, or --json alone for stdout",
                                 param_hint="--json")
    send_json_to(value)
    return value is not None


def json_option(help: str, schema: str, name: str = "as_json") -> Callable[[F], F]:
    """``--json`` on every command: the document on stdout (``--json``, ``--json -``) or in a file (``--json
    FILE.json``, ``--json=FILE``); the command gets ``name`` as a bool, where the document goes is output.py's.
    ``schema`` names the document's JSON Schema in docs/schemas/ (the tests hold every document to it)."""
    return click.option("--json", name, metavar="[FILE]", callback=_json_target,
                        help=f"{help} On stdout, or in FILE with --json FILE.json or --json=FILE "
                             f"(docs/schemas/{schema}.schema.json).")


def selection_options(fn: F) -> F:
    """The selection every command accepts: path prefixes or globs, and dimension filters."""
    options = [
        click.argument("paths", nargs=-1, metavar="[PATH|GLOB]...", shell_complete=lambda c, p, i: complete("path", i)),
        click.option("--all", "select_all", is_flag=True,
                     help="Every stack, even when run from a sub-folder."),
        click.option("--env", "environments", multiple=True, metavar="ENV",
                     shell_complete=lambda c, p, i: complete("environment", i), help="Only this environment."),
        click.option("--region", "regions", multiple=True, metavar="REGION",
                     shell_complete=lambda c, p, i: complete("region", i), help="Only this region."),
        click.option("--layer", "layers", multiple=True, metavar="LAYER",
                     shell_complete=lambda c, p, i: complete("layer", i),
                     help="Only this layer (01-foundation, or just foundation)."),
        click.option("--client", "clients", multiple=True, metavar="CLIENT",
                     shell_complete=lambda c, p, i: complete("client", i), help="Only this client."),
        click.option("--cloud", "clouds", multiple=True, metavar="CLOUD",
                     shell_complete=lambda c, p, i: complete("cloud", i), help="Only this cloud."),
        click.option("--account", "accounts", multiple=True, metavar="ID",
                     shell_complete=lambda c, p, i: complete("account", i), help="Only this account id."),
        click.option("--tag", "tags", multiple=True, metavar="TAG",
                     shell_complete=lambda c, p, i: complete("tag", i), help="Only stacks with this tag."),
        click.option("--changed", is_flag=True,
                     help="Only stacks affected by the change against --base (committed, staged, unstaged, "
                          "untracked files; git)."),
        click.option("--base", metavar="REF", help="With --changed: compare with the merge-base of REF "
                                                   "(default: the remote default branch, else main)."),
        click.option("--no-dependents", is_flag=True,
                     help="With --changed: do not add the stacks that depend on an affected stack."),
        click.option("--allow-empty", is_flag=True, envvar="STRATA_ALLOW_EMPTY", show_envvar=True,
                     help="A selection that matches no stack succeeds doing nothing (default: exit 64, with the "
                          "nearest names, as a typo must not pass for success)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _selection(kwargs: dict[str, Any]) -> Any:
    from strata.model.selection import Selection

    return Selection(
        paths=list(kwargs.pop("paths")), environments=list(kwargs.pop("environments")),
        regions=list(kwargs.pop("regions")), layers=list(kwargs.pop("layers")),
        clients=list(kwargs.pop("clients")), clouds=list(kwargs.pop("clouds")),
        accounts=list(kwargs.pop("accounts")), tags=list(kwargs.pop("tags")), all=kwargs.pop("select_all"),
        changed=kwargs.pop("changed"), base=kwargs.pop("base"), dependents=not kwargs.pop("no_dependents"),
        allow_empty=kwargs.pop("allow_empty"),
    )


@cli.command("ls")
@selection_options
@json_option("The stacks as JSON.", "ls")
@click.option("--run-order", is_flag=True, help="List in dependency order instead of by path.")
@click.option("--explain", is_flag=True, help="With --changed: say why each stack is affected.")
@click.pass_obj
def ls_command(ws: Any, /, as_json: bool, run_order: bool, explain: bool, **kwargs: Any) -> int:
    """List stacks with their dimensions."""
    from strata.commands import ls

    return ls.run(ws, _selection(kwargs), as_json=as_json, run_order=run_order, explain=explain)


@cli.command("graph")
@selection_options
@click.option("--format", "fmt", type=click.Choice(["dot", "mermaid"]), default="dot", show_default=True)
@json_option("The picture as JSON: nodes and edges.", "graph")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to FILE; .png/.svg/.pdf files are drawn with Graphviz (dot).")
@click.option("--include-dependencies", is_flag=True, help="Also draw what the selected stacks depend on.")
@click.option("--include-dependents", is_flag=True, help="Also draw what depends on the selected stacks.")
@click.option("--group-by", multiple=True, metavar="DIMENSION[,...]",
              help="One node per group of stacks (environment, region, layer, client, account, cloud), "
                   "edges counting the dependencies between groups.")
@click.pass_obj
def graph_command(ws: Any, /, fmt: str, as_json: bool, output: Path | None, include_dependencies: bool,
                  include_dependents: bool, group_by: tuple[str, ...], **kwargs: Any) -> int:
    """Show the stack dependency graph (DOT, Mermaid or JSON; an image with Graphviz)."""
    from strata.commands import graph

    return graph.run(ws, _selection(kwargs), fmt="json" if as_json else fmt, output=output,
                     include_dependencies=include_dependencies, include_dependents=include_dependents,
                     group_by=graph.parse_group_by(group_by))


@cli.command("completion")
@click.argument("shell", type=click.Choice(["bash", "zsh", "fish"]))
@click.pass_context
def completion_command(ctx: click.Context, /, shell: str) -> int:
    """Print the shell completion script: subcommands, options, stack paths and dimension values.

    \b
    bash: eval "$(strata completion bash)"           (in ~/.bashrc)
    zsh:  eval "$(strata completion zsh)"            (in ~/.zshrc)
    fish: strata completion fish | source            (in ~/.config/fish/config.fish)
    """
    from click.shell_completion import get_completion_class

    completion_class = get_completion_class(shell)
    assert completion_class is not None  # the three shells click ships
    root = ctx.find_root()
    click.echo(completion_class(root.command, {}, "strata", "_STRATA_COMPLETE").source())
    return 0


@cli.command("render")
@click.argument("stack", shell_complete=lambda c, p, i: complete("stack", i))
@json_option("The effective configuration as JSON.", "render")
@click.pass_obj
def render_command(ws: Any, /, stack: str, as_json: bool) -> int:
    """Show a stack's effective configuration and where every value comes from."""
    from strata.commands import render

    return render.run(ws, stack, as_json=as_json)


@cli.command("generate")
@selection_options
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if any generated file is out of date.")
@json_option("What was written (or is out of date) as JSON.", "generate")
@click.pass_obj
def generate_command(ws: Any, /, check: bool, as_json: bool, **kwargs: Any) -> int:
    """Write each selected stack's backend and inputs files."""
    from strata.commands import generate

    return generate.run(ws, _selection(kwargs), check=check, as_json=as_json)


@cli.command("validate")
@click.option("--strict", is_flag=True, help="Warnings fail too (exit 1).")
@json_option("The problems as JSON.", "validate")
@click.option("--terraform", "with_terraform", is_flag=True,
              help="Then run `terraform validate` in every stack (mock outputs where a dependency has no state).")
@click.option("-j", "--parallelism", type=click.IntRange(min=1), default=None, metavar="N",
              help="With --terraform: stacks validated at once (default: the number of CPUs).")
@click.pass_obj
def validate_command(ws: Any, /, strict: bool, as_json: bool, with_terraform: bool, parallelism: int | None) -> int:
    """Check the whole repository and list every problem as file:line: message."""
    from strata.commands import validate

    code = validate.run(ws, strict=strict, as_json=as_json)
    if code != 0 or not with_terraform:
        return code
    from strata.commands import run
    from strata.model.selection import Selection
    from strata.run.engine import RunOptions

    options = RunOptions(command="validate", parallelism=parallelism or os.cpu_count() or 1)
    return run.run(ws, Selection(all=True), options, quiet=True)


def run_options(fn: F) -> F:
    """Options of every command that runs terraform across stacks."""
    options = [
        click.option("-j", "--parallelism", type=click.IntRange(min=1), default=None, metavar="N",
                     envvar="STRATA_PARALLELISM", show_envvar=True,
                     help="Stacks run at once (default: the number of CPUs)."),
        click.option("--fail-fast", is_flag=True, envvar="STRATA_FAIL_FAST", show_envvar=True,
                     help="Start nothing new after the first failure."),
        click.option("--include-dependencies", is_flag=True, help="Also run what the selected stacks depend on."),
        click.option("--include-dependents", is_flag=True, help="Also run what depends on the selected stacks."),
        click.option("--lock-timeout", default="0s", show_default=True, metavar="DURATION",
                     envvar="STRATA_LOCK_TIMEOUT", show_envvar=True,
                     help="How long terraform waits for a state lock held by someone else."),
        json_option("The run report as JSON (on stdout, terraform's output and strata's go to stderr).",
                    "run-report", "json_report"),
        click.option("-q", "--quiet", is_flag=True, help="Without a terminal: print only start/finish lines."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


_yes_option = click.option("-y", "--yes", "--auto-approve", "yes", is_flag=True,
                           help="Do not ask for confirmation (--auto-approve as terraform spells it).")
_non_interactive_option = click.option(
    "--non-interactive", is_flag=True, envvar="STRATA_NON_INTERACTIVE", show_envvar=True,
    help="Never ask: fail where a confirmation would be needed (without --yes).")

ignore_errored_state_option = click.option(
    "--ignore-errored-state", is_flag=True,
    help="Run even where terraform left a state it could not save (errored.tfstate); by default such a stack "
         "is refused until `strata state push` has saved it.")


def _run(ws: Any, command: str, kwargs: dict[str, Any], args: list[str] | None = None, **extra: Any) -> int:
    from strata.commands import run
    from strata.run.engine import RunOptions
    from strata.state.operations import duration_seconds

    duration_seconds(kwargs["lock_timeout"])  # a usage error before anything runs
    terraform_args = click.get_current_context().meta.get("terraform_args") or []
    if command != "run":
        for arg in terraform_args:
            owned = _OWNED_AFTER_DASHES.get(arg.split("=", 1)[0])
            if owned:
                raise click.UsageError(f"{arg} after --: strata sets it itself; use {owned}")
        if terraform_args and extra.get("saved_plans"):
            raise click.UsageError("--plan applies the saved plans as they are: flags after -- shape a plan, give "
                                   f"them to `strata plan --out -- {' '.join(terraform_args)}`")
    options = RunOptions(
        command=command, parallelism=kwargs.pop("parallelism") or os.cpu_count() or 1, args=args or [],
        terraform_args=[] if command == "run" else list(terraform_args),
        fail_fast=kwargs.pop("fail_fast"), lock_timeout=kwargs.pop("lock_timeout"),
        save_plans=extra.pop("save_plans", False), saved_plans=extra.pop("saved_plans", False),
        keep_valid=extra.pop("keep_valid", False), ignore_errored_state=kwargs.pop("ignore_errored_state", False),
        override_policy=_override_reason(extra.pop("override_policy", None)),
    )
    return run.run(ws, _selection(kwargs), options, include_dependencies=kwargs.pop("include_dependencies"),
                   include_dependents=kwargs.pop("include_dependents"), json_report=kwargs.pop("json_report"),
                   quiet=kwargs.pop("quiet"), **extra)


def _override_reason(reason: str | None) -> str | None:
    if reason is None:
        return None
    from strata.policy.gate import check_reason

    try:
        return check_reason(reason)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--override-policy") from None


@cli.command("plan", cls=_SplitAtDashes)
@selection_options
@run_options
@ignore_errored_state_option
@click.option("--detailed-exitcode", is_flag=True, help="Exit 2 when a stack has changes (and none failed).")
@click.option("--out", "save_plans", is_flag=True, help="Keep one plan file per stack for `strata apply --plan`.")
@click.option("--summary-md", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help="Also write the plan as Markdown for a pull-request comment (FILE-2.md... when longer than one "
                   "comment); sensitive values are never printed.")
@click.option("--summary-format", type=click.Choice(["github", "gitlab", "azure"]), default="github",
              show_default=True, help="The platform the --summary-md comment is posted on (its Markdown flavour).")
@click.option("--terraform-report", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Also write one GitLab Terraform report per stack (artifacts:reports:terraform: counts only) "
                   "into DIR.")
@click.option("--keep-valid", is_flag=True,
              help="With --out: keep a stack's saved plan (one reviewed in a pull request, say) while its code, inputs "
                   "and state are what it was made from; plan again only a stack whose dependencies' outputs changed "
                   "since; refuse a plan whose code or state changed (it must be reviewed again).")
@click.option("--policy", "check_policy", is_flag=True,
              help="Check each stack's saved plan with checkov (built-in checks and the repository's own, see "
                   "policy {} in strata.hcl); on every plan when the block says enabled = true. A failed check "
                   "exits 3 and `apply --plan` refuses the plan.")
@click.pass_obj
def plan_command(ws: Any, /, detailed_exitcode: bool, save_plans: bool, summary_md: Path | None,
                 summary_format: str, terraform_report: Path | None, keep_valid: bool, check_policy: bool,
                 **kwargs: Any) -> int:
    """Plan the selected stacks in dependency order."""
    return _run(ws, "plan", kwargs, detailed_exitcode=detailed_exitcode, keep_valid=keep_valid,
                save_plans=save_plans or keep_valid or bool(summary_md) or bool(terraform_report),
                summary_md=summary_md,
                summary_format=summary_format, terraform_report=terraform_report, check_policy=check_policy)


@cli.command("apply", cls=_SplitAtDashes)
@selection_options
@run_options
@ignore_errored_state_option
@click.option("--plan", "saved_plans", is_flag=True, help="Apply the plans saved by `strata plan --out`.")
@click.option("--bootstrap", "bootstrap_first", is_flag=True,
              help="First create (or repair) the backends the stacks need, as `strata bootstrap` does.")
@click.option("--override-policy", metavar="REASON",
              help="Apply plans whose policy check failed (or could not run) anyway; the reason, who and which "
                   "checks are recorded in the run report and .strata/audit/policy-overrides.jsonl.")
@_yes_option
@_non_interactive_option
@click.pass_obj
def apply_command(ws: Any, /, saved_plans: bool, bootstrap_first: bool, yes: bool, non_interactive: bool,
                  override_policy: str | None, **kwargs: Any) -> int:
    """Apply the selected stacks in dependency order.

    Without --yes: plans every stack, shows each diff and the summary, asks once, then applies exactly the
    plans shown (a plan that went stale in between is planned and shown again, never applied unseen).
    """
    return _run(ws, "apply", kwargs, saved_plans=saved_plans, yes=yes, bootstrap=bootstrap_first,
                non_interactive=non_interactive, override_policy=override_policy)


@cli.command("destroy", cls=_SplitAtDashes)
@selection_options
@run_options
@ignore_errored_state_option
@_yes_option
@_non_interactive_option
@click.pass_obj
def destroy_command(ws: Any, /, yes: bool, non_interactive: bool, **kwargs: Any) -> int:
    """Destroy the selected stacks, dependents first."""
    return _run(ws, "destroy", kwargs, yes=yes, non_interactive=non_interactive)


@cli.command("init", cls=_SplitAtDashes)
@selection_options
@run_options
@click.pass_obj
def init_command(ws: Any, /, **kwargs: Any) -> int:
    """Run terraform init in the selected stacks (strata also does it by itself when needed)."""
    return _run(ws, "init", kwargs)


@cli.command("refresh", cls=_SplitAtDashes)
@selection_options
@run_options
@ignore_errored_state_option
@click.pass_obj
def refresh_command(ws: Any, /, **kwargs: Any) -> int:
    """Update the state of the selected stacks from the real infrastructure."""
    return _run(ws, "refresh", kwargs)


@cli.command("run", cls=_SplitAtDashes)
@selection_options
@run_options
@ignore_errored_state_option
@click.pass_context
def run_command(ctx: click.Context, /, **kwargs: Any) -> int:
    """Run any terraform command in the selected stacks: strata run production -- state list."""
    terraform_args = ctx.meta.get("terraform_args") or []
    if not terraform_args:
        raise click.UsageError("give the terraform command after --, e.g. strata run production -- state list")
    return _run(ctx.obj, "run", kwargs, args=list(terraform_args))


@cli.command("output")
@selection_options
@json_option("The outputs as JSON (values not redacted).", "output")
@click.pass_obj
def output_command(ws: Any, /, as_json: bool, **kwargs: Any) -> int:
    """Show the outputs of the selected stacks, read from their state."""
    from strata.commands import output

    return output.run(ws, _selection(kwargs), as_json=as_json)


@cli.command("bootstrap")
@selection_options
@click.option("--dry-run", is_flag=True, help="Only report what would be created or repaired; change nothing.")
@click.option("--emit-terraform", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Write the backend as a Terraform stack in DIR instead of creating it.")
@json_option("What was (or would be) created as JSON.", "bootstrap")
@click.pass_obj
def bootstrap_command(ws: Any, /, dry_run: bool, emit_terraform: Path | None, as_json: bool, **kwargs: Any) -> int:
    """Create the backends the selected stacks need (S3 + DynamoDB + KMS, PostgreSQL), idempotently."""
    from strata.commands import bootstrap

    return bootstrap.run(ws, _selection(kwargs), dry_run=dry_run, emit_terraform=emit_terraform, as_json=as_json)


@cli.group("state")
def state_group() -> None:
    """Inspect, back up, verify, restore and replicate the stacks' states (local, s3, pg)."""


_lock_timeout_option = click.option("--lock-timeout", default="0s", show_default=True, metavar="DURATION",
                                    help="How long to wait for a state lock held by someone else.")


@state_group.command("ls")
@selection_options
@json_option("The states as JSON.", "state-ls")
@click.pass_obj
def state_ls_command(ws: Any, /, as_json: bool, **kwargs: Any) -> int:
    """Per stack: serial, lineage, resources, size, last modified, lock."""
    from strata.commands import state

    return state.ls(ws, _selection(kwargs), as_json=as_json)


@state_group.command("pull")
@click.argument("stack", shell_complete=lambda c, p, i: complete("stack", i))
@click.option("--version", "version", metavar="ID",
              help="A version from `strata state versions` instead of the current.")
@click.pass_obj
def state_pull_command(ws: Any, /, stack: str, version: str | None) -> int:
    """Print a stack's state, as stored."""
    from strata.commands import state

    return state.pull(ws, stack, version=version)


@state_group.command("versions")
@click.argument("stack", shell_complete=lambda c, p, i: complete("stack", i))
@json_option("The versions as JSON.", "state-versions")
@click.pass_obj
def state_versions_command(ws: Any, /, stack: str, as_json: bool) -> int:
    """List a stack's state versions (S3 object versions; strata's history for local and pg)."""
    from strata.commands import state

    return state.versions(ws, stack, as_json=as_json)


@state_group.command("restore")
@click.argument("stack", shell_complete=lambda c, p, i: complete("stack", i))
@click.option("--version", "version", required=True, metavar="ID", help="The version to make current again.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@_lock_timeout_option
@json_option("The state written as JSON.", "state-restore")
@click.pass_obj
def state_restore_command(ws: Any, /, stack: str, version: str, yes: bool, lock_timeout: str, as_json: bool) -> int:
    """Make an older version current again (backs up first, keeps the lineage, serial above every known one)."""
    from strata.commands import state

    return state.restore(ws, stack, version=version, yes=yes, lock_timeout=lock_timeout, as_json=as_json)


@state_group.command("push")
@click.argument("stack", shell_complete=lambda c, p, i: complete("stack", i))
@click.argument("file", metavar="FILE")
@click.option("--force-lineage", is_flag=True,
              help="Replace a state of another lineage (like `terraform state push -force`).")
@click.option("--force", is_flag=True,
              help="Replace a newer state of the same lineage: FILE has a lower serial than the current state "
                   "(or the same serial with other contents), so what was written since, such as another "
                   "apply, is lost; the current state is backed up first.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@_lock_timeout_option
@json_option("The state written as JSON.", "state-push")
@click.pass_obj
def state_push_command(ws: Any, /, stack: str, file: str, force_lineage: bool, force: bool, yes: bool,
                       lock_timeout: str, as_json: bool) -> int:
    """Save a state file (e.g. terraform's errored.tfstate; - for stdin) as the stack's state (locks, backs up
    first, keeps the lineage, serial above every known one). A FILE older than the current state (a lower
    serial: pulled before another apply) is refused unless --force."""
    from strata.commands import state

    return state.push(ws, stack, file, yes=yes, force_lineage=force_lineage, force=force,
                      lock_timeout=lock_timeout, as_json=as_json)


@state_group.command("backup")
@selection_options
@click.option("--to", "to", required=True, metavar="DIR|s3://BUCKET/PREFIX", help="Where the backup goes.")
@json_option("The backup's contents as JSON.", "state-backup")
@click.pass_obj
def state_backup_command(ws: Any, /, to: str, as_json: bool, **kwargs: Any) -> int:
    """Copy the selected states with a manifest (stack, key, version, serial, lineage, sha256)."""
    from strata.commands import state

    return state.backup(ws, _selection(kwargs), to=to, as_json=as_json)


@state_group.command("verify")
@selection_options
@click.option("--from", "source", metavar="DIR|s3://BUCKET/PREFIX", help="Check a backup instead of the live states.")
@json_option("The findings as JSON.", "state-verify")
@click.pass_obj
def state_verify_command(ws: Any, /, source: str | None, as_json: bool, **kwargs: Any) -> int:
    """Check states (or a backup): parse, version 4, lineage, serials never go down, checksums match."""
    from strata.commands import state

    return state.verify(ws, _selection(kwargs), source=source, as_json=as_json)


@state_group.command("replicate")
@selection_options
@click.option("--to-region", metavar="REGION",
              help="The disaster-recovery region (default: each stack's bootstrap { dr_region }).")
@click.option("--emit-replication-config", "emit_config", is_flag=True,
              help="Print the S3 replication configuration for continuous replication instead of copying.")
@click.option("--role-arn", metavar="ARN", help="With --emit-replication-config: the IAM role S3 replicates as.")
@_lock_timeout_option
@json_option("The copies as JSON.", "state-replicate")
@click.pass_obj
def state_replicate_command(ws: Any, /, to_region: str | None, emit_config: bool, role_arn: str | None,
                            lock_timeout: str, as_json: bool, **kwargs: Any) -> int:
    """Copy the current states to the DR region's backend and verify their checksums."""
    from strata.commands import state

    return state.replicate(ws, _selection(kwargs), to_region=to_region, emit_config=emit_config,
                           role_arn=role_arn, lock_timeout=lock_timeout, as_json=as_json)


@state_group.command("mv")
@click.argument("source")
@click.argument("address")
@click.argument("target")
@click.argument("new_address", required=False)
@json_option("The move as JSON.", "migration-report")
@click.pass_obj
def state_mv_command(ws: Any, /, source: str, address: str, target: str, new_address: str | None,
                     as_json: bool) -> int:
    """Move a resource or module from one stack's state to another's (locks, backups, journal)."""
    from strata.commands import migrate

    return migrate.state_mv(ws, source, address, target, new_address, as_json=as_json)


@state_group.command("rm")
@click.argument("stack", shell_complete=lambda c, p, i: complete("stack", i))
@click.argument("addresses", nargs=-1, required=True)
@json_option("The state written as JSON.", "state-rm")
@click.pass_obj
def state_rm_command(ws: Any, /, stack: str, addresses: tuple[str, ...], as_json: bool) -> int:
    """Forget resources (exact addresses, module prefixes or globs) in a stack's state, backed up first."""
    from strata.commands import migrate

    return migrate.state_rm(ws, stack, list(addresses), as_json=as_json)


@state_group.command("import")
@click.argument("stack", shell_complete=lambda c, p, i: complete("stack", i))
@click.argument("address")
@click.argument("id")
@click.pass_obj
def state_import_command(ws: Any, /, stack: str, address: str, id: str) -> int:
    """terraform import in a stack, with its state backed up first."""
    from strata.commands import migrate

    return migrate.state_import(ws, stack, address, id)


@cli.group("migrate")
def migrate_group() -> None:
    """Move resources between states: a monolith into layers, with dry run, journal, verification, rollback."""


@migrate_group.command("plan")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@json_option("The dry run as JSON.", "migration-report")
@click.pass_obj
def migrate_plan_command(ws: Any, /, file: Path, as_json: bool) -> int:
    """The dry run: what moves where, problems, and no-op verification plans. Changes nothing."""
    from strata.commands import migrate

    return migrate.plan(ws, file, as_json=as_json)


@migrate_group.command("apply")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--no-rollback", is_flag=True, help="Keep the migrated states even if a verification plan shows changes.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@json_option("The migration as JSON.", "migration-report")
@click.pass_obj
def migrate_apply_command(ws: Any, /, file: Path, no_rollback: bool, yes: bool, as_json: bool) -> int:
    """Lock, back up, move, verify with no-op plans; roll back automatically when a plan shows changes."""
    from strata.commands import migrate

    return migrate.apply(ws, file, rollback=not no_rollback, yes=yes, as_json=as_json)


@migrate_group.command("resume")
@click.argument("migration_id", metavar="ID")
@json_option("The migration as JSON.", "migration-report")
@click.pass_obj
def migrate_resume_command(ws: Any, /, migration_id: str, as_json: bool) -> int:
    """Finish an interrupted migration from its journal."""
    from strata.commands import migrate

    return migrate.resume(ws, migration_id, as_json=as_json)


@migrate_group.command("rollback")
@click.argument("migration_id", metavar="ID")
@json_option("The rollback as JSON.", "migration-report")
@click.pass_obj
def migrate_rollback_command(ws: Any, /, migration_id: str, as_json: bool) -> int:
    """Restore every state a migration touched, byte for byte, from its backups."""
    from strata.commands import migrate

    return migrate.rollback(ws, migration_id, as_json=as_json)


@migrate_group.command("ls")
@json_option("The migrations as JSON.", "migrate-ls")
@click.pass_obj
def migrate_ls_command(ws: Any, /, as_json: bool) -> int:
    """Every migration of this repository: who, when, what, outcome."""
    from strata.commands import migrate

    return migrate.ls(ws, as_json=as_json)


@cli.group("ci")
def ci_group() -> None:
    """Pipelines for pull requests: generated CI files, the selected stacks as a CI matrix, the plan comment and
    the base commit of a CI job."""


@ci_group.command("generate")
@click.argument("system", type=click.Choice(["github", "gitlab", "azure-devops"]))
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Write under DIR instead of the repository root.")
@click.pass_obj
def ci_generate_command(ws: Any, /, system: str, out_dir: Path | None) -> int:
    """Write plan-on-PR / apply-on-merge / destroy pipelines for GitHub Actions, GitLab CI or Azure DevOps."""
    from strata.commands import ci

    return ci.generate(ws, system, out_dir=out_dir)  # type: ignore[arg-type]  # click.Choice checked it


@ci_group.command("matrix")
@selection_options
@click.option("--outputs", is_flag=True,
              help="NAME=VALUE lines for the generated pipelines' select job: per environment and wave the "
                   "matrix of its jobs.")
@click.option("--identity", type=click.Choice(["plan", "apply"]),
              help="With --outputs: per cloud the one identity (of planning or applying) a single job uses for "
                   "every selected stack; an error when they need several.")
@click.option("--paths", "list_paths", is_flag=True,
              help="Only the selected stacks' paths, one a line, in dependency order.")
@click.option("--stacks-per-job", type=click.IntRange(1), default=1, show_default=True, metavar="N",
              help="Stacks of one group (environment, wave, cloud, account) applied by one job.")
@click.option("--max-jobs", type=click.IntRange(1), default=256, show_default=True, metavar="N",
              help="Jobs in one matrix at most (GitHub: 256); beyond, jobs take more stacks.")
@click.pass_obj
def ci_matrix_command(ws: Any, /, outputs: bool, identity: str | None, list_paths: bool, stacks_per_job: int,
                      max_jobs: int, **kwargs: Any) -> int:
    """The selected stacks (e.g. --changed) as CI jobs in dependency order (JSON): waves, and jobs grouped by
    environment, wave, cloud and account with the credentials each needs."""
    from strata.commands import ci

    return ci.matrix(ws, _selection(kwargs), outputs=outputs, identity=identity, paths=list_paths,
                     stacks_per_job=stacks_per_job, max_jobs=max_jobs)


@ci_group.group("plans")
def ci_plans_group() -> None:
    """Saved plans (plan --out) as one encrypted bundle, carried from a pull/merge request to the pipeline on main.

    Exit codes of fetch: 0 fetched; 3 no reviewed plan for this commit (plan on main instead); 1 errors.
    """


_UNENCRYPTED = click.option("--unencrypted", is_flag=True,
                            help="Without STRATA_PLAN_KEY: the bundle is not encrypted, and anyone who can read or "
                                 "replace the artifact can read or change the plans. Only for private runners.")


@ci_plans_group.command("key")
def ci_plans_key_command() -> int:
    """Print a fresh random key; keep it as the CI secret STRATA_PLAN_KEY."""
    from strata.commands import ci

    return ci.plans_key()


@ci_plans_group.command("pack")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@selection_options
@_UNENCRYPTED
@json_option("The bundle's manifest as JSON.", "ci-plans")
@click.pass_obj
def ci_plans_pack_command(ws: Any, /, file: Path, unencrypted: bool, as_json: bool, **kwargs: Any) -> int:
    """Put the saved plans of the selected stacks (default: all) in FILE, encrypted with STRATA_PLAN_KEY."""
    from strata.commands import ci

    return ci.plans_pack(ws, _selection(kwargs), file, unencrypted=unencrypted, as_json=as_json)


@ci_plans_group.command("unpack")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@_UNENCRYPTED
@json_option("The bundle's manifest as JSON.", "ci-plans")
@click.pass_obj
def ci_plans_unpack_command(ws: Any, /, file: Path, unencrypted: bool, as_json: bool) -> int:
    """Verify FILE (key, checksums, repository) and write its plans into .strata/plans for apply --plan."""
    from strata.commands import ci

    return ci.plans_unpack(ws, file, unencrypted=unencrypted, as_json=as_json)


@ci_plans_group.command("fetch")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--platform", type=click.Choice(["github", "gitlab", "azure-devops"]),
              help="The CI platform (default: detected from GITHUB_ACTIONS, GITLAB_CI, TF_BUILD).")
@click.option("--artifact", default="strata-plans", show_default=True, metavar="NAME",
              help="GitHub: the artifact is NAME-<pull request number>.")
@click.option("--job", default="plan", show_default=True, metavar="JOB",
              help="GitLab: the merge request pipeline's job whose artifacts hold FILE.")
@click.pass_obj
def ci_plans_fetch_command(ws: Any, /, file: Path, platform: str | None, artifact: str, job: str) -> int:
    """Download the bundle of the pull/merge request merged into HEAD (exit 3: there is none)."""
    from strata.commands import ci

    return ci.plans_fetch(ws, file, platform=platform, artifact=artifact, job=job)

_PLATFORM_OPTION = click.option(
    "--platform", type=click.Choice(["github", "gitlab", "azure-devops"]),
    help="The CI platform (default: detected from GITHUB_ACTIONS, GITLAB_CI or TF_BUILD).")


@ci_group.command("comment")
@click.argument("summary", metavar="SUMMARY.md", type=click.Path(path_type=Path))
@_PLATFORM_OPTION
@click.option("--key", default="plan", show_default=True, metavar="KEY",
              help="Which comment: workflows with different keys keep separate comments.")
def ci_comment_command(summary: Path, platform: str | None, key: str) -> int:
    """Post SUMMARY.md (and SUMMARY-2.md, ...) as the pull/merge request's one strata comment, updated in place.

    \b
    Exit codes: 0 posted; 1 the platform refused or failed (the message names the variable or the HTTP
    status), or not a pull/merge request; 64 wrong usage (no such file, unknown platform).
    """
    from strata.commands import ci

    return ci.comment(summary, platform, key)


@ci_group.command("base")
@_PLATFORM_OPTION
@click.pass_obj
def ci_base_command(ws: Any, /, platform: str | None) -> int:
    """Print the commit to compare with for --changed: the merge-base with the target branch of a pull/merge
    request, the previous head of a pushed branch, or an empty line (with a note on stderr) when every stack
    must run (a new branch, a force push, history missing from the clone)."""
    from strata.commands import ci

    return ci.base(ws, platform)


@cli.command("locks")
@selection_options
@json_option("The locks held as JSON.", "locks")
@click.pass_obj
def locks_command(ws: Any, /, as_json: bool, **kwargs: Any) -> int:
    """Who holds which state lock, since when (DynamoDB, S3 lock files, pg sessions, local files)."""
    from strata.commands import locks

    return locks.run(ws, _selection(kwargs), as_json=as_json)


@cli.command("unlock")
@click.argument("stack", shell_complete=lambda c, p, i: complete("stack", i))
@click.option("--lock-id", metavar="ID", help="Only remove the lock if it has this ID.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_obj
def unlock_command(ws: Any, /, stack: str, lock_id: str | None, yes: bool) -> int:
    """Remove a stack's lock left by a process that died (refused while the holder runs here)."""
    from strata.commands import locks

    return locks.unlock(ws, stack, yes=yes, lock_id=lock_id)


def main(argv: list[str] | None = None) -> NoReturn:
    """Console entry point: one place that turns errors into messages and exit codes."""
    code = EXIT_ERROR
    try:
        result = cli.main(args=argv, prog_name="strata", standalone_mode=False)
        code = result if isinstance(result, int) else 0
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except click.UsageError as exc:
        exc.show()
        code = EXIT_USAGE
    except click.ClickException as exc:
        exc.show()
        code = EXIT_USAGE
    except (click.exceptions.Abort, KeyboardInterrupt):
        sys.stderr.write("interrupted\n")
        code = EXIT_INTERRUPTED
    except ProblemsFound as exc:
        from strata.output import print_diagnostics

        errors, _ = print_diagnostics(exc.diagnostics)
        sys.stderr.write(f"{errors} error(s); fix them and run again (`strata validate` lists every problem)\n")
        code = exc.exit_code
    except StrataError as exc:
        from strata.output import style

        sys.stderr.write(f"{style('error', 'red', sys.stderr, bold=True)}: {exc}\n")
        code = exc.exit_code
    except BrokenPipeError:
        code = 0
        with contextlib.suppress(OSError):
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - silences the flush at exit
    except Exception as exc:  # a bug in strata, not a user mistake
        if os.environ.get("STRATA_DEBUG"):
            raise
        sys.stderr.write(f"internal error: {type(exc).__name__}: {exc}\n"
                         "This is a bug in strata; run again with STRATA_DEBUG=1 for the traceback.\n")
        code = EXIT_ERROR
    sys.exit(code)
