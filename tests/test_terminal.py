"""What a person at a terminal sees (issue 11): strata in a real pseudo-terminal, real terraform.

- one stack: terraform's plan diff as terraform prints it, `strata run STACK -- state list` prints addresses;
- several stacks: the live view, and each stack's diff printed whole once it finishes;
- apply: the prompt comes after the diffs, and what is applied is exactly the plan that was shown.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import Result, write_tree

pytestmark = pytest.mark.terraform

Strata = Callable[..., Result]
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b\][^\x07]*\x07|\r")

STACK = """\
resource "null_resource" "{name}" {{
  triggers = {{ size = "{size}" }}
}}
output "size" {{
  value = null_resource.{name}.triggers.size
}}
"""


class Terminal:
    """strata on a pseudo-terminal: everything it writes (stdout and stderr, as on a screen), and a way to
    answer its prompt once a given text has appeared."""

    def __init__(self, args: list[str], cwd: Path, env: dict[str, str]) -> None:
        import pty

        self.master, slave = pty.openpty()
        full = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "50", **env}
        full.pop("NO_COLOR", None)
        full.pop("STRATA_NO_LIVE", None)
        self.proc = subprocess.Popen([sys.executable, "-m", "strata", *args], cwd=cwd, env=full,
                                     stdin=slave, stdout=slave, stderr=slave, start_new_session=True)
        os.close(slave)
        self.raw = b""

    @property
    def text(self) -> str:
        return ANSI.sub("", self.raw.decode("utf-8", errors="replace"))

    def _read(self, timeout: float) -> bool:
        ready, _, _ = select.select([self.master], [], [], timeout)
        if not ready:
            return True
        try:
            chunk = os.read(self.master, 65536)
        except OSError as exc:  # EIO: the process closed the terminal
            if exc.errno != errno.EIO:
                raise
            return False
        if not chunk:
            return False
        self.raw += chunk
        return True

    def wait_for(self, text: str, timeout: float = 300, count: int = 1) -> None:
        deadline = time.monotonic() + timeout
        while self.text.count(text) < count:
            assert time.monotonic() < deadline, f"{text!r} never appeared:\n{self.text}"
            if not self._read(0.5):
                assert self.text.count(text) >= count, f"{text!r} never appeared before strata exited:\n{self.text}"

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def finish(self, timeout: float = 300) -> int:
        deadline = time.monotonic() + timeout
        while self._read(0.5):
            assert time.monotonic() < deadline, f"strata did not finish:\n{self.text}"
        code = self.proc.wait(timeout=60)
        with contextlib.suppress(OSError):
            os.close(self.master)
        assert "Traceback" not in self.text, self.text
        return code


@pytest.fixture
def repo(tmp_path: Path, provider_mirror: dict[str, str], tf_111: str) -> tuple[Path, dict[str, str]]:
    root = write_tree(tmp_path / "repo", {
        "strata.hcl": 'strata {}\nbackend "local" {}\n',
        "dev/eu-west-1/01-net/strata.hcl": "stack {}\n",
        "dev/eu-west-1/01-net/main.tf": STACK.format(name="net", size="small"),
        "dev/eu-west-1/02-app/strata.hcl": "stack {}\n",
        "dev/eu-west-1/02-app/main.tf": STACK.format(name="app", size="small"),
    })
    return root, {**provider_mirror, "STRATA_TERRAFORM": tf_111}


def test_one_stack_shows_terraforms_plan_and_run_passes_its_output_through(
        repo: tuple[Path, dict[str, str]]) -> None:
    root, env = repo
    term = Terminal(["plan", "dev/eu-west-1/01-net"], root, env)
    assert term.finish() == 0
    screen = term.text
    assert "# null_resource.net will be created" in screen, screen
    assert '+ "size" = "small"' in screen and "Plan: 1 to add, 0 to change, 0 to destroy." in screen, screen
    assert "Initializing the backend" not in screen  # strata's own init is not the user's business

    term = Terminal(["apply", "--yes", "dev/eu-west-1/01-net"], root, env)
    assert term.finish() == 0, term.text
    term = Terminal(["run", "dev/eu-west-1/01-net", "--", "state", "list"], root, env)
    assert term.finish() == 0, term.text
    assert re.search(r"^null_resource\.net$", term.text, re.MULTILINE), term.text


def test_several_stacks_show_each_diff_whole_once_finished(repo: tuple[Path, dict[str, str]]) -> None:
    root, env = repo
    term = Terminal(["plan"], root, env)
    assert term.finish() == 0, term.text
    screen = term.text
    for name in ("net", "app"):
        assert f"# null_resource.{name} will be created" in screen, screen
    # each diff is one block under its stack's heading: the second starts after the first one's last line
    diffs = sorted((screen.index(f"# null_resource.{name} will be created"), f"dev/eu-west-1/{stack}")
                   for name, stack in (("net", "01-net"), ("app", "02-app")))
    (first, _), (second, second_stack) = diffs
    first_end = screen.index("Plan: 1 to add", first)
    assert first_end < screen.rindex(second_stack, 0, second) < second, screen


def state_of(strata: Strata, root: Path, env: dict[str, str], stack: str) -> dict[str, str]:
    """The stack's null_resource triggers by resource name, from its state ({} without a state)."""
    import json

    pulled = strata("state", "pull", stack, cwd=root, env=env)
    if pulled.code != 0:
        assert "no state" in pulled.output, pulled.output
        return {}
    resources = json.loads(pulled.stdout)["resources"]
    return {r["name"]: r["instances"][0]["attributes"]["triggers"]["size"] for r in resources}


def test_apply_shows_the_plans_asks_once_and_applies_exactly_what_was_shown(
        strata: Strata, repo: tuple[Path, dict[str, str]]) -> None:
    root, env = repo
    term = Terminal(["apply"], root, env)
    term.wait_for("Type 'yes' to go on:")
    screen = term.text
    assert "# null_resource.net will be created" in screen and "# null_resource.app will be created" in screen
    assert "Apply the 2 plan(s) shown above?" in screen and screen.count("Type 'yes'") == 1
    assert state_of(strata, root, env, "dev/eu-west-1/01-net") == {}  # nothing applied while asking

    # the code changes between the prompt and the answer: that stack's shown plan is stale
    main = root / "dev/eu-west-1/01-net/main.tf"
    main.write_text(main.read_text().replace('size = "small"', 'size = "large"'))
    term.send("yes\n")
    term.wait_for("are planned again before anything more is applied")
    term.wait_for("Apply the 1 plan(s) shown above?")
    assert term.text.count("Type 'yes' to go on:") == 2
    second = term.text[term.text.index("are planned again before anything more is applied"):]
    assert '+ "size" = "large"' in second, second  # the new plan is shown before it is asked for
    term.send("no\n")
    assert term.finish() == 1  # as terraform's own "no"
    assert "apply cancelled; 1 stack(s) were applied in earlier rounds" in term.text
    # what was shown and confirmed was applied; the stale plan was not, and no unseen plan replaced it
    assert state_of(strata, root, env, "dev/eu-west-1/02-app") == {"app": "small"}
    assert state_of(strata, root, env, "dev/eu-west-1/01-net") == {}
    # the declined plan is gone: a later `apply --plan` cannot apply it unasked
    assert not list((root / ".strata" / "plans").rglob("plan.tfplan"))
    later = strata("apply", "--plan", "--yes", "dev/eu-west-1/01-net", cwd=root, env=env)
    assert later.code == 1 and "no saved plan" in later.output, later.output


def test_apply_plans_again_what_depends_on_a_stack_it_just_applied(
        strata: Strata, tmp_path: Path, provider_mirror: dict[str, str], tf_111: str) -> None:
    """A dependent whose first plan had no changes was planned with its dependency's old outputs: once the
    dependency is applied it is planned again, shown, and asked about (the attack's finding 3)."""
    root = write_tree(tmp_path / "chain", {
        "strata.hcl": 'strata {}\nbackend "local" {}\n',
        "dev/r/a/strata.hcl": 'stack {}\ninputs = {\n  word = "one"\n}\n',
        "dev/r/a/main.tf": 'variable "word" {\n  type = string\n}\noutput "word" {\n  value = var.word\n}\n',
        "dev/r/b/strata.hcl": 'stack {}\ndependency "a" {\n  path = "../a"\n}\n'
                              'inputs = {\n  word = dependency.a.outputs.word\n}\n',
        "dev/r/b/main.tf": 'variable "word" {\n  type = string\n}\nresource "null_resource" "b" {\n'
                           '  triggers = { word = var.word }\n}\n',
    })
    env = {**provider_mirror, "STRATA_TERRAFORM": tf_111}
    assert strata("apply", "--yes", "-q", cwd=root, env=env).code == 0
    config = root / "dev/r/a/strata.hcl"
    config.write_text(config.read_text().replace('"one"', '"two"'))
    term = Terminal(["apply"], root, env)
    term.wait_for("Apply the 1 plan(s) shown above?")  # a's output changes; b has nothing to do yet
    term.send("yes\n")
    term.wait_for("are planned again before anything more is applied")
    term.wait_for("Type 'yes' to go on:", count=2)  # b, planned again with a's new output
    term.send("yes\n")
    assert term.finish() == 0, term.text
    assert '"word" = "one" -> "two"' in term.text  # b's new plan was shown before it was applied
    assert state_of_trigger(strata, root, env, "dev/r/b") == "two"


def state_of_trigger(strata: Strata, root: Path, env: dict[str, str], stack: str) -> str:
    import json

    resources = json.loads(strata("state", "pull", stack, cwd=root, env=env).stdout)["resources"]
    return str(resources[0]["instances"][0]["attributes"]["triggers"]["word"])


def test_apply_without_a_terminal_or_with_non_interactive_asks_nothing(
        strata: Strata, repo: tuple[Path, dict[str, str]]) -> None:
    root, env = repo
    refused = strata("apply", cwd=root, env=env)
    assert refused.code == 64 and "pass --yes" in refused.stderr, refused.output
    assert state_of(strata, root, env, "dev/eu-west-1/01-net") == {}
    term = Terminal(["apply", "--non-interactive"], root, env)
    assert term.finish() == 64
    assert "pass --yes" in term.text and "Type 'yes'" not in term.text
    applied = strata("apply", "--auto-approve", cwd=root, env=env)
    assert applied.code == 0, applied.output
    assert state_of(strata, root, env, "dev/eu-west-1/01-net") == {"net": "small"}


def test_no_color_keeps_the_live_view_without_colours(repo: tuple[Path, dict[str, str]]) -> None:
    root, env = repo
    term = Terminal(["--no-color", "plan"], root, env)
    assert term.finish() == 0, term.text
    assert "# null_resource.net will be created" in term.text
    assert "done" in term.text  # the live view's line ("N waiting, M done") was drawn
    # NO_COLOR's rule: no colour (bold and dim are allowed), from strata's view and from terraform
    colours = re.findall(rb"\x1b\[(?:[0-9;]*;)?(?:3[0-9]|4[0-9]|9[0-7])(?:;[0-9;]*)?m", term.raw)
    assert colours == [], colours[:10]
