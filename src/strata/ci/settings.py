"""The ``ci {}`` block of the root strata.hcl: how the generated pipelines gate, order and run environments.

Without the block the pipelines behave as before: the environments named by ``production_environments`` are
protected (an approval before their apply) and come after every other environment.
"""

from __future__ import annotations

from strata.model.repository import Repository


def environments(repo: Repository) -> list[str]:
    """The environments of the repository's stacks, sorted."""
    return sorted({env for stack in repo.stacks.values() if (env := stack.environment)})


def is_protected(repo: Repository, env: str) -> bool:
    """Whether applying ``env`` waits for an approval."""
    return env in repo.settings.production_environments


def promotion_order(repo: Repository) -> list[str]:
    """Every environment in the order the pipelines apply them: unprotected first, then protected."""
    envs = environments(repo)
    return [e for e in envs if not is_protected(repo, e)] + [e for e in envs if is_protected(repo, e)]
