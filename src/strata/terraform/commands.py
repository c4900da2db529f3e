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


def show_plan(binary: str, plan_file: str) -> list[str]:
    """A saved plan as JSON (what policy checks read): every value in it, sensitive ones in clear."""
    return [binary, "show", "-json", "-no-color", plan_file]


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


# -- errors -------------------------------------------------------------------------------------------

_BOX = " │╷╵"
_LOCATION = re.compile(r"^on (\S.*?) line (\d+)")
_GENERIC = ("Terraform encountered problems during initialisation",)  # a preface to the real errors


@dataclass(frozen=True, slots=True)
class TerraformError:
    summary: str
    file: str = ""
    line: int = 0
    detail: str = ""

    def describe(self, folder: str = "") -> str:
        """``folder/main.tf:3: Unsupported block type: Blocks of type "resourc" are not expected here...``"""
        where = f"{folder}/{self.file}" if folder and self.file else self.file
        text = f"{where}:{self.line}: {self.summary}" if where else self.summary
        return f"{text}: {self.detail}" if self.detail and len(self.detail) <= 200 else text


def errors(output_text: str) -> list[TerraformError]:
    """The error diagnostics terraform printed (``Error: <summary>``, ``on <file> line <n>``, then the detail),
    in order: the human format, stable from Terraform 0.15 to 1.11 and OpenTofu."""
    lines = [ln.strip(_BOX).rstrip() for ln in ANSI.sub("", output_text).splitlines()]
    found: list[TerraformError] = []
    i = 0
    while i < len(lines):
        if not lines[i].startswith("Error: "):
            i += 1
            continue
        summary = [lines[i][len("Error: "):].strip()]
        i += 1
        while i < len(lines) and lines[i].strip():  # a long summary wraps
            summary.append(lines[i].strip())
            i += 1
        file, line, detail = "", 0, ""
        paragraph: list[str] = []
        while i < len(lines) and not lines[i].startswith(("Error: ", "Warning: ")):
            text = lines[i].strip()
            located = _LOCATION.match(text)
            if located and not file:
                file, line = located[1].rstrip(":,"), int(located[2])
            elif not text:
                if paragraph and not detail:
                    detail = " ".join(paragraph)
                paragraph = []
            elif not (located or re.match(r"^\d+:", text) or text.startswith(("├", "│", "(", "…"))
                      or (text.startswith("with ") and text.endswith(","))):  # "with null_resource.x,"
                paragraph.append(text)
            i += 1
        if paragraph and not detail:
            detail = " ".join(paragraph)
        found.append(TerraformError(" ".join(summary), file, line, detail))
    specific = [e for e in found if not e.summary.startswith(_GENERIC)]
    return specific or found


def first_error(output_text: str, folder: str = "") -> str:
    """What a summary says of a failure: the first error with its file:line, and how many more there are;
    else terraform's last line."""
    found = errors(output_text)
    if found:
        more = f" (and {len(found) - 1} more error(s))" if len(found) > 1 else ""
        return found[0].describe(folder) + more
    meaningful = [ln.strip(_BOX) for ln in ANSI.sub("", output_text).splitlines() if ln.strip(_BOX).strip()]
    return meaningful[-1].strip() if meaningful else "terraform failed"
