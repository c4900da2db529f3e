"""Check a whole repository and report every problem at its file:line.

Errors: dependency cycles, dependencies that are not stacks, a lower layer depending on a higher
one, two stacks sharing one state, overlapping CIDR blocks in one network scope, names unsafe in
paths, production state without encryption, backend settings Terraform would refuse, a stack
whose Terraform declares a backend that strata also generates, inputs no variable of the stack takes
(terraform ignores them silently) and required variables nothing sets.
Warnings: one bucket/container shared by several environments, stacks on the embedded local
default, dependencies whose outputs are never read.
"""

from __future__ import annotations

import fnmatch
import ipaddress
import os
import re
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from strata.backends import get_backend
from strata.errors import ConfigError, Diagnostic, Source, did_you_mean
from strata.model import dimensions as dims
from strata.model.repository import Repository
from strata.model.stack import Setting, Stack
from strata.terraform.modules import read_code
from strata.terraform.variables import Variable, assigned_variables, declared_variables_of
from strata.terraform.version import Version

# `backend "s3" {` anywhere on a line that is not a comment (one-line terraform { backend "x" {} } too),
# or a Terraform Cloud `cloud {` block.
_BACKEND_BLOCK = re.compile(r'^(?!\s*(?:#|//))(?:.*?[{\s])?(backend\s+"[^"]*"|cloud)\s*\{')
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
VARIABLES_CACHE = "variables.json"  # the parsed variable blocks of every stack, by content
_InputAt = tuple[str, int, str]  # an input where it is written: file, line, name


def validate(repo: Repository, version: Version | None, terraform_args: Sequence[str] = ()) -> list[Diagnostic]:
    """Every problem in ``repo`` (loading problems included), sorted by file and line. ``terraform_args`` are
    the flags a run hands terraform (``strata plan -- -var x=1``): the variables they set are set."""
    found = list(repo.diagnostics)
    for check in (_graph, _layers, _states, _backends, _encryption, _storage_sharing, _cidrs,
                  _paths, _declared_backends, _ci):
        found.extend(check(repo, version))
    found.extend(_inputs(repo, version, terraform_args))
    unique: dict[tuple[Any, ...], Diagnostic] = {}
    for d in found:
        unique.setdefault((d.severity, d.source.file, d.source.line, d.message), d)
    return sorted(unique.values(), key=lambda d: (d.source.file, d.source.line, d.severity, d.message))


def _graph(repo: Repository, version: Version | None) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for stack in repo.stacks.values():
        for dep in stack.dependencies:
            label = f'dependency "{dep.name}"' if dep.name else "dependency"
            if dep.path == stack.path:
                out.append(Diagnostic("error", f"{label}: stack {stack.path} depends on itself", dep.source))
            elif dep.path in repo.unreadable:
                continue  # its strata.hcl has a syntax error, reported already
            elif dep.path not in repo.stacks:
                out.append(Diagnostic("error", f"{label}: {repo.display(dep.path)} is not a stack "
                                      "(no strata.hcl with a stack {} block there)", dep.source))
            elif dep.name and not dep.used:
                out.append(Diagnostic("warning", f'dependency "{dep.name}": its outputs are never used; '
                                      "use dependencies = [...] when only the order matters", dep.source))
    for cycle in repo.graph.cycles():
        if len(cycle) == 2:
            continue  # a stack depending on itself is reported above
        first = repo.stacks[cycle[0]]
        edge = next((d for d in first.dependencies if d.path == cycle[1]), None)
        source = edge.source if edge else first.source
        out.append(Diagnostic("error", "dependency cycle: " + " -> ".join(cycle), source))
    return out


def _ci(repo: Repository, version: Version | None) -> list[Diagnostic]:
    """The ci {} block against the stacks: names of environments no stack has, placeholders left unfilled."""
    from strata.ci.settings import problems

    return problems(repo)


def _layer_rank(stack: Stack, repo: Repository) -> tuple[float, str] | None:
    if stack.client:
        return (float("inf"), "client stacks")
    layer = stack.layer
    if layer is None:
        return None
    order = repo.settings.layers
    if order is not None:
        return (float(order.index(layer)), layer) if layer in order else None
    key = dims.layer_sort_key(layer)
    return None if key[0] == 1_000_000 else (float(key[0]), layer)


def _layers(repo: Repository, version: Version | None) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    order = repo.settings.layers
    for stack in repo.stacks.values():
        if order is not None and stack.layer is not None and stack.layer not in order:
            setting = stack.dimensions["layer"]
            out.append(Diagnostic("error", f"layer {stack.layer!r} is not in strata {{ layers = [...] }} "
                                  f"({', '.join(order)})", setting.source if setting.source.file
                                  else stack.source))
        rank = _layer_rank(stack, repo)
        if rank is None:
            continue
        for dep in stack.dependencies:
            target = repo.stacks.get(dep.path)
            target_rank = _layer_rank(target, repo) if target else None
            if target_rank is not None and target_rank[0] > rank[0]:
                what = stack.layer or "a client stack"
                out.append(Diagnostic(
                    "error", f"{what} ({stack.path}) depends on {target_rank[1]} ({dep.path}), a higher "
                    "layer; dependencies must point to lower layers", dep.source))
    return out


def _backend_source(stack: Stack, attribute: str | None) -> Source:
    assert stack.backend is not None
    if attribute and attribute in stack.backend.settings:
        source = stack.backend.settings[attribute].source
        if source.file:
            return source
    return stack.backend.source if stack.backend.source.file else stack.source


def _states(repo: Repository, version: Version | None) -> list[Diagnostic]:
    seen: dict[tuple[Any, ...], Stack] = {}
    out: list[Diagnostic] = []
    for path in sorted(repo.stacks):
        stack = repo.stacks[path]
        if stack.backend is None:
            continue
        backend = get_backend(stack.backend.type)
        if backend is None:
            continue
        location = backend.location(stack.backend.values(), stack.path)
        other = seen.get(location)
        if other is None:
            seen[location] = stack
            continue
        key = backend.key_attribute
        blamed = stack
        if not _explicit(stack, key) and _explicit(other, key):
            blamed = other  # the stack whose key was set by hand is the one to look at
        out.append(Diagnostic(
            "error", f"stacks {other.path} and {stack.path} resolve to the same state "
            f"({stack.backend.type} {_describe_location(location)}); give one a distinct {key}",
            _backend_source(blamed, key)))
    return out


def _explicit(stack: Stack, attribute: str) -> bool:
    setting = stack.backend.settings.get(attribute) if stack.backend else None
    return setting is not None and setting.source.is_file


def _describe_location(location: tuple[Any, ...]) -> str:
    return "/".join(str(p) for p in location[1:] if p not in (None, ""))


def _backends(repo: Repository, version: Version | None) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for stack in repo.stacks.values():
        if stack.backend is None:
            continue
        if stack.backend.embedded:
            out.append(Diagnostic("warning", f"stack {stack.path} has no backend block; its state uses the "
                                  f"embedded local default under {repo.settings.state_dir}/", stack.source))
            continue
        backend = get_backend(stack.backend.type)
        if backend is None:
            continue
        for problem in backend.check(stack.backend.values(), version):
            out.append(Diagnostic(problem.severity, f'backend "{stack.backend.type}": {problem.message}',
                                  _backend_source(stack, problem.attribute)))
    return out


def _encryption(repo: Repository, version: Version | None) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    production = set(repo.settings.production_environments)
    for stack in repo.stacks.values():
        if stack.environment not in production or stack.backend is None:
            continue
        backend = get_backend(stack.backend.type)
        reason = backend.encryption_problem(stack.backend.values()) if backend else None
        if reason:
            attribute = "encrypt" if stack.backend.type == "s3" else None
            out.append(Diagnostic(
                "error", f"production stack {stack.path} keeps its state without encryption: {reason}; use an "
                "encrypted backend (or, for a demo, name the environments treated as production in "
                "strata { production_environments = [...] })", _backend_source(stack, attribute)))
    return out


def _storage_sharing(repo: Repository, version: Version | None) -> list[Diagnostic]:
    environments: dict[str, set[str]] = defaultdict(set)
    first: dict[str, Stack] = {}
    for path in sorted(repo.stacks):
        stack = repo.stacks[path]
        if stack.backend is None or stack.environment is None:
            continue
        backend = get_backend(stack.backend.type)
        storage = backend.storage(stack.backend.values()) if backend else None
        if storage is None:
            continue
        environments[storage].add(stack.environment)
        first.setdefault(storage, stack)
    return [
        Diagnostic("warning", f"{storage} holds the state of several environments ({', '.join(sorted(envs))}); "
                   "one backend per environment/region isolates them", _backend_source(first[storage], None))
        for storage, envs in sorted(environments.items()) if len(envs) > 1
    ]


def _cidr_leaves(name: str, setting: Setting, pattern: re.Pattern[str],
                 matched: bool = False) -> list[tuple[str, Any, Source]]:
    """(input path, value, source) for every input leaf whose name matches a CIDR pattern."""
    leaf_name = name.rsplit(".", 1)[-1]
    is_cidr = matched or pattern.match(leaf_name.lower()) is not None
    if setting.children is not None:
        out: list[tuple[str, Any, Source]] = []
        for key, child in setting.children.items():
            out.extend(_cidr_leaves(f"{name}.{key}", child, pattern, is_cidr))
        return out
    return [(name, setting.value, setting.source)] if is_cidr else []


def _cidrs(repo: Repository, version: Version | None) -> list[Diagnostic]:
    patterns = repo.settings.cidr_inputs
    if not patterns:
        return []
    pattern = re.compile("|".join(f"(?:{fnmatch.translate(p.lower())})" for p in patterns))
    out: list[Diagnostic] = []
    scopes: dict[tuple[Any, ...], list[tuple[Network, str, str, Source]]] = defaultdict(list)
    for path in sorted(repo.stacks):
        stack = repo.stacks[path]
        scope = tuple(stack.dimension(d) for d in repo.settings.network_scope)
        for name, setting in stack.inputs.items():
            for input_path, value, source in _cidr_leaves(name, setting, pattern):
                values = value if isinstance(value, list) else [value]
                for item in values:
                    if not isinstance(item, str):
                        continue  # deferred outputs and non-strings are not CIDR literals
                    try:
                        net = ipaddress.ip_network(item, strict=False)
                    except ValueError:
                        out.append(Diagnostic("error", f"{input_path} = {item!r} is not a CIDR block "
                                              "(like \"10.0.0.0/16\")", source))
                        continue
                    if net.prefixlen == 0:
                        continue  # 0.0.0.0/0 means "anywhere", not a network of this stack
                    scopes[scope].append((net, stack.path, input_path, source))
    for scope, nets in scopes.items():
        scope_text = ", ".join(f"{d}={v}" for d, v in zip(repo.settings.network_scope, scope, strict=True)
                               if v is not None) or "the whole repository"
        nets.sort(key=lambda n: (n[0].version, int(n[0].network_address), -n[0].prefixlen))
        active: list[tuple[Network, str, str, Source]] = []
        for entry in nets:
            net = entry[0]
            active = [a for a in active if a[0].version == net.version
                      and int(a[0].broadcast_address) >= int(net.network_address)]
            for other in active:
                if other[1] != entry[1]:
                    out.append(Diagnostic(
                        "error", f"{entry[2]} {net} of {entry[1]} overlaps {other[2]} {other[0]} of {other[1]} "
                        f"({other[3]}) in network scope {scope_text}", entry[3]))
            active.append(entry)
    return out


def _paths(repo: Repository, version: Version | None) -> list[Diagnostic]:
    out: list[Diagnostic] = []
    for stack in repo.stacks.values():
        for segment in stack.path.split("/") if stack.path else []:
            reason = dims.unsafe_name_reason(segment)
            if reason:
                out.append(Diagnostic("error", f"folder name {segment!r} in stack path {stack.path!r} is not "
                                      f"safe in state keys: {reason}", stack.source))
    return out


def _declared_backends(repo: Repository, version: Version | None) -> list[Diagnostic]:
    """Terraform refuses two backend blocks: find hand-written ones beside the generated file."""
    out: list[Diagnostic] = []
    generated = repo.settings.backend_file
    for stack in repo.stacks.values():
        folder = repo.root / stack.path
        try:
            names = sorted(p.name for p in folder.iterdir()
                           if p.suffix == ".tf" and p.name != generated and not p.is_dir())
        except OSError:
            continue
        for name in names:
            rel = f"{stack.path}/{name}" if stack.path else name
            try:
                text = (read_code(folder / name) or b"").decode("utf-8", errors="replace")
            except ConfigError as exc:  # a FIFO, a device, a folder: terraform could not read it either
                out.append(Diagnostic("error", exc.message, Source(repo.display(rel))))
                continue
            if "backend" not in text and "cloud" not in text:
                continue
            for number, line in enumerate(text.splitlines(), 1):
                m = _BACKEND_BLOCK.match(line)
                if m:
                    out.append(Diagnostic(
                        "error", f"the stack declares its own {m.group(1)} block, but "
                        f"strata generates the backend into {generated}; remove this block and configure "
                        "the backend in strata.hcl", Source(repo.display(rel), number)))
    return out


def _inputs(repo: Repository, version: Version | None, terraform_args: Sequence[str] = ()) -> list[Diagnostic]:
    """Inputs no variable takes, and required variables nothing sets, for each stack with Terraform code.

    An input written in the stack's own strata.hcl must be a variable of the stack. One inherited from a
    parent strata.hcl serves many stacks (tags for all of them), so it is an error only when none of the
    stacks below it declares it: then it is a typo or left over. A required variable whose name is near
    such an input is that typo: reported once, as the input.
    """
    out: list[Diagnostic] = []
    broken = {d.source.file for d in repo.diagnostics if d.severity == "error"}
    below: dict[_InputAt, set[str]] = defaultdict(set)  # inherited inputs -> the variables of the stacks below
    taken: set[_InputAt] = set()  # inputs some stack declares
    reported: set[_InputAt] = set()
    unset: list[tuple[Stack, Variable, set[_InputAt]]] = []  # with the mistyped inputs that would explain it
    from_environment = {name.removeprefix("TF_VAR_") for name in os.environ if name.startswith("TF_VAR_")}
    from_environment |= _set_by_flags(terraform_args)
    var_file = any(a == "-var-file" or a.startswith("-var-file=") for a in terraform_args)
    for path, declared in _variables(repo).items():
        stack = repo.stacks[path]
        strays: list[_InputAt] = []
        for name, setting in stack.inputs.items():
            at = (setting.source.file, setting.source.line, name)
            if name in declared:
                taken.add(at)
                continue
            strays.append(at)
            if setting.source.file == stack.config_file:
                reported.add(at)
                out.append(Diagnostic("error", f"input {name!r}: stack {stack.path} declares no such variable, so "
                                      f"terraform would ignore it{did_you_mean(name, declared)}", setting.source))
            else:
                below[at].update(declared)
        if not var_file and not broken.intersection(stack.config_chain):  # else an input may be missing: it failed
            unset.extend((stack, v, {at for at in strays if did_you_mean(at[2], [v.name])})
                         for v in _unset(repo, stack, declared, from_environment))
    settled = taken | reported  # reported: a stack's own input, which the stacks nested in it inherit
    for (file, line, name), names in below.items():
        if (file, line, name) not in settled:
            reported.add((file, line, name))
            out.append(Diagnostic("error", f"input {name!r}: no stack that inherits it declares such a "
                                  f"variable{did_you_mean(name, names)}", Source(file, line)))
    out.extend(Diagnostic("error", f"variable {v.name!r} of stack {stack.path} is required (it has no default), "
                          f"but nothing sets it (no input, no terraform.tfvars or *.auto.tfvars, no "
                          f"TF_VAR_{v.name}): add it to the inputs in {stack.config_file}, or give it a default",
                          v.source) for stack, v, typos in unset if not typos & reported)
    return out


def _set_by_flags(terraform_args: Sequence[str]) -> set[str]:
    """The variables ``-var NAME=VALUE`` / ``-var=NAME=VALUE`` set (a ``-var-file`` may set any: not checked)."""
    names: set[str] = set()
    for i, arg in enumerate(terraform_args):
        value = arg.removeprefix("-var=") if arg.startswith("-var=") else (
            terraform_args[i + 1] if arg == "-var" and i + 1 < len(terraform_args) else None)
        if value is not None and "=" in value:
            names.add(value.split("=", 1)[0].strip())
    return names


def _variables(repo: Repository) -> dict[str, dict[str, Variable]]:
    """The variables of each stack's Terraform code, for the stacks that have code of their own that strata
    can read (else terraform will say why)."""
    paths = sorted(repo.stacks)
    found = declared_variables_of([(repo.root / path, repo.display(path)) for path in paths],
                                  repo.root / ".strata" / "cache" / VARIABLES_CACHE, repo.settings.backend_file)
    return {path: variables for path, variables in zip(paths, found, strict=True) if isinstance(variables, dict)}


def _unset(repo: Repository, stack: Stack, declared: dict[str, Variable], from_environment: set[str]
           ) -> list[Variable]:
    """Required variables that no input, variable file or TF_VAR_ of strata's environment sets. The
    environment counts: plan and apply run this check and give terraform that same environment."""
    missing = [v for v in declared.values() if v.required and v.name not in stack.inputs
               and v.name not in from_environment]
    if not missing:
        return []
    try:
        assigned = assigned_variables(repo.root / stack.path, repo.display(stack.path), repo.settings.inputs_file)
    except ConfigError:
        return []  # a variable file strata cannot read: terraform names the mistake
    return [v for v in missing if v.name not in assigned]
