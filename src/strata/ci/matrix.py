"""The selected stacks as CI jobs in dependency order.

The CI system is the distributed engine: strata only says which stacks may run side by side. Stacks are
put in waves: a stack's wave is one more than the latest wave of a selected stack it depends on, so every
stack of a wave depends only on stacks of earlier waves. Dependencies outside the selection are ignored.

For the generated pipelines, :func:`jobs` cuts the selection into groups of (environment, wave, cloud,
account) — waves counted within each environment, as environments are applied one after another in promotion
order — and each group into batches of stacks, one CI job each, with the credentials the group needs (the
``ci {}`` block's settings with ``{environment}``, ``{account_id}`` and ``{cloud}`` filled). A matrix holds at
most ``max_jobs`` entries (GitHub: 256): beyond, batches grow.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from typing import Any

from strata.ci import settings
from strata.errors import StrataError
from strata.model.repository import Repository
from strata.model.stack import Stack

MAX_JOBS = 256  # GitHub Actions: jobs one matrix may generate


def waves(repo: Repository, paths: Iterable[str]) -> dict[str, int]:
    """Each stack's wave within ``paths``: 0 without a selected dependency, else one more than the latest."""
    chosen = set(paths)
    graph = repo.graph
    order = graph.run_order(chosen)
    if len(order) != len(chosen):
        cyclic = sorted(chosen - set(order))
        raise StrataError(f"these stacks depend on each other in a cycle and cannot be ordered: {', '.join(cyclic)} "
                          "(run `strata validate` to see the cycle)")
    wave: dict[str, int] = {}
    for path in order:  # dependencies come first
        wave[path] = 1 + max((wave[d] for d in graph.depends_on.get(path, set()) & chosen), default=-1)
    return wave


def matrix(repo: Repository, stacks: Iterable[Stack], *, stacks_per_job: int = 1,
           max_jobs: int = MAX_JOBS) -> dict[str, Any]:
    """``{"groups": [[path, ...], ...], "include": [...], "jobs": [...]}``.

    ``groups[n]`` lists the stacks of wave ``n`` (sorted); ``include`` has one entry per stack
    (``{"stack", "wave", "needs"}``), ordered by wave then path, ``needs`` being the selected stacks it depends
    on directly; ``jobs`` is :func:`jobs`. Raises :class:`StrataError` when the selected stacks depend on each
    other in a cycle.
    """
    chosen = {s.path: s for s in stacks}
    wave = waves(repo, chosen)
    count = 1 + max(wave.values(), default=-1)
    groups: list[list[str]] = [[] for _ in range(count)]
    for path in sorted(wave):
        groups[wave[path]].append(path)
    graph = repo.graph
    include = [{"stack": path, "wave": n, "needs": sorted(graph.depends_on.get(path, set()) & set(chosen))}
               for n, group in enumerate(groups) for path in group]
    return {"groups": groups, "include": include,
            "jobs": jobs(repo, chosen.values(), stacks_per_job=stacks_per_job, max_jobs=max_jobs)}


def _key(stack: Stack) -> tuple[str, str, str]:
    return stack.environment or "", stack.dimension("cloud") or "", stack.dimension("account_id") or ""


def jobs(repo: Repository, stacks: Iterable[Stack], *, stacks_per_job: int = 1,
         max_jobs: int = MAX_JOBS) -> list[dict[str, Any]]:
    """One entry per CI job: ``{"id", "group", "environment", "wave", "cloud", "account", "stacks",
    "credentials", "plan_credentials"}`` (``group``: ``ENV-CLOUD-ACCOUNT``; ``credentials``: the apply
    identity, ``plan_credentials``: the plan identity, see :func:`settings.plan_identity`),
    ordered by promotion order, wave, cloud, account. Stacks without an environment are left out (the
    pipelines apply environment by environment)."""
    if stacks_per_job < 1 or max_jobs < 1:
        raise StrataError("--stacks-per-job and --max-jobs must be at least 1")
    by_env: dict[str, list[Stack]] = {}
    for stack in stacks:
        if stack.environment:
            by_env.setdefault(stack.environment, []).append(stack)
    out: list[dict[str, Any]] = []
    order = {env: i for i, env in enumerate(settings.promotion_order(repo))}
    for env in sorted(by_env, key=lambda e: (order.get(e, -1), e)):
        env_stacks = {s.path: s for s in by_env[env]}
        wave = waves(repo, env_stacks)
        for n in range(1 + max(wave.values(), default=-1)):
            groups: dict[tuple[str, str, str], list[str]] = {}
            for path in sorted(p for p, w in wave.items() if w == n):
                groups.setdefault(_key(env_stacks[path]), []).append(path)
            size = stacks_per_job
            while sum(math.ceil(len(g) / size) for g in groups.values()) > max_jobs:
                size += 1
            for (_, cloud, account), paths in sorted(groups.items()):
                creds = settings.credentials(repo, env, cloud, account) if cloud else {}
                for start in range(0, len(paths), size):
                    batch = paths[start:start + size]
                    group = f"{env}-{cloud or 'none'}-{account or 'none'}"
                    out.append({"id": f"{env}-{n}-{cloud or 'none'}-{account or 'none'}-{start // size + 1}",
                                "group": group, "environment": env, "wave": n, "cloud": cloud,
                                "account": account, "stacks": batch,
                                "credentials": settings.apply_identity(creds),
                                "plan_credentials": settings.plan_identity(cloud, creds)})
    return out


def output_key(env: str, wave: int | None = None) -> str:
    """The name of the output that carries the matrix of ``env``'s wave ``wave``, or of all its waves (letters,
    digits and ``_``)."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", env)
    return f"env_{name}" if wave is None else f"wave_{name}_{wave}"


def output_lines(repo: Repository, entries: list[dict[str, Any]], *, selected: list[Stack],
                 identity: str | None = None) -> list[str]:
    """``NAME=VALUE`` lines for the select job of the generated pipelines (``$GITHUB_OUTPUT``, Azure output
    variables): per environment and wave of the repository, ``{"include": [...]}`` (empty when nothing runs
    there) and of all its waves; ``stacks`` = how many stacks; ``clouds`` = the JSON list of their clouds; with
    ``identity``, per cloud ``identity_<cloud>`` = the credentials of the one identity a single job (the PR
    plan, a destroy) uses for all of them ("plan": the plan identity, never the apply one)."""
    lines: list[str] = []
    total = waves_per_environment(repo)
    for env in settings.promotion_order(repo):
        mine = [e for e in entries if e["environment"] == env]
        lines.append(f"{output_key(env)}={json.dumps({'include': by_group(mine)}, sort_keys=True)}")
        for n in range(total.get(env, 0)):
            include = [e for e in mine if e["wave"] == n]
            lines.append(f"{output_key(env, n)}={json.dumps({'include': include}, sort_keys=True)}")
    lines.append(f"stacks={len(selected)}")
    clouds = sorted({c for s in selected if (c := s.dimension("cloud"))})
    lines.append(f"clouds={json.dumps(clouds)}")
    chosen = one_identity(repo, selected, plan=identity == "plan") if identity else {}
    for cloud, creds in sorted(chosen.items()):
        lines.append(f"identity_{cloud}={json.dumps(creds, sort_keys=True)}")
        lines += [f"identity_{cloud}_{name}={value}" for name, value in sorted(creds.items())]
    return lines


def by_group(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per group (environment, cloud, account) with all its stacks, whatever their wave: what one job
    plans (strata orders them itself). ``id`` is the group."""
    out: dict[str, dict[str, Any]] = {}
    for entry in entries:
        group = out.setdefault(entry["group"], {**{k: v for k, v in entry.items() if k not in ("wave", "stacks")},
                                                "id": entry["group"], "stacks": []})
        group["stacks"] += entry["stacks"]
    return list(out.values())


def waves_per_environment(repo: Repository) -> dict[str, int]:
    """How many waves each environment has with every stack selected: the most any selection can need."""
    by_env: dict[str, list[str]] = {}
    for stack in repo.stacks.values():
        if stack.environment:
            by_env.setdefault(stack.environment, []).append(stack.path)
    return {env: 1 + max(waves(repo, paths).values(), default=-1) for env, paths in sorted(by_env.items())}


# The settings that make an identity; the others (region, subscription, project) are dropped when they differ.
IDENTITY = {"aws": ("role",), "azure": ("client_id", "tenant_id"),
            "gcp": ("workload_identity_provider", "service_account")}


def one_identity(repo: Repository, stacks: Iterable[Stack], *, plan: bool) -> dict[str, dict[str, str]]:
    """Per cloud of ``stacks``: the one identity a single job uses for all of them (``plan``: the plan identity
    of :func:`settings.plan_identity`, with no apply setting in it).
    A setting that is not the identity itself (an AWS region, an Azure
    subscription, a GCP project) is left out when the stacks differ in it: their own configuration names it.
    Raises :class:`StrataError` when the identities differ."""
    found: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for stack in sorted(stacks, key=lambda s: s.path):
        env, cloud, account = _key(stack)
        if not cloud or not settings.credential_templates(repo, env, cloud):
            continue
        creds = settings.credentials(repo, env, cloud, account)
        creds = settings.plan_identity(cloud, creds) if plan else settings.apply_identity(creds)
        creds.pop("service_connection", None)
        found.setdefault(cloud, []).append((stack.path, creds))
    out: dict[str, dict[str, str]] = {}
    for cloud, entries in sorted(found.items()):
        keys = IDENTITY.get(cloud, ())
        first_path, first = entries[0]
        for path, creds in entries[1:]:
            if any(creds.get(k) != first.get(k) for k in keys):
                setting = {"aws": "plan_role", "azure": "plan_client_id", "gcp": "plan_service_account"}[cloud]
                hint = (f"set {cloud} {{ {setting} = \"...\" }} in the ci block: one identity that can plan every "
                        "account" if plan else f"change the stacks of each {cloud} identity separately")
                raise StrataError(f"these stacks use more than one {cloud} identity ({first_path} and {path} "
                                  f"differ); this job authenticates once per cloud: {hint}")
        out[cloud] = {k: v for k, v in first.items() if all(c.get(k) == v for _, c in entries)}
    return out
