"""The terraform subcommands strata runs: one function each builds the arguments; one parses results."""

from __future__ import annotations

import re
from dataclasses import dataclass

COMMON = ["-no-color", "-input=false"]


def init(binary: str) -> list[str]:
    return [binary, "init", *COMMON]


def validate(binary: str) -> list[str]:
    return [binary, "validate", "-no-color"]


def plan(binary: str, *, out: str | None = None, destroy: bool = False, lock_timeout: str = "0s") -> list[str]:
    argv = [binary, "plan", *COMMON, "-detailed-exitcode", f"-lock-timeout={lock_timeout}"]
    if destroy:
        argv.append("-destroy")
    if out:
        argv.append(f"-out={out}")
    return argv


def apply(binary: str, *, plan_file: str | None = None, lock_timeout: str = "0s") -> list[str]:
    argv = [binary, "apply", *COMMON, "-auto-approve", f"-lock-timeout={lock_timeout}"]
    if plan_file:
        argv.append(plan_file)
    return argv


def destroy(binary: str, *, lock_timeout: str = "0s") -> list[str]:
    return [binary, "destroy", *COMMON, "-auto-approve", f"-lock-timeout={lock_timeout}"]


def refresh(binary: str, *, lock_timeout: str = "0s") -> list[str]:
    return [binary, "refresh", *COMMON, f"-lock-timeout={lock_timeout}"]


def output(binary: str) -> list[str]:
    return [binary, "output", "-json", "-no-color"]


@dataclass(frozen=True, slots=True)
class Changes:
    add: int = 0
    change: int = 0
    destroy: int = 0

    @property
    def any(self) -> bool:
        return bool(self.add or self.change or self.destroy)


# "Plan: [1 to import, ]2 to add, 0 to change, 0 to destroy." and "Apply complete! Resources: [1 imported, ]
# 2 added, 0 changed, 0 destroyed." (imports since 1.5); colour codes are removed first (`strata run -- plan`
# passes the user's own arguments, and terraform colours its output even into a pipe).
_PLAN = re.compile(r"Plan: (?:\d+ to import, )?(\d+) to add, (\d+) to change, (\d+) to destroy")
_APPLY = re.compile(r"(?:Apply|Destroy) complete! Resources: (?:\d+ imported, )?(?:(\d+) added, (\d+) changed, )?"
                    r"(\d+) destroyed")
_NO_CHANGES = re.compile(r"^No changes\.", re.M)
ANSI = re.compile(r"\x1b\[[0-9;]*m")  # terraform's colours


def changes(output_text: str) -> Changes | None:
    """Resource counts from plan/apply/destroy output, or None when it has no summary line."""
    output_text = ANSI.sub("", output_text)
    found = _PLAN.findall(output_text)
    if found:
        add, change, destroy_count = (int(n) for n in found[-1])
        return Changes(add, change, destroy_count)
    done = _APPLY.findall(output_text)
    if done:
        add, change, destroy_count = done[-1]
        return Changes(int(add or 0), int(change or 0), int(destroy_count))
    if _NO_CHANGES.search(output_text) or "Apply complete! Resources: 0 added" in output_text:
        return Changes()
    return None


# One line per resource terraform finished ("null_resource.a: Creation complete after 0s [id=...]").
_FINISHED = re.compile(r"^.+?: (Creation|Modifications|Destruction) complete after ", re.M)


def applied(output_text: str) -> Changes | None:
    """What apply/destroy did: its closing line, or, when it stopped early, the resources it finished
    (never what its plan announced); None when it did not get as far as planning."""
    output_text = ANSI.sub("", output_text)
    done = _APPLY.findall(output_text)
    if done:
        add, change, destroy_count = done[-1]
        return Changes(int(add or 0), int(change or 0), int(destroy_count))
    finished = _FINISHED.findall(output_text)
    if finished or _PLAN.search(output_text) or _NO_CHANGES.search(output_text):
        return Changes(finished.count("Creation"), finished.count("Modifications"), finished.count("Destruction"))
    return None
