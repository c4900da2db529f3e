"""Markdown plan summaries for pull-request comments (`strata plan --summary-md FILE`).

``render(plans)`` turns the plans of several stacks into one or more Markdown documents, each at most
``LIMIT`` characters (GitHub's comment limit): a warning listing every destroy and replacement across all
stacks first, then failed stacks, then one section per stack with changes (add / change / destroy counts,
resource addresses grouped by action, the full plan text in a collapsed ``<details>`` block), then the stacks
without changes, compactly. Longer output is split at stack boundaries into "part N of M" comments; a single
stack too long for one comment gets its plan text (and, if need be, its address lists) truncated with a note.

Sensitive values are never printed. The per-resource summary is built from addresses and actions only; the
plan text and failure details are scrubbed of every value the plan JSON marks sensitive (resource attributes
through ``before_sensitive``/``after_sensitive`` masks, sensitive outputs, variables declared ``sensitive``),
collected across *all* stacks, since a sensitive output of one stack can reach another as an input, plus
the sensitive outputs of every dependency the run read (``render(..., secrets=)``), planned or not.
Output depends only on the input: stacks are ordered by name, never by completion time.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from strata.run.redact import MIN_SECRET_LENGTH, REDACTED, Redactor, Secret, leaves

__all__ = ["LIMIT", "REDACTED", "Redactor", "StackPlan", "render", "sensitive_values"]

LIMIT = 65536

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")

# action groups, in the order they are listed in a stack's section (destructive first)
GROUPS = ("destroy", "replace", "create", "update", "forget", "import", "move")
GROUP_TITLES = {
    "destroy": "Destroy", "replace": "Replace", "create": "Create", "update": "Update in place",
    "forget": "Forget (removed from state, not destroyed)", "import": "Import", "move": "Move",
}


@dataclass(frozen=True)
class StackPlan:
    """One stack's plan, as the run engine has it after ``terraform plan`` and ``terraform show -json``."""

    stack: str
    status: str  # "ok" | "changes" | "failed" | "skipped"
    plan_json: dict[str, Any] | None  # `terraform show -json <planfile>` (None when failed/skipped)
    plan_text: str  # the human plan text; ANSI escapes are removed here anyway
    detail: str = ""


@dataclass
class _Stack:
    plan: StackPlan
    groups: dict[str, list[str]] = field(default_factory=dict)
    add: int = 0
    change: int = 0
    destroy: int = 0
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (name, action)
    counted: bool = False  # counts come from plan JSON

    @property
    def destructive(self) -> bool:
        return bool(self.groups.get("destroy") or self.groups.get("replace"))

    def counts(self) -> str:
        if not self.counted:
            return "counts unknown (no plan JSON)"
        return f"{self.add} to add, {self.change} to change, {self.destroy} to destroy"


# -- sensitive values -------------------------------------------------------------------------------------

def _masked(value: Any, mask: Any) -> Iterator[Any]:
    """The leaves of ``value`` that ``mask`` (Terraform's sensitive-values shape) marks sensitive."""
    if mask is True:
        yield from leaves(value)
    elif isinstance(mask, dict) and isinstance(value, dict):
        for key, sub in mask.items():
            if key in value:
                yield from _masked(value[key], sub)
    elif isinstance(mask, list) and isinstance(value, list):
        for item, sub in zip(value, mask, strict=False):
            yield from _masked(item, sub)


def _module_resources(module: Any) -> Iterator[dict[str, Any]]:
    if not isinstance(module, dict):
        return
    for resource in module.get("resources") or []:
        if isinstance(resource, dict):
            yield resource
    for child in module.get("child_modules") or []:
        yield from _module_resources(child)


def sensitive_values(plan_json: dict[str, Any] | None) -> set[str | int | float]:
    """Every sensitive leaf value (strings and numbers) a plan JSON holds."""
    found: list[Any] = []
    if not isinstance(plan_json, dict):
        return set()
    for key in ("resource_changes", "resource_drift"):
        for rc in plan_json.get(key) or []:
            change = rc.get("change") if isinstance(rc, dict) else None
            if isinstance(change, dict):
                found += _masked(change.get("before"), change.get("before_sensitive"))
                found += _masked(change.get("after"), change.get("after_sensitive"))
    for change in (plan_json.get("output_changes") or {}).values():
        if isinstance(change, dict):
            found += _masked(change.get("before"), change.get("before_sensitive"))
            found += _masked(change.get("after"), change.get("after_sensitive"))
    for key in ("planned_values", "prior_state"):
        values = plan_json.get(key)
        if key == "prior_state" and isinstance(values, dict):
            values = values.get("values")
        if not isinstance(values, dict):
            continue
        for output in (values.get("outputs") or {}).values():
            if isinstance(output, dict) and output.get("sensitive"):
                found += leaves(output.get("value"))
        for resource in _module_resources(values.get("root_module")):
            found += _masked(resource.get("values"), resource.get("sensitive_values"))
    declared = ((plan_json.get("configuration") or {}).get("root_module") or {}).get("variables") or {}
    for name, variable in (plan_json.get("variables") or {}).items():
        if isinstance(declared.get(name), dict) and declared[name].get("sensitive") and isinstance(variable, dict):
            found += leaves(variable.get("value"))
    result: set[str | int | float] = set()
    for value in found:
        if isinstance(value, str):
            if len(value) >= MIN_SECRET_LENGTH:
                result.add(value)
        elif isinstance(value, (int, float)):
            result.add(value)
    return result


# -- analysis ---------------------------------------------------------------------------------------------

def _analyse(plan: StackPlan) -> _Stack:
    stack = _Stack(plan)
    data = plan.plan_json
    if not isinstance(data, dict):
        return stack
    stack.counted = True
    groups: dict[str, list[str]] = {}
    for rc in data.get("resource_changes") or []:
        if not isinstance(rc, dict):
            continue
        address = str(rc.get("address", "?"))
        change = rc.get("change") or {}
        actions = tuple(change.get("actions") or ())
        if actions in (("delete", "create"), ("create", "delete")):
            group = "replace"
            stack.add += 1
            stack.destroy += 1
        elif actions == ("create",):
            group, stack.add = "create", stack.add + 1
        elif actions == ("delete",):
            group, stack.destroy = "destroy", stack.destroy + 1
        elif actions == ("update",):
            group, stack.change = "update", stack.change + 1
        elif actions == ("forget",):
            group = "forget"
        else:
            group = ""
        if group:
            groups.setdefault(group, []).append(address)
        elif change.get("importing"):
            groups.setdefault("import", []).append(address)
        elif rc.get("previous_address") and rc.get("previous_address") != address:
            groups.setdefault("move", []).append(f"{rc['previous_address']} → {address}")
    stack.groups = {g: sorted(groups[g]) for g in GROUPS if g in groups}
    for name, change in sorted((data.get("output_changes") or {}).items()):
        actions = tuple((change or {}).get("actions") or ())
        kind = {("create",): "add", ("delete",): "remove", ("update",): "change"}.get(actions)
        if kind:
            stack.outputs.append((str(name), kind))
    return stack


# -- Markdown helpers -------------------------------------------------------------------------------------

def _code(text: str) -> str:
    """Inline code that survives backticks in the text."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if longest else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _fence(text: str, info: str = "") -> list[str]:
    longest = max((len(run) for run in re.findall(r"`{3,}", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return [f"{ticks}{info}", text.rstrip("\n"), ticks]


def _clean(text: str) -> str:
    return ANSI.sub("", text).replace("\r\n", "\n").replace("\r", "\n")


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _truncate_lines(text: str, budget: int) -> tuple[str, int, int]:
    """The longest prefix of whole lines within ``budget`` characters; (prefix, lines kept, lines total)."""
    lines = text.rstrip("\n").split("\n")
    kept: list[str] = []
    used = 0
    for line in lines:
        if used + len(line) + 1 > budget:
            break
        kept.append(line)
        used += len(line) + 1
    if not kept and lines and budget > 1:  # one giant line: cut it
        kept = [lines[0][: budget - 1]]
    return "\n".join(kept), len(kept), len(lines)


# -- sections ---------------------------------------------------------------------------------------------

def _warning(stacks: list[_Stack], budget: int) -> str:
    items = [(s.plan.stack, g, a) for s in stacks for g in ("destroy", "replace") for a in s.groups.get(g, [])]
    if not items:
        return ""
    head = ["> [!CAUTION]",
            f"> **{_plural(len(items), 'resource')} will be destroyed or replaced** — review before merging:",
            ">"]
    lines: list[str] = []
    used = sum(len(x) + 1 for x in head) + 200
    for n, (name, group, address) in enumerate(items):
        line = f"> - **{group}** {_code(address)} in {_code(name)}"
        if used + len(line) + 1 > budget:
            lines.append(f"> - … and {len(items) - n} more: see the stack sections below")
            break
        lines.append(line)
        used += len(line) + 1
    return "\n".join(head + lines) + "\n"


def _stack_section(stack: _Stack, redact: Redactor, budget: int) -> str:
    """A stack's section, at most ``budget`` characters (plan text, then address lists, shortened to fit)."""
    text = redact(_clean(stack.plan.plan_text))
    full = _build_section(stack, redact, text, None, None)
    if len(full) <= budget:
        return full
    without = _build_section(stack, redact, "", 0, None)
    room = budget - len(without) - 400
    if room > 200:
        kept, shown, total = _truncate_lines(text, room)
        return _build_section(stack, redact, kept, shown, total)
    # even the address lists are too long: cap them
    cap = 1000
    while cap > 0:
        section = _build_section(stack, redact, "", 0, None, cap)
        if len(section) <= budget:
            return section
        cap //= 2
    return _build_section(stack, redact, "", 0, None, 0)[:budget]


def _build_section(stack: _Stack, redact: Redactor, text: str, shown: int | None, total: int | None,
                   cap: int | None = None) -> str:
    name = stack.plan.stack
    icon = "⚠️ " if stack.destructive else ""
    lines = [f"### {icon}{_code(name)}: {stack.counts()}", ""]
    for group, addresses in stack.groups.items():
        lines.append(f"**{GROUP_TITLES[group]}** ({len(addresses)}):")
        listed = addresses if cap is None else addresses[:cap]
        lines += [f"- {_code(redact(a))}" for a in listed]
        if len(listed) < len(addresses):
            lines.append(f"- … and {len(addresses) - len(listed)} more (list truncated to fit the comment)")
        lines.append("")
    if stack.outputs:
        listed_outputs = stack.outputs if cap is None else stack.outputs[:cap]
        lines.append("**Outputs:** " + ", ".join(f"{_code(redact(o))} ({k})" for o, k in listed_outputs)
                     + ("" if len(listed_outputs) == len(stack.outputs) else ", …"))
        lines.append("")
    if not stack.groups and not stack.outputs and stack.counted:
        lines += ["No resource changes in the plan JSON.", ""]
    if shown is None:
        summary = f"Plan output for {html.escape(name)}"
    elif total is None:
        summary = ""
    else:
        summary = f"Plan output for {html.escape(name)} (truncated)"
    if summary:
        lines += ["<details>", f"<summary>{summary}</summary>", ""]
        lines += _fence(text, "text")
        if total is not None:
            lines += ["", f"*Plan output truncated to fit the comment: {shown} of {total} lines shown. "
                          "The full plan is in the CI job log.*"]
        lines += ["", "</details>", ""]
    else:
        lines += ["*Plan output left out: the stack's change list alone fills the comment. "
                  "The full plan is in the CI job log.*", ""]
    return "\n".join(lines) + "\n"


def _failed_section(stack: _Stack, redact: Redactor, budget: int) -> str:
    name = stack.plan.stack
    detail = redact(_clean(stack.plan.detail or "").strip()) or "(no detail)"
    text = redact(_clean(stack.plan.plan_text).strip())
    lines = [f"### ❌ {_code(name)}: plan failed", ""]
    lines += _fence(detail, "text")
    body = "\n".join(lines) + "\n"
    if text:
        tail = "\n".join(["", "<details>", f"<summary>Output of {html.escape(name)}</summary>", ""]) + "\n"
        end = "\n</details>\n"
        room = budget - len(body) - len(tail) - len(end) - 200
        if room > 200:
            kept, shown, total = _truncate_lines(text, room)
            note = "" if shown == total else f"\n*Output truncated: {shown} of {total} lines shown.*\n"
            body += tail + "\n".join(_fence(kept, "text")) + "\n" + note + end
    if len(body) > budget:
        kept, _, _ = _truncate_lines(detail, budget - 400)
        body = "\n".join([f"### ❌ {_code(name)}: plan failed", "", *_fence(kept, "text"),
                          "", "*Detail truncated.*"]) + "\n"
    return body + "\n"


def _compact(title: str, names: list[str], budget: int) -> list[str]:
    """A compact list of stack names, as as many blocks as needed to keep each within ``budget``."""
    blocks: list[str] = []
    current: list[str] = []
    head = f"### {title}\n\n"
    used = len(head)
    for name in names:
        item = f"- {_code(name)}\n"
        if current and used + len(item) > budget:
            blocks.append(head + "".join(current) + "\n")
            head = f"### {title} (continued)\n\n"
            current, used = [], len(head)
        current.append(item)
        used += len(item)
    if current:
        blocks.append(head + "".join(current) + "\n")
    return blocks


# -- render -----------------------------------------------------------------------------------------------

def _header(title: str, part: int, parts: int, stacks: list[_Stack]) -> str:
    counts: dict[str, int] = {}
    for s in stacks:
        counts[s.plan.status] = counts.get(s.plan.status, 0) + 1
    add = sum(s.add for s in stacks)
    change = sum(s.change for s in stacks)
    destroy = sum(s.destroy for s in stacks)
    words = {"changes": "with changes", "ok": "without changes", "failed": "failed", "skipped": "skipped"}
    status = ", ".join(f"{counts[k]} {words[k]}" for k in ("failed", "changes", "ok", "skipped") if k in counts)
    others = sorted(set(counts) - set(words))
    status = ", ".join([status] + [f"{counts[k]} {k}" for k in others] if others else [status])
    lines = [f"## {title}" + (f" (part {part} of {parts})" if parts > 1 else ""), ""]
    lines.append(f"**{_plural(len(stacks), 'stack')}**: {status or 'none'} · "
                 f"**{add} to add, {change} to change, {destroy} to destroy**")
    return "\n".join(lines) + "\n\n"


def render(plans: list[StackPlan], *, title: str = "strata plan", limit: int = LIMIT,
           secrets: Iterable[Secret] = ()) -> list[str]:
    """The Markdown comment(s) for these plans, each at most ``limit`` characters.

    ``secrets`` are sensitive values known from elsewhere: the run's dependency outputs marked sensitive,
    which reach a stack as plain variables when its dependency was not planned too.
    """
    redact = Redactor(set(secrets).union(*(sensitive_values(p.plan_json) for p in plans)))
    stacks = sorted((_analyse(p) for p in plans), key=lambda s: s.plan.stack)
    header_room = len(_header(title, 999999, 999999, stacks)) + 16
    budget = limit - header_room
    if budget < 1000:
        raise ValueError(f"limit {limit} leaves no room for a summary")

    blocks: list[str] = []
    warning = _warning(stacks, budget // 2)
    if warning:
        blocks.append(warning + "\n")
    for s in stacks:
        if s.plan.status == "failed":
            blocks.append(_failed_section(s, redact, budget))
    changed = [s for s in stacks if s.plan.status == "changes"]
    for s in sorted(changed, key=lambda s: (not s.destructive, s.plan.stack)):
        blocks.append(_stack_section(s, redact, budget))
    blocks += _compact("No changes", [s.plan.stack for s in stacks if s.plan.status == "ok"], budget)
    blocks += _compact("Skipped", [s.plan.stack + (f" ({redact(s.plan.detail)})" if s.plan.detail else "")
                                   for s in stacks if s.plan.status == "skipped"], budget)
    known = {"ok", "changes", "failed", "skipped"}
    blocks += _compact("Other", [f"{s.plan.stack} ({s.plan.status})" for s in stacks if s.plan.status not in known],
                       budget)
    if not blocks:
        blocks.append("No stacks were planned.\n")

    parts: list[list[str]] = [[]]
    used = 0
    for block in blocks:
        if parts[-1] and used + len(block) > budget:
            parts.append([])
            used = 0
        parts[-1].append(block)
        used += len(block)
    total = len(parts)
    comments = []
    for n, part in enumerate(parts, 1):
        body = _header(title, n, total, stacks) + "".join(part)
        comments.append(body.rstrip("\n") + "\n")
    return comments
