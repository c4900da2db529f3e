"""The policy results of a run on the terminal: a line per stack that did not pass, a line per failed check."""

from __future__ import annotations

from typing import Any

from strata.policy.check import BLOCKING


def _finding(item: dict[str, Any], note: str = "") -> str:
    severity = item.get("severity") or "no severity"
    name = f" {item['name']}" if item.get("name") else ""
    return f"    {item.get('id')}{name}: {item.get('resource')} [{severity}]{note}"


def lines(results: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """What to print for the policy records of a run's stacks (path, record); empty when none was checked."""
    if not results:
        return []
    counts: dict[str, int] = {}
    for _, record in results:
        counts[record["status"]] = counts.get(record["status"], 0) + 1
    threshold = results[0][1].get("threshold") or "LOW"
    parts = [f"{counts[s]} {s}" for s in ("failed", "error", "overridden", "skipped", "passed") if s in counts]
    out = [f"policy: {', '.join(parts)} (failing at {threshold} and above)"]
    for path, record in results:
        status = record["status"]
        if status == "passed" and not any(record.get(k) for k in ("failed", "below_threshold", "skipped")):
            continue
        reason = f": {record['reason']}" if record.get("reason") else ""
        out.append(f"  {path or '.'}: {status}{reason}")
        out += [_finding(f) for f in record.get("failed") or []]
        out += [_finding(f, f" (below {threshold}: not failing)") for f in record.get("below_threshold") or []]
        out += [_finding(f, f" (skipped: {f.get('reason')})") for f in record.get("skipped") or []]
    blocking = sum(counts.get(s, 0) for s in BLOCKING)
    if blocking:
        out.append(f"policy: {blocking} stack(s) did not pass: their plans are applied only with "
                   "--override-policy \"REASON\" (recorded)")
    return out
