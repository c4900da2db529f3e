"""Markdown plan summaries for pull-request comments (`strata plan --summary-md FILE`).

``render(plans)`` turns the plans of several stacks into one or more Markdown documents, each at most
``LIMIT`` characters (GitHub's comment limit), laid out for a reviewer who reads for ten seconds:

1. a header: the commit reviewed, the totals and the next step ("Merge to apply. `production` waits for an
   approval.");
2. a table, one row per stack: add / change / destroy / replace counts (terraform's: a replacement counts as
   one add and one destroy too), the policy result and why the stack is affected;
3. every destroy and replacement, once, one compact line per stack;
4. failed stacks, their error visible;
5. one section per stack with changes: failed policy checks visible, the rest of its changes and its plan
   text collapsed in ``<details>``; skipped stacks last.

Longer output is split at stack boundaries into "part N of M" comments, each with the header; a single stack
too long for one comment gets its plan text (and, if need be, its address lists) truncated with a note.

Flavours (``flavour=``): ``github`` marks destroys with a GitHub alert (``> [!CAUTION]``); ``gitlab`` and
``azure`` use a plain blockquote, which GitLab MR notes and Azure DevOps PR comments render. All three render
tables, ``<details>`` and Unicode emoji; nothing else differs.

Sensitive values are never printed. The per-resource lists are built from addresses and actions only; the
plan text and failure details are scrubbed of every value the plan JSON marks sensitive (resource attributes
through ``before_sensitive``/``after_sensitive`` masks, sensitive outputs, variables declared ``sensitive``),
collected across *all* stacks, since a sensitive output of one stack can reach another as an input, plus
the sensitive outputs of every dependency the run read (``render(..., secrets=)``), planned or not.
Absolute paths of the machine that ran the plan (``hide_paths=``: the checkout, the temporary folder) are
replaced with relative or neutral forms. Free text (reasons, policy names) is escaped; names are code spans.
Output depends only on the input: stacks are ordered by status, then name, never by completion time.
"""

from __future__ import annotations

import html
import re
from collections.abc import Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from strata.run.redact import MIN_SECRET_LENGTH, REDACTED, Redactor, Secret, leaves

__all__ = ["FLAVOURS", "LIMIT", "REDACTED", "Redactor", "StackPlan", "render", "sensitive_values", "why_text"]

LIMIT = 65536
FLAVOURS = ("github", "gitlab", "azure")

ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")

# action groups listed in a stack's section (destroy and replace are listed once, above every section)
GROUPS = ("create", "update", "forget", "import", "move")
GROUP_TITLES = {
    "destroy": "destroy", "replace": "replace", "create": "Create", "update": "Update in place",
    "forget": "Forget (removed from state, not destroyed)", "import": "Import", "move": "Move",
}
POLICY_STATUSES = ("passed", "failed", "skipped", "error", "overridden")


@dataclass(frozen=True)
class StackPlan:
    """One stack's plan, as the run engine has it after ``terraform plan`` and ``terraform show -json``."""

    stack: str
    status: str  # "ok" | "changes" | "failed" | "skipped"
    plan_json: dict[str, Any] | None  # `terraform show -json <planfile>` (None when failed/skipped)
    plan_text: str  # the human plan text; ANSI escapes are removed here anyway
    detail: str = ""
    why: str | None = None  # why the stack is in the run (`ls --changed --explain`'s reasons, or "selected")
    # the policy check: {"status": "passed"|"failed"|"skipped"|"error"|"overridden",
    #  "failed": [{"id": str, "name": str, "resource": str, "severity": str | None}], "reason": str | None};
    # None: no policy ran
    policy: dict[str, Any] | None = None
    environment: str | None = None  # for the next step: a protected environment waits for an approval


@dataclass
class _Stack:
    plan: StackPlan
    groups: dict[str, list[str]] = field(default_factory=dict)
    add: int = 0
    change: int = 0
    destroy: int = 0
    replace: int = 0
    outputs: list[tuple[str, str]] = field(default_factory=list)  # (name, action)
    counted: bool = False  # counts come from plan JSON

    @property
    def destructive(self) -> bool:
        return bool(self.groups.get("destroy") or self.groups.get("replace"))

    @property
    def policy_failed(self) -> bool:
        policy = self.plan.policy
        return isinstance(policy, dict) and policy.get("status") == "failed"

    def counts(self) -> str:
        if not self.counted:
            return "counts unknown (no plan JSON)"
        return f"{self.add} to add, {self.change} to change, {self.destroy} to destroy"

    def rank(self) -> tuple[int, str]:
        """Table order: what needs attention first."""
        status = self.plan.status
        order = (0 if status == "failed" else 1 if self.policy_failed else 2 if self.destructive
                 else 3 if status == "changes" else 4 if status == "ok" else 5)
        return order, self.plan.stack


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
            stack.replace += 1
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
    stack.groups = {g: sorted(groups[g]) for g in ("destroy", "replace", *GROUPS) if g in groups}
    for name, change in sorted((data.get("output_changes") or {}).items()):
        actions = tuple((change or {}).get("actions") or ())
        kind = {("create",): "add", ("delete",): "remove", ("update",): "change"}.get(actions)
        if kind:
            stack.outputs.append((str(name), kind))
    return stack


def why_text(stack: str, reasons: Sequence[str]) -> str:
    """``ls --changed --explain``'s reasons for one stack, short enough for a table cell: reasons of one kind
    on one line (``changed: main.tf, variables.tf``), files in the stack's own folder by their relative name."""
    kinds: dict[str, list[str]] = {}
    for reason in reasons:
        if ": " in reason:
            kind, value = reason.split(": ", 1)
        elif reason.startswith("depends on affected "):
            kind, value = "depends on affected", reason[len("depends on affected "):]
        else:
            kind, value = reason, ""
        if stack and value.startswith(stack + "/"):
            value = value[len(stack) + 1:]
        values = kinds.setdefault(kind, [])
        if value:
            values.append(value)
    parts = []
    for kind, values in kinds.items():
        shown = ", ".join(values[:3]) + (f" (+{len(values) - 3} more)" if len(values) > 3 else "")
        sep = " " if kind == "depends on affected" else ": "
        parts.append(f"{kind}{sep}{shown}" if shown else kind)
    return "; ".join(parts)


# -- Markdown helpers -------------------------------------------------------------------------------------

_ESCAPED = re.compile(r"([\\`*_\[\]<>|$~@#!%&{}])")


def _text(text: str, limit: int = 0) -> str:
    """Free text as Markdown that renders as itself: one line, every character that could start markup
    (emphasis, links, HTML, table cells, math in Azure DevOps, references in GitLab) backslash-escaped."""
    text = " ".join(text.split())
    if limit and len(text) > limit:
        text = text[: limit - 1].rstrip() + "…"
    return _ESCAPED.sub(r"\\\1", text)


def _code(text: str) -> str:
    """Inline code that survives backticks in the text."""
    text = " ".join(text.split("\n"))
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    ticks = "`" * (longest + 1)
    pad = " " if longest or text.startswith(" ") or text.endswith(" ") else ""
    return f"{ticks}{pad}{text}{pad}{ticks}"


def _cell_code(text: str) -> str:
    """A code span in a table cell: a pipe ends the cell even inside a code span unless escaped."""
    return _code(text).replace("|", "\\|")


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


class _Scrub:
    """Redaction of secrets, then the machine's absolute paths replaced (longest first, whole path parts)."""

    def __init__(self, redact: Redactor, hide_paths: Mapping[str, str]) -> None:
        self.redact = redact
        self.paths = [(re.compile(re.escape(p.rstrip("/")) + r"(?![A-Za-z0-9_.~+-])"), shown)
                      for p, shown in sorted(hide_paths.items(), key=lambda kv: -len(kv[0])) if p.rstrip("/")]

    def __call__(self, text: str) -> str:
        text = self.redact(text)
        for pattern, shown in self.paths:
            text = pattern.sub(shown.replace("\\", "\\\\"), text)
        return text


# -- sections ---------------------------------------------------------------------------------------------

TABLE_HEAD = ("| Stack | Add | Change | Destroy | Replace | Policy | Why affected |\n"
              "|:--|--:|--:|--:|--:|:--|:--|\n")


def _name(stack: _Stack) -> str:
    return stack.plan.stack or "."


def _icon(stack: _Stack) -> str:
    if stack.plan.status == "failed":
        return "❌ "
    if stack.destructive:
        return "⚠️ "
    if stack.plan.status == "skipped":
        return "⏭️ "
    return ""


def _failed_checks(policy: dict[str, Any]) -> list[dict[str, Any]]:
    failed = policy.get("failed")
    return [f for f in failed if isinstance(f, dict)] if isinstance(failed, list) else []


def _policy_result(policy: Any, scrub: _Scrub) -> str:
    """The policy check in a few words: ``✅ passed``, ``❌ 2 failed``, ``⏭️ skipped: reason``; ``—`` for none."""
    if not isinstance(policy, dict):
        return "—"
    status = str(policy.get("status") or "unknown")  # a status this version does not know is shown as it is
    failed = _failed_checks(policy)
    reason = policy.get("reason")
    skipped = _skipped_checks(policy)
    if status == "passed":
        return f"✅ passed, {len(skipped)} skipped" if skipped else "✅ passed"
    if status == "failed":
        return f"❌ {len(failed)} failed" if failed else "❌ failed"
    icon = {"skipped": "⏭️ ", "error": "⚠️ ", "overridden": "⚠️ "}.get(status, "")
    text = icon + _text(status, 40)
    if reason:
        text += ": " + _text(scrub(str(reason)), 100)
    return text


def _skipped_checks(policy: dict[str, Any]) -> list[dict[str, Any]]:
    skipped = policy.get("skipped")
    return [c for c in skipped if isinstance(c, dict)] if isinstance(skipped, list) else []


def _policy_lines(stack: _Stack, scrub: _Scrub, cap: int | None) -> list[str]:
    """The failed checks of a stack, shown under it (never collapsed: they block the apply), and the findings a
    skip in strata.hcl silenced, with its reason (a pull request can add a skip: the reviewer must see it)."""
    policy = stack.plan.policy
    if not isinstance(policy, dict):
        return []
    failed = _failed_checks(policy)
    skipped = _skipped_checks(policy)
    if not failed and not skipped and policy.get("status") not in ("error", "overridden"):
        return []
    lines = [f"**Policy:** {_policy_result(policy, scrub)}", ""]
    listed = failed if cap is None else failed[:cap]
    for check in listed:
        severity = f" ({_text(str(check['severity']), 20)})" if check.get("severity") else ""
        lines.append(f"- {_code(scrub(str(check.get('id') or '?')))} {_text(scrub(str(check.get('name') or '')), 200)}"
                     f" — {_code(scrub(str(check.get('resource') or '?')))}{severity}")
    if len(listed) < len(failed):
        lines.append(f"- … and {len(failed) - len(listed)} more failed checks (list truncated to fit the comment)")
    shown_skips = skipped if cap is None else skipped[:cap]
    for check in shown_skips:
        resource = _code(scrub(str(check.get("resource") or "?")))
        lines.append(f"- skipped {_code(scrub(str(check.get('id') or '?')))} "
                     f"{_text(scrub(str(check.get('name') or '')), 200)} — {resource}"
                     f": {_text(scrub(str(check.get('reason') or 'no reason')), 200)}")
    if len(shown_skips) < len(skipped):
        lines.append(f"- … and {len(skipped) - len(shown_skips)} more skipped checks")
    return lines + ([""] if listed or shown_skips else [])


def _row(stack: _Stack, scrub: _Scrub) -> str:
    numbers = (stack.add, stack.change, stack.destroy, stack.replace)
    counts = [str(n) if stack.counted else "—" for n in numbers]
    why = _text(scrub(stack.plan.why), 160) if stack.plan.why else "—"
    cells = [_icon(stack) + _cell_code(_name(stack)), *counts, _policy_result(stack.plan.policy, scrub), why]
    return "| " + " | ".join(cells) + " |\n"


def _blocks(items: Iterable[str], budget: int, head: str, next_head: str | None = None) -> list[str]:
    """``items`` (whole lines) under ``head``, as as many blocks as needed to keep each within ``budget``;
    the blocks after the first start with ``next_head`` (default: ``head`` again)."""
    blocks: list[str] = []
    current: list[str] = []
    used = len(head)
    for item in items:
        if current and used + len(item) > budget:
            blocks.append(head + "".join(current) + "\n")
            head = next_head or head
            current, used = [], len(head)
        current.append(item)
        used += len(item)
    if current:
        blocks.append(head + "".join(current) + "\n")
    return blocks


def _tables(stacks: list[_Stack], scrub: _Scrub, budget: int) -> list[str]:
    """The stacks as table rows, as as many tables as needed to keep each within ``budget``."""
    return _blocks((_row(s, scrub) for s in sorted(stacks, key=_Stack.rank)), budget, TABLE_HEAD)


def _destructive(stacks: list[_Stack], scrub: _Scrub, flavour: str, budget: int) -> str:
    """Every destroy and replacement, once: one line per stack (a GitHub alert on github, a quote elsewhere)."""
    hit = [s for s in sorted(stacks, key=_Stack.rank) if s.destructive]
    if not hit:
        return ""
    total = sum(len(s.groups.get("destroy", [])) + len(s.groups.get("replace", [])) for s in hit)
    title = f"**{_plural(total, 'resource')} will be destroyed or replaced** — review before merging:"
    head = ["> [!CAUTION]", f"> {title}", ">"] if flavour == "github" else [f"> ⚠️ {title}", ">"]

    def line(stack: _Stack, cap: int | None) -> str:
        parts = []
        for group in ("destroy", "replace"):
            addresses = stack.groups.get(group)
            if not addresses:
                continue
            listed = addresses if cap is None else addresses[:cap]
            more = len(addresses) - len(listed)
            names = ", ".join(_code(scrub(a)) for a in listed)
            if more:
                names += (", " if names else "") + f"… {more} more in the plan below"
            parts.append(f"**{group}** ({len(addresses)}): {names}")
        return f"> - {_code(_name(stack))} — " + "; ".join(parts)

    for cap in (None, 50, 20, 10, 5, 2, 0):
        text = "\n".join(head + [line(s, cap) for s in hit]) + "\n\n"
        if len(text) <= budget:
            return text
    lines: list[str] = []
    used = sum(len(x) + 1 for x in head) + 100
    for n, stack in enumerate(hit):
        entry = line(stack, 0)
        if used + len(entry) + 1 > budget:
            lines.append(f"> - … and {len(hit) - n} more stacks: see their plans below")
            break
        lines.append(entry)
        used += len(entry) + 1
    return "\n".join(head + lines) + "\n\n"


def _stack_section(stack: _Stack, scrub: _Scrub, budget: int) -> str:
    """A stack's section, at most ``budget`` characters (plan text, then address lists, shortened to fit)."""
    text = scrub(_clean(stack.plan.plan_text))
    full = _build_section(stack, scrub, text, None, None)
    if len(full) <= budget:
        return full
    without = _build_section(stack, scrub, "", 0, None)
    room = budget - len(without) - 400
    if room > 200:
        kept, shown, total = _truncate_lines(text, room)
        return _build_section(stack, scrub, kept, shown, total)
    # even the address lists are too long: cap them
    cap = 1000
    while cap > 0:
        section = _build_section(stack, scrub, "", 0, None, cap)
        if len(section) <= budget:
            return section
        cap //= 2
    return _build_section(stack, scrub, "", 0, None, 0)[:budget]


def _build_section(stack: _Stack, scrub: _Scrub, text: str, shown: int | None, total: int | None,
                   cap: int | None = None) -> str:
    """Heading and failed policy checks visible; the other changes and the plan text collapsed. Destroys and
    replacements are not listed again: the list at the top has them."""
    name = _name(stack)
    lines = [f"### {_icon(stack)}{_code(name)}: {stack.counts()}", ""]
    lines += _policy_lines(stack, scrub, cap)
    inner: list[str] = []
    for group in GROUPS:
        addresses = stack.groups.get(group)
        if not addresses:
            continue
        listed = addresses if cap is None else addresses[:cap]
        more = "" if len(listed) == len(addresses) else f", … and {len(addresses) - len(listed)} more"
        inner += [f"**{GROUP_TITLES[group]}** ({len(addresses)}): " + ", ".join(_code(scrub(a)) for a in listed)
                  + more, ""]
    if stack.outputs:
        listed_outputs = stack.outputs if cap is None else stack.outputs[:cap]
        inner += ["**Outputs:** " + ", ".join(f"{_code(scrub(o))} ({k})" for o, k in listed_outputs)
                  + ("" if len(listed_outputs) == len(stack.outputs) else ", …"), ""]
    if not stack.groups and not stack.outputs and stack.counted and stack.plan.status == "changes":
        inner += ["No resource changes in the plan JSON.", ""]
    if shown == 0 and total is None:
        summary = f"Changes in {html.escape(name)}"
        inner += ["*Plan output left out: the stack's change list alone fills the comment. "
                  "The full plan is in the CI job log.*"]
    else:
        summary = f"Plan output for {html.escape(name)}" + ("" if total is None else " (truncated)")
        inner += _fence(text, "text")
        if total is not None:
            inner += ["", f"*Plan output truncated to fit the comment: {shown} of {total} lines shown. "
                          "The full plan is in the CI job log.*"]
    lines += ["<details>", f"<summary>{summary}</summary>", "", *inner, "", "</details>", ""]
    return "\n".join(lines) + "\n"


def _failed_section(stack: _Stack, scrub: _Scrub, budget: int) -> str:
    name = _name(stack)
    detail = scrub(_clean(stack.plan.detail or "").strip()) or "(no detail)"
    text = scrub(_clean(stack.plan.plan_text).strip())
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
    return _blocks((f"- {_code(name)}\n" for name in names), budget, f"### {title}\n\n",
                   f"### {title} (continued)\n\n")


# -- render -----------------------------------------------------------------------------------------------

def _next_step(stacks: list[_Stack], protected: Collection[str]) -> str:
    """What the reviewer does next, in one sentence or two."""
    failed = [s for s in stacks if s.plan.status == "failed"]
    if failed:
        return f"Fix the failed {'stack' if len(failed) == 1 else 'stacks'} and push again."
    if any(s.policy_failed for s in stacks):
        return ("Fix the failed policy checks and push again (or apply with `--override-policy REASON`, "
                "which is recorded).")
    changed = [s for s in stacks if s.plan.status == "changes"]
    if not changed:
        return "Nothing to apply: merging changes no infrastructure."
    waiting = sorted({env for s in changed if (env := s.plan.environment) and env in protected})
    step = "Merge to apply."
    if waiting:
        names = [_code(e) for e in waiting]
        joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
        step += f" {joined} {'waits' if len(names) == 1 else 'wait'} for an approval."
    return step


def _header(title: str, part: int, parts: int, stacks: list[_Stack], commit: str | None, step: str) -> str:
    counts: dict[str, int] = {}
    for s in stacks:
        counts[s.plan.status] = counts.get(s.plan.status, 0) + 1
    add = sum(s.add for s in stacks)
    change = sum(s.change for s in stacks)
    destroy = sum(s.destroy for s in stacks)
    words = {"changes": "with changes", "ok": "without changes", "failed": "failed", "skipped": "skipped"}
    status = ", ".join(f"{counts[k]} {words[k]}" for k in ("failed", "changes", "ok", "skipped") if k in counts)
    others = sorted(set(counts) - set(words))
    status = ", ".join([status] + [f"{counts[k]} {_text(k, 30)}" for k in others] if others else [status])
    lines = [f"## {_text(title, 100)}" + (f" (part {part} of {parts})" if parts > 1 else ""), ""]
    facts = [f"Commit {_code(commit)}"] if commit else []
    facts += [f"**{_plural(len(stacks), 'stack')}**: {status or 'none'}",
              f"**{add} to add, {change} to change, {destroy} to destroy**"]
    lines += [" · ".join(facts), "", f"**Next step:** {step}"]
    return "\n".join(lines) + "\n\n"


def render(plans: list[StackPlan], *, title: str = "strata plan", limit: int = LIMIT,
           secrets: Iterable[Secret] = (), flavour: str = "github", commit: str | None = None,
           protected: Collection[str] = (), hide_paths: Mapping[str, str] | None = None) -> list[str]:
    """The Markdown comment(s) for these plans, each at most ``limit`` characters.

    ``secrets`` are sensitive values known from elsewhere: the run's dependency outputs marked sensitive,
    which reach a stack as plain variables when its dependency was not planned too. ``flavour`` is the
    platform the comment is posted on (:data:`FLAVOURS`); ``commit`` the (short) commit reviewed;
    ``protected`` the environments whose apply waits for an approval; ``hide_paths`` maps absolute paths of
    this machine to what is shown instead.
    """
    if flavour not in FLAVOURS:
        raise ValueError(f"unknown summary flavour {flavour!r}: one of {', '.join(FLAVOURS)}")
    redact = Redactor(set(secrets).union(*(sensitive_values(p.plan_json) for p in plans)))
    scrub = _Scrub(redact, hide_paths or {})
    commit = commit[:7] if commit and re.fullmatch(r"[0-9a-fA-F]{7,64}", commit) else None
    stacks = sorted((_analyse(p) for p in plans), key=lambda s: s.plan.stack)
    step = _next_step(stacks, protected)
    header_room = len(_header(title, 999999, 999999, stacks, commit, step)) + 16
    budget = limit - header_room
    if budget < 1000:
        raise ValueError(f"limit {limit} leaves no room for a summary")

    blocks: list[str] = _tables(stacks, scrub, budget) if stacks else ["No stacks were planned.\n"]
    warning = _destructive(stacks, scrub, flavour, budget // 2)
    if warning:
        blocks.append(warning)
    ranked = sorted(stacks, key=_Stack.rank)
    for s in ranked:
        if s.plan.status == "failed":
            blocks.append(_failed_section(s, scrub, budget))
    for s in ranked:
        if s.plan.status == "changes" or (s.plan.status == "ok" and _policy_lines(s, scrub, 0)):
            blocks.append(_stack_section(s, scrub, budget))
    blocks += _compact("Skipped", [_name(s) + (f" ({scrub(s.plan.detail)})" if s.plan.detail else "")
                                   for s in stacks if s.plan.status == "skipped"], budget)
    known = {"ok", "changes", "failed", "skipped"}
    blocks += _compact("Other", [f"{_name(s)} ({s.plan.status})" for s in stacks if s.plan.status not in known],
                       budget)

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
        body = _header(title, n, total, stacks, commit, step) + "".join(part)
        comments.append(body.rstrip("\n") + "\n")
    return comments
