"""Shell completion (issue 11): `strata completion bash|zsh|fish` prints the script; in a real bash, TAB
completes subcommands, options, stack paths and dimension values from the repository around the cwd."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import EXAMPLE


def complete(words: str, cwd: Path) -> list[str]:
    """What bash offers for ``words`` (the last word being completed), through strata's own script."""
    strata_bin = Path(sys.executable).parent / "strata"
    script = (f'eval "$({strata_bin} completion bash)"\n'
              f"COMP_WORDS=({words}); COMP_CWORD=$(( ${{#COMP_WORDS[@]}} - 1 ))\n"
              '[ "${words: -1}" = " " ] && COMP_WORDS+=("") && COMP_CWORD=${#COMP_WORDS[@]}-1\n'
              f"_strata_completion {strata_bin}\n"
              'printf "%s\\n" "${COMPREPLY[@]}"\n')
    env = {**os.environ, "PATH": f"{strata_bin.parent}:{os.environ['PATH']}", "words": words}
    done = subprocess.run(["bash", "--norc", "--noprofile", "-c", script], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    return [line for line in done.stdout.splitlines() if line]


@pytest.mark.skipif(shutil.which("bash") is None, reason="bash missing")
def test_bash_completes_commands_options_stacks_and_dimension_values() -> None:
    assert "plan" in complete("strata pl", EXAMPLE)
    assert complete("strata plan --lock-t", EXAMPLE) == ["--lock-timeout"]
    stacks = complete("strata plan production/us-east-1/cl", EXAMPLE)
    assert stacks == ["production/us-east-1/clients", "production/us-east-1/clients/ezra",
                      "production/us-east-1/clients/mtn-ghana"], stacks
    assert complete("strata ls --env prod", EXAMPLE) == ["production"]
    assert set(complete("strata ls --layer pl", EXAMPLE)) == {"platform"}
    assert complete("strata render production/eu-central-1/01-f", EXAMPLE) == ["production/eu-central-1/01-foundation"]
    assert complete("strata ls --env prod", Path("/")) == []  # outside a repository: nothing, and no error


@pytest.mark.parametrize("shell", ["bash", "zsh", "fish"])
def test_every_shell_gets_a_script(shell: str) -> None:
    done = subprocess.run([sys.executable, "-m", "strata", "completion", shell], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "_STRATA_COMPLETE" in done.stdout and f"{shell}_complete" in done.stdout
