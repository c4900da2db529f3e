"""The documentation a team reads: a short README, an MkDocs site that builds strictly, and a command reference
that cannot fall behind the CLI (every command and option of the click tree is documented where it belongs)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
import yaml

from conftest import REPO
from strata.main import cli

DOCS = REPO / "docs"
COMMANDS = DOCS / "commands.md"
README_LIMIT = 15 * 1024


# -- reading the command reference ---------------------------------------------------------------------

def slug(heading: str) -> str:
    """The anchor MkDocs gives a heading (Python-Markdown's toc slugify), for in-page links."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def headings(text: str) -> list[tuple[int, str, int]]:
    """(level, heading text, line index) of every Markdown heading outside fenced code."""
    found, fenced = [], False
    for index, line in enumerate(text.splitlines()):
        if line.startswith("```"):
            fenced = not fenced
        elif not fenced and (match := re.match(r"(#{1,6}) (.+)$", line)):
            found.append((len(match.group(1)), match.group(2).strip(), index))
    return found


def sections(text: str) -> dict[str, str]:
    """Each heading's text (backticks removed) and its slug -> its section, subsections included."""
    lines = text.splitlines()
    marks = headings(text)
    result: dict[str, str] = {}
    for position, (level, title, start) in enumerate(marks):
        end = next((line for lvl, _, line in marks[position + 1:] if lvl <= level), len(lines))
        body = "\n".join(lines[start:end])
        result[title.replace("`", "")] = body
        result["#" + slug(title)] = body
    return result


def documented(section: str, page: dict[str, str]) -> str:
    """A command's section plus the sections of this page it links to (shared selection and run options)."""
    linked = [page.get(anchor, "") for anchor in re.findall(r"\]\((#[\w-]+)\)", section)]
    return "\n".join([section, *linked])


def mentions(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


def commands(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], click.Command]]:
    yield path, command
    if isinstance(command, click.Group):
        context = click.Context(command)
        for name in command.list_commands(context):
            sub = command.get_command(context, name)
            if sub is not None and not sub.hidden:
                yield from commands(sub, (*path, name))


def long_options(command: click.Command) -> list[str]:
    return [name for param in command.params if isinstance(param, click.Option) and not param.hidden
            for name in (*param.opts, *param.secondary_opts) if name.startswith("--")]


def undocumented(text: str) -> list[str]:
    """What the CLI has and the command reference does not say: missing command sections, and options missing
    from their command's section; also options a synopsis shows that the command does not have."""
    page = sections(text)
    problems = []
    for path, command in commands(cli):
        name = " ".join(("strata", *path))
        if not path:
            section = text.split("\n## ", 1)[0]  # the global options come before the first section
        elif name in page:
            section = documented(page[name], page)
        else:
            problems.append(f"no section '## `{name}`'")
            continue
        options = long_options(command)
        problems += [f"{name}: {option}" for option in options if not mentions(section, option)]
        is_group = isinstance(command, click.Group)
        synopsis = re.search(rf"```\n{re.escape(name)} (.*?)```", section, re.S) if path and not is_group else None
        if synopsis:
            shown = set(re.findall(r"(?<![\w-])--[a-z][\w-]*", synopsis.group(1)))
            problems += [f"{name}: the synopsis shows {option}, which it does not have"
                         for option in sorted(shown - set(options) - {"--help"})]
    return problems


# -- the tests ----------------------------------------------------------------------------------------------

def test_every_command_and_option_is_in_the_command_reference() -> None:
    assert undocumented(COMMANDS.read_text()) == []


def test_the_reference_check_notices_a_missing_option_and_a_missing_command() -> None:
    text = COMMANDS.read_text()
    assert "strata plan: --detailed-exitcode" in undocumented(text.replace("--detailed-exitcode", "--detail"))
    assert "no section '## `strata unlock`'" in undocumented(text.replace("## `strata unlock`", "## unlock"))
    assert "strata: --no-color" in undocumented(text.replace("--no-color", "--plain"))
    # a shared option counts when the command's section links to the section that explains it
    shared = text.replace("[selection](#selecting-stacks)", "selection")
    assert "strata plan: --allow-empty" in undocumented(shared)


def test_the_site_builds_strictly(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="mkdocs is not installed (pip install -e '.[test]')")
    site = tmp_path / "site"
    built = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file",
                            str(REPO / "mkdocs.yml"), "--site-dir", str(site)],
                           cwd=tmp_path, capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stdout + built.stderr
    assert (site / "commands" / "index.html").is_file()


def test_every_page_is_in_the_navigation() -> None:
    config = yaml.safe_load((REPO / "mkdocs.yml").read_text())
    assert config["docs_dir"] == "docs"

    def pages(nav: object) -> Iterator[str]:
        if isinstance(nav, str):
            yield nav
        elif isinstance(nav, list):
            for item in nav:
                yield from pages(item)
        elif isinstance(nav, dict):
            for item in nav.values():
                yield from pages(item)

    listed = set(pages(config["nav"]))
    written = {str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md") if "schemas" not in p.relative_to(DOCS).parts}
    assert written - listed == set(), "pages missing from mkdocs.yml's nav"
    assert listed - written == set(), "nav entries without a page"


def test_the_readme_is_short_and_keeps_the_two_commands() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.encode()) <= README_LIMIT, f"README.md is {len(readme.encode())} bytes"
    assert "./scripts/quickstart\n" in readme and "./scripts/test " in readme
    for target in re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", readme):
        assert (REPO / target).exists(), f"README links to {target}, which does not exist"


def test_the_license_is_present() -> None:
    assert (REPO / "LICENSE").read_text().lstrip().startswith("Apache License")
