"""The ``ci {}`` block of the root strata.hcl read for one environment: how the generated pipelines gate, order,
run and authenticate it (the block itself is decoded by :mod:`strata.config.ci`).

Without the block the pipelines behave as before: the environments named by ``production_environments`` are
protected (an approval before their apply) and come after every other environment; 8 jobs at a time on
``ubuntu-latest``; credentials from the CI system's variables.
"""

from __future__ import annotations

from strata.config.ci import DEFAULT_PARALLELISM, DEFAULT_RUNNER, PLACEHOLDERS, PLAN_SETTINGS, EnvironmentCI
from strata.errors import Diagnostic, ProblemsFound, StrataError
from strata.model.repository import Repository


def environments(repo: Repository) -> list[str]:
    """The environments of the repository's stacks, sorted."""
    return sorted({env for stack in repo.stacks.values() if (env := stack.environment)})


def _env_block(repo: Repository, env: str) -> EnvironmentCI | None:
    ci = repo.settings.ci
    return None if ci is None else ci.environments.get(env)


def is_protected(repo: Repository, env: str) -> bool:
    """Whether applying ``env`` waits for an approval: its ``environment`` block's ``protected``, else the ci
    block's ``protected`` list, else ``production_environments``."""
    block = _env_block(repo, env)
    if block is not None and block.protected is not None:
        return block.protected
    ci = repo.settings.ci
    if ci is not None and ci.protected is not None:
        return env in ci.protected
    return env in repo.settings.production_environments


def promotion_order(repo: Repository) -> list[str]:
    """Every environment in the order the pipelines apply them, each after the one before.

    With ``ci { promotion = [...] }``: environments it does not name first (sorted), then its order (names
    without stacks are left out). Without: unprotected environments first, then protected ones, each sorted.
    """
    envs = environments(repo)
    ci = repo.settings.ci
    if ci is not None and ci.promotion is not None:
        listed = [e for e in ci.promotion if e in envs]
        return [e for e in envs if e not in ci.promotion] + listed
    return [e for e in envs if not is_protected(repo, e)] + [e for e in envs if is_protected(repo, e)]


def parallelism(repo: Repository, env: str) -> int:
    """How many jobs of ``env`` run at a time."""
    block = _env_block(repo, env)
    if block is not None and block.parallelism is not None:
        return block.parallelism
    ci = repo.settings.ci
    return DEFAULT_PARALLELISM if ci is None else ci.parallelism


def runner(repo: Repository, env: str | None, default: tuple[str, ...] = DEFAULT_RUNNER) -> tuple[str, ...]:
    """The runner labels (GitHub ``runs-on``, GitLab ``tags``, Azure pool name and demands) of ``env``'s jobs
    (None: jobs of no one environment); ``default`` when the ci block sets none."""
    block = None if env is None else _env_block(repo, env)
    if block is not None and block.runner is not None:
        return block.runner
    ci = repo.settings.ci
    return default if ci is None or ci.runner is None else ci.runner


def credential_templates(repo: Repository, env: str, cloud: str) -> dict[str, str]:
    """The ci block's settings for ``cloud`` in ``env`` (environment block over the ci block), unfilled."""
    ci = repo.settings.ci
    if ci is None:
        return {}
    merged = dict(ci.credentials.get(cloud, {}))
    block = ci.environments.get(env)
    if block is not None:
        merged.update(block.credentials.get(cloud, {}))
    return merged


def fill(template: str, values: dict[str, str]) -> str:
    """``template`` with ``{environment}``, ``{account_id}`` and ``{cloud}`` replaced by ``values``."""
    out = template
    for name in PLACEHOLDERS:
        key = "{" + name + "}"
        if key in out:
            value = values.get(name) or ""
            if not value:
                raise StrataError(f"the ci block's {template!r} needs {{{name}}}, and the stack sets no {name}: set "
                                  f"{name} on it, or leave {{{name}}} out")
            out = out.replace(key, value)
    return out


def credentials(repo: Repository, env: str, cloud: str, account: str) -> dict[str, str]:
    """The settings one job of ``env`` uses to authenticate to ``cloud`` as ``account``, placeholders filled."""
    values = {"environment": env, "cloud": cloud, "account_id": account}
    return {name: fill(t, values) for name, t in sorted(credential_templates(repo, env, cloud).items())}


def apply_identity(creds: dict[str, str]) -> dict[str, str]:
    """``creds`` (of :func:`credentials`) as the apply jobs use them: without the ``plan_*`` settings."""
    return {name: value for name, value in creds.items() if not name.startswith("plan_")}


def plan_identity(cloud: str, creds: dict[str, str]) -> dict[str, str]:
    """``creds`` (of :func:`credentials`) as the plan jobs use them: each apply identity setting (AWS ``role``,
    Azure ``client_id``, GCP ``service_account``, ``service_connection``) replaced by its ``plan_*`` setting, or
    left out when there is none (the pipeline then reads the CI system's plan variable), never kept."""
    out = apply_identity(creds)
    for apply_name, plan_name in PLAN_SETTINGS.get(cloud, {}).items():
        out.pop(apply_name, None)
        if plan_name in creds:
            out[apply_name] = creds[plan_name]
    return out


def check(repo: Repository) -> None:
    """Raise :class:`ProblemsFound` with :func:`problems`, when there are any."""
    found = problems(repo)
    if found:
        raise ProblemsFound(found[:20])


def problems(repo: Repository) -> list[Diagnostic]:
    """What the ci block gets wrong about this repository's stacks, with its file:line: a name of promotion,
    protected or an environment block that no stack has (a typo would leave ``production`` unprotected or first
    in line), and a credential placeholder a stack cannot fill."""
    ci = repo.settings.ci
    if ci is None:
        return []
    known = environments(repo)
    shown = ", ".join(known) or "none"
    found: list[Diagnostic] = []
    for setting, names in (("promotion", ci.promotion), ("protected", ci.protected)):
        for name in names or ():
            if name not in known:
                found.append(Diagnostic("error", f"ci {{ {setting} }} names {name!r}, an environment no stack has "
                                                    f"(environments: {shown})", ci.sources.get(setting, ci.source)))
    for name, block in ci.environments.items():
        if name not in known:
            found.append(Diagnostic("error", f"ci {{ environment {name!r} }}: no stack has this environment "
                                                f"(environments: {shown})", block.source))
    for stack in sorted(repo.stacks.values(), key=lambda s: s.path):
        cloud = stack.dimension("cloud")
        if stack.environment and cloud:
            try:
                credentials(repo, stack.environment, cloud, stack.dimension("account_id") or "")
            except StrataError as exc:
                found.append(Diagnostic("error", f"{stack.path}: {exc}", ci.source))
    return found
