"""State surgery: split one Terraform state (format 4, parsed JSON) by a migration's rules, in memory.

One pass over the source's resources: each resource's address is matched against every rule at once
(literal addresses and module prefixes through one dictionary lookup per address prefix, globs and
regular expressions compiled once per rule, tried only while they could still win), renamed, and
appended to its target's resource list. Dependencies are rewritten afterwards from a map of the moves.
Nothing here does I/O, runs terraform, or decides lineage and serial (the writer keeps the target's
lineage and raises its serial).

Inputs are never modified. The outputs are new dictionaries and lists down to each moved resource and
instance; unchanged values below them (``attributes``, ``private``...) are shared with the input, so
treat the result as read-only or serialise it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from strata.migrate.spec import (
    Rule,
    glob_regex,
    is_literal_pattern,
    is_module_path,
    parse_address,
    resource_address,
)

_KEY_RE = re.compile(r'\[(?:[0-9]+|"(?:[^"\\]|\\.)*")\]')


@dataclass(frozen=True)
class Move:
    """One resource (all its instances) that moves: ``old`` address in the source, ``new`` in ``target``."""

    old: str
    new: str
    target: str
    instances: int
    rule: str


@dataclass
class SurgeryResult:
    moves: list[Move]
    kept: list[str]  # addresses a keep rule leaves in the source
    unmatched: list[str]  # addresses no rule matches (they stay in the source; callers refuse to go on)
    collisions: list[str]  # human messages: an address taken twice, or a rename that cannot apply
    source: dict[str, Any]  # the source state data with the moved resources removed
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)  # target stack -> its new state data

    def ok(self) -> bool:
        """Nothing unmatched and no collisions: the result can be written."""
        return not self.unmatched and not self.collisions

    def moves_by_target(self) -> dict[str, list[Move]]:
        out: dict[str, list[Move]] = {}
        for move in self.moves:
            out.setdefault(move.target, []).append(move)
        return out


def new_state(source: dict[str, Any]) -> dict[str, Any]:
    """The state of a target that has none yet (the writer gives it a lineage and serial)."""
    return {"version": 4, "terraform_version": source.get("terraform_version", ""), "serial": 0, "lineage": "",
            "outputs": {}, "resources": []}


def config_address(address: str) -> str:
    """The address without module instance keys, as Terraform writes instance ``dependencies``."""
    return _KEY_RE.sub("", address) if "[" in address else address


def address_prefixes(address: str) -> list[str]:
    """Every prefix of ``address`` that ends at a segment boundary (before a ``.`` or ``[`` outside
    quoted keys), and the address itself: what a literal pattern may equal."""
    out: list[str] = []
    quoted = False
    i = 0
    n = len(address)
    while i < n:
        c = address[i]
        if quoted:
            if c == "\\":
                i += 2
                continue
            if c == '"':
                quoted = False
        elif c == '"':
            quoted = True
        elif (c == "." or c == "[") and i:
            out.append(address[:i])
        i += 1
    out.append(address)
    return out


def matches(address: str, pattern: str) -> bool:
    """Whether one ``resources`` pattern matches ``address``: equal to it, a prefix of it at a segment
    boundary (``module.vpc`` takes ``module.vpc.x.y`` and ``module.vpc["k"].x.y``), or a glob
    (``*`` crosses dots). For many addresses and rules, :class:`Matcher` does the same in one pass."""
    if is_literal_pattern(pattern):
        return address == pattern or (len(address) > len(pattern) and address.startswith(pattern)
                                      and address[len(pattern)] in ".[")
    return _glob(pattern)(address) is not None


@functools.lru_cache(maxsize=256)
def _glob(pattern: str) -> Callable[[str], Any]:
    return re.compile(glob_regex(pattern), re.S).fullmatch


class Matcher:
    """Finds the first rule matching an address; built once per split."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.literal: dict[str, int] = {}
        self.dynamic: list[tuple[int, Callable[[str], Any]]] = []  # in rule order
        self._module_prefixes: dict[str, list[str]] = {}
        for index, rule in enumerate(rules):
            globs: list[str] = []
            for pattern in rule.patterns:
                if is_literal_pattern(pattern):
                    self.literal.setdefault(pattern, index)
                else:
                    globs.append(glob_regex(pattern))
            if globs:
                self.dynamic.append((index, re.compile("|".join(f"(?:{g})" for g in globs), re.S).fullmatch))
            for text in rule.regexes:
                self.dynamic.append((index, re.compile(text).search))

    def prefixes(self, module: str, local: str) -> list[str]:
        """:func:`address_prefixes` of ``module.local``, with the module's part computed once per module."""
        if not module:
            base: list[str] = []
            head = ""
        else:
            cached = self._module_prefixes.get(module)
            if cached is None:
                cached = address_prefixes(module)
                self._module_prefixes[module] = cached
            base = cached
            head = module + "."
        parts = local.split(".")
        return base + [head + ".".join(parts[:k]) for k in range(1, len(parts) + 1)]

    def match(self, address: str, prefixes: Iterable[str]) -> int | None:
        best: int | None = None
        literal = self.literal
        for prefix in prefixes:
            index = literal.get(prefix)
            if index is not None and (best is None or index < best):
                best = index
        for index, test in self.dynamic:
            if best is not None and index >= best:
                break
            if test(address) is not None:
                return index
        return best


def rename_address(address: str, renames: Sequence[tuple[str, str, bool]]) -> tuple[str, tuple[str, str, bool] | None]:
    """Apply the first matching rename of ``renames`` (longest prefix first) to ``address``.

    Returns the new address and the rename applied (None when none applies). A module prefix followed by
    an instance key (``module.x["k"]`` under ``module.x``) keeps the key; dropping it there is an error
    the caller reports (the new address does not parse).
    """
    for rename in renames:
        old, new, is_module = rename
        if address == old:
            return new, rename
        if not is_module or not address.startswith(old):
            continue
        rest = address[len(old):]
        if rest[0] == ".":
            return (new + rest if new else rest[1:]), rename
        if rest[0] == "[":
            return new + rest, rename
    return address, None


def rewrite_provider(provider: str, old_module: str, new_module: str, rename: tuple[str, str, bool] | None) -> str:
    """The provider configuration address of a resource whose module path changed.

    ``module.vpc.provider["registry.terraform.io/hashicorp/null"]`` becomes ``provider["..."]`` when
    ``module.vpc`` is dropped; a resource renamed in full takes its provider along when the provider
    was configured in the resource's own module.
    """
    if rename is None or old_module == new_module or not provider.startswith("module."):
        return provider
    old, new, is_module = rename
    if is_module:
        if provider.startswith(old + "."):
            return new + provider[len(old):] if new else provider[len(old) + 1:]
        if provider.startswith(old + "[") and new:
            return new + provider[len(old):]
        return provider
    if old_module and provider.startswith(old_module + ".provider["):
        local = provider[len(old_module) + 1:]
        return f"{new_module}.{local}" if new_module else local
    return provider


@dataclass(slots=True)
class _Moved:
    resource: dict[str, Any]
    old: str
    new: str
    target: str


def split(source: dict[str, Any], targets: dict[str, dict[str, Any] | None], rules: Sequence[Rule]) -> SurgeryResult:
    """Split ``source`` by ``rules``; ``targets`` maps each target stack to its current state data (None
    when it has no state; a target missing from the mapping counts as None).

    The first rule that matches a resource decides; a resource moves with all its instances. The result
    lists the moves, kept and unmatched addresses and collisions; ``result.targets`` holds a new state
    for every target a move rule names, in rule order (its existing resources first, untouched, then the
    moved ones in source order; a target nothing lands in gets its state unchanged, or an empty new one),
    ``result.source`` the source without the moved resources.
    """
    if not isinstance(source, dict) or source.get("version") != 4:
        raise ValueError("the source is not a Terraform state of format version 4")
    for rule in rules:
        if rule.kind == "move" and rule.target is None:
            raise ValueError(f"move rule {rule.name!r} has no target")
    resources: list[dict[str, Any]] = [r for r in source.get("resources") or [] if isinstance(r, dict)]
    matcher = Matcher(rules)
    renames: list[list[tuple[str, str, bool]]] = [
        sorted(((old, new, is_module_path(old)) for old, new in rule.rename), key=lambda r: -len(r[0]))
        for rule in rules]

    moves: list[Move] = []
    kept: list[str] = []
    unmatched: list[str] = []
    collisions: list[str] = []
    remaining: list[dict[str, Any]] = []
    remaining_config: set[str] = set()
    moved: dict[str, list[_Moved]] = {}
    # old config address -> target -> new config address (the first resource moved there decides)
    config_moves: dict[str, dict[str, str]] = {}
    existing: dict[str, set[str]] = {}
    landed: dict[str, dict[str, str]] = {}  # target -> new address -> old address

    for resource in resources:
        module = resource.get("module") or ""
        mode = resource.get("mode") or "managed"
        rtype = str(resource.get("type", ""))
        name = str(resource.get("name", ""))
        local = f"data.{rtype}.{name}" if mode == "data" else f"{rtype}.{name}"
        address = f"{module}.{local}" if module else local
        index = matcher.match(address, matcher.prefixes(module, local))
        if index is None or rules[index].kind == "keep":
            (unmatched if index is None else kept).append(address)
            remaining.append(resource)
            remaining_config.add(config_address(address))
            continue
        rule = rules[index]
        target = rule.target
        assert target is not None
        new, applied = rename_address(address, renames[index]) if renames[index] else (address, None)
        instances = resource.get("instances") or []
        moves.append(Move(address, new, target, len(instances), rule.name))
        parsed = parse_address(new)
        if parsed is None:
            collisions.append(f'{address}: rule "{rule.name}" renames it to {new!r}, which is not a resource '
                              "address (to drop a module with instance keys, rename each instance: "
                              '"module.x[\\"key\\"]" = "")')
            remaining.append(resource)
            remaining_config.add(config_address(address))
            continue
        if (parsed[1], parsed[2]) != (mode, rtype):
            collisions.append(f'{address}: rule "{rule.name}" renames it to {new}, another resource type or mode; '
                              "terraform cannot move a resource between types")
            remaining.append(resource)
            remaining_config.add(config_address(address))
            continue
        if target not in existing:
            target_state = targets.get(target)
            existing[target] = {_address_of(r) for r in (target_state or {}).get("resources") or []
                                if isinstance(r, dict)}
            landed[target] = {}
        if new in existing[target]:
            collisions.append(f"{target}: {new} already exists in the target's state (moving {address}, "
                              f'rule "{rule.name}")')
            remaining.append(resource)
            remaining_config.add(config_address(address))
            continue
        first = landed[target].get(new)
        if first is not None:
            collisions.append(f"{target}: {first} and {address} would both become {new} "
                              f'(rule "{rule.name}")')
            remaining.append(resource)
            remaining_config.add(config_address(address))
            continue
        landed[target][new] = address
        new_module, _, _, new_name = parsed
        out = dict(resource)
        if new_module:
            out["module"] = new_module
        else:
            out.pop("module", None)
        out["name"] = new_name
        if isinstance(out.get("provider"), str):
            out["provider"] = rewrite_provider(out["provider"], module, new_module, applied)
        moved.setdefault(target, []).append(_Moved(out, address, new, target))
        config_moves.setdefault(config_address(address), {}).setdefault(target, config_address(new))

    # dependencies: rewritten inside each target, dropped across states
    targets_out: dict[str, dict[str, Any]] = {}
    for target in dict.fromkeys(r.target for r in rules if r.kind == "move" and r.target is not None):
        items = moved.get(target, [])
        base = targets.get(target)
        state = dict(base) if base is not None else new_state(source)
        added = []
        for item in items:
            res = item.resource
            res["instances"] = [_with_dependencies(inst, _dependencies_in_target(inst, config_moves, target))
                                for inst in res.get("instances") or []]
            added.append(res)
        state["resources"] = list((base or {}).get("resources") or []) + added
        targets_out[target] = state

    moved_away = {c for c in config_moves if c not in remaining_config}
    source_out = dict(source)
    source_out["resources"] = [_without_moved_dependencies(r, moved_away) for r in remaining]
    return SurgeryResult(moves, kept, unmatched, collisions, source_out, targets_out)


def _address_of(resource: dict[str, Any]) -> str:
    return resource_address(resource.get("module") or "", resource.get("mode") or "managed",
                            str(resource.get("type", "")), str(resource.get("name", "")))


def _dependencies_in_target(instance: Any, config_moves: dict[str, dict[str, str]], target: str) -> list[str] | None:
    if not isinstance(instance, dict) or not isinstance(instance.get("dependencies"), list):
        return None
    out: dict[str, None] = {}
    for dep in instance["dependencies"]:
        new = config_moves.get(dep, {}).get(target) if isinstance(dep, str) else None
        if new is not None:
            out[new] = None
    return list(out)


def _with_dependencies(instance: Any, dependencies: list[str] | None) -> Any:
    if not isinstance(instance, dict):
        return instance
    out = dict(instance)
    if dependencies is not None:
        if dependencies:
            out["dependencies"] = dependencies
        else:
            del out["dependencies"]  # Terraform leaves an empty list out (omitempty)
    return out


def _without_moved_dependencies(resource: dict[str, Any], moved_away: set[str]) -> dict[str, Any]:
    if not moved_away:
        return resource
    instances = resource.get("instances")
    if not isinstance(instances, list):
        return resource
    changed = False
    new_instances = []
    for inst in instances:
        deps = inst.get("dependencies") if isinstance(inst, dict) else None
        if isinstance(deps, list) and any(d in moved_away for d in deps):
            kept = [d for d in deps if d not in moved_away]
            inst = dict(inst)
            if kept:
                inst["dependencies"] = kept
            else:
                del inst["dependencies"]
            changed = True
        new_instances.append(inst)
    if not changed:
        return resource
    out = dict(resource)
    out["instances"] = new_instances
    return out
