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
64 wrong usage; 130 interrupted.
Set NO_COLOR (or pass --no-color) for plain output."""


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog=EPILOG)
@click.version_option(__version__, "--version", prog_name="strata")
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


def selection_options(fn: F) -> F:
    """The selection every command accepts: path prefixes or globs, and dimension filters."""
    options = [
        click.argument("paths", nargs=-1, metavar="[PATH|GLOB]..."),
        click.option("--all", "select_all", is_flag=True,
                     help="Every stack, even when run from a sub-folder."),
        click.option("--env", "environments", multiple=True, metavar="ENV", help="Only this environment."),
        click.option("--region", "regions", multiple=True, metavar="REGION", help="Only this region."),
        click.option("--layer", "layers", multiple=True, metavar="LAYER",
                     help="Only this layer (01-foundation, or just foundation)."),
        click.option("--client", "clients", multiple=True, metavar="CLIENT", help="Only this client."),
        click.option("--cloud", "clouds", multiple=True, metavar="CLOUD", help="Only this cloud."),
        click.option("--account", "accounts", multiple=True, metavar="ID", help="Only this account id."),
        click.option("--tag", "tags", multiple=True, metavar="TAG", help="Only stacks with this tag."),
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
    )


@cli.command("ls")
@selection_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.option("--run-order", is_flag=True, help="List in dependency order instead of by path.")
@click.pass_obj
def ls_command(ws: Any, /, as_json: bool, run_order: bool, **kwargs: Any) -> int:
    """List stacks with their dimensions."""
    from strata.commands import ls

    return ls.run(ws, _selection(kwargs), as_json=as_json, run_order=run_order)


@cli.command("graph")
@selection_options
@click.option("--format", "fmt", type=click.Choice(["dot", "mermaid"]), default="dot", show_default=True)
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path),
              help="Write to FILE; .png/.svg/.pdf files are drawn with Graphviz (dot).")
@click.pass_obj
def graph_command(ws: Any, /, fmt: str, output: Path | None, **kwargs: Any) -> int:
    """Show the stack dependency graph (DOT or Mermaid; an image with Graphviz)."""
    from strata.commands import graph

    return graph.run(ws, _selection(kwargs), fmt=fmt, output=output)


@cli.command("render")
@click.argument("stack")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def render_command(ws: Any, /, stack: str, as_json: bool) -> int:
    """Show a stack's effective configuration and where every value comes from."""
    from strata.commands import render

    return render.run(ws, stack, as_json=as_json)


@cli.command("generate")
@selection_options
@click.option("--check", is_flag=True, help="Write nothing; exit 1 if any generated file is out of date.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable report.")
@click.pass_obj
def generate_command(ws: Any, /, check: bool, as_json: bool, **kwargs: Any) -> int:
    """Write each selected stack's backend and inputs files."""
    from strata.commands import generate

    return generate.run(ws, _selection(kwargs), check=check, as_json=as_json)


@cli.command("validate")
@click.option("--strict", is_flag=True, help="Warnings fail too (exit 1).")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_obj
def validate_command(ws: Any, /, strict: bool, as_json: bool) -> int:
    """Check the whole repository and list every problem as file:line: message."""
    from strata.commands import validate

    return validate.run(ws, strict=strict, as_json=as_json)


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
