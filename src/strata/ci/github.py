"""GitHub Actions: strata-plan.yml (pull requests), strata-apply.yml (main), strata-destroy.yml (by hand).

The apply workflow has a ``select`` job (``strata ci matrix --outputs``), then per environment in promotion
order a ``plan-ENV`` job (the reviewed plan, or a plan of main shown in the job summary) and one
``apply-ENV-N`` job per wave: static jobs, as many as the environment has waves with every stack selected,
each with a dynamic matrix (one entry per group of stacks sharing cloud and account) and skipped when its
matrix is empty. ``!failure()`` (true when no ancestor failed) lets a job run after a skipped one.
"""

from __future__ import annotations

from strata import __version__
from strata.ci import settings
from strata.ci.generate import (
    AWS_CREDENTIALS,
    AZURE_LOGIN,
    BUNDLE,
    CACHE,
    CHECKOUT,
    DOWNLOAD_ARTIFACT,
    EMPTY_MATRIX,
    ENV_VAR,
    GCP_AUTH,
    INSTALL,
    INSTALL_CHECKOV,
    MAIN_BRANCH,
    PYTHON_VERSION,
    SETUP_OPENTOFU,
    SETUP_PYTHON,
    SETUP_TERRAFORM,
    STACKS_VAR,
    UPLOAD_ARTIFACT,
    apply_saved,
    base_args,
    block,
    clouds,
    environments,
    every_wave,
    fetch_or_plan,
    flow,
    header,
    indent,
    job_id,
    q,
    summary_lines,
    text,
)
from strata.ci.matrix import output_key, waves_per_environment
from strata.ci.tools import Tool
from strata.model.repository import Repository

SUMMARY = '"$GITHUB_STEP_SUMMARY"'


def github(repo: Repository, tool_: Tool) -> dict[str, str]:
    return {
        ".github/workflows/strata-apply.yml": text(_apply(repo, tool_)),
        ".github/workflows/strata-destroy.yml": text(_destroy(repo, tool_)),
        ".github/workflows/strata-plan.yml": text(_plan(repo, tool_)),
    }


# --- steps ----------------------------------------------------------------------------------------------------

def _setup(tool_: Tool, *, terraform: bool = True) -> list[str]:
    """Checkout, Python, caches, strata, and terraform/tofu at the pinned version."""
    lines = [
        f"- uses: {CHECKOUT}",
        "  with:",
        "    fetch-depth: 0  # change detection compares with the target branch / previous commit",
        f"- uses: {SETUP_PYTHON}",
        "  with:",
        f"    python-version: {q(PYTHON_VERSION)}",
        "- name: Cache pip downloads",
        f"  uses: {CACHE}",
        "  with:",
        "    path: ~/.cache/pip",
        f"    key: strata-pip-{__version__}-${{{{ runner.os }}}}",
        "- name: Install strata",
        f"  run: {INSTALL}",
    ]
    if not terraform:
        return lines
    lines += ["- name: Install checkov (policy checks), in a venv of its own", f"  run: {INSTALL_CHECKOV}"]
    if tool_.name == "tofu":
        lines += [f"- uses: {SETUP_OPENTOFU}", "  with:", f"    tofu_version: {q(tool_.version)}  # {tool_.origin}",
                  "    tofu_wrapper: false"]
    else:
        lines += [f"- uses: {SETUP_TERRAFORM}", "  with:",
                  f"    terraform_version: {q(tool_.version)}  # {tool_.origin}", "    terraform_wrapper: false"]
    lines += [
        "- name: Cache providers (strata's provider store)",
        f"  uses: {CACHE}",
        "  with:",
        "    path: .strata/providers",
        "    key: strata-providers-${{ runner.os }}-${{ hashFiles('**/.terraform.lock.hcl') }}",
        "    restore-keys: strata-providers-${{ runner.os }}-",
    ]
    return lines


def _credentials(repo: Repository, creds: str, condition: str, *, plan: bool = False) -> list[str]:
    """Login steps for each cloud the repository uses, each only when ``condition`` (``{cloud}`` filled) holds.
    ``creds`` is an expression of the ci block's settings for the cloud (``{cloud}`` filled); a setting it lacks
    comes from the repository's variables (Settings > Secrets and variables > Variables). ``plan``: ``creds`` is
    a plan identity, and a missing identity setting comes from the plan variables (STRATA_AWS_PLAN_ROLE_ARN,
    AZURE_PLAN_CLIENT_ID, GCP_PLAN_SERVICE_ACCOUNT), never the apply ones: a plan job runs the pull request's
    code."""
    lines: list[str] = []
    role_var, client_var, account_var = (
        ("STRATA_AWS_PLAN_ROLE_ARN", "AZURE_PLAN_CLIENT_ID", "GCP_PLAN_SERVICE_ACCOUNT") if plan
        else ("STRATA_AWS_ROLE_ARN", "AZURE_CLIENT_ID", "GCP_SERVICE_ACCOUNT"))
    for cloud in clouds(repo):
        c = creds.format(cloud=cloud)
        when = condition.format(cloud=cloud)
        if cloud == "aws":
            lines += [
                "- name: AWS credentials (OIDC)",
                f"  if: {when}",
                f"  uses: {AWS_CREDENTIALS}",
                "  with:",
                "    # an IAM role whose trust policy accepts this repository's GitHub OIDC tokens",
                f"    role-to-assume: ${{{{ {c}.role || vars.{role_var} }}}}",
                f"    aws-region: ${{{{ {c}.region || vars.AWS_REGION || 'us-east-1' }}}}",
            ]
        elif cloud == "azure":
            values = {"client-id": f"{c}.client_id || vars.{client_var}",
                      "tenant-id": f"{c}.tenant_id || vars.AZURE_TENANT_ID",
                      "subscription-id": f"{c}.subscription_id || vars.AZURE_SUBSCRIPTION_ID"}
            lines += [
                "- name: Azure login (OIDC federated credential)",
                f"  if: {when}",
                f"  uses: {AZURE_LOGIN}",
                "  with:",
                *[f"    {k}: ${{{{ {v} }}}}" for k, v in values.items()],
                "- name: Azure credentials for terraform (OIDC)",
                f"  if: {when}",
                "  env:",
                *[f"    ARM_{k.upper().replace('-', '_')}: ${{{{ {v} }}}}" for k, v in values.items()],
                *indent(block("run", [
                    "{",
                    '  echo "ARM_USE_OIDC=true"',
                    '  echo "ARM_CLIENT_ID=$ARM_CLIENT_ID"',
                    '  echo "ARM_TENANT_ID=$ARM_TENANT_ID"',
                    '  echo "ARM_SUBSCRIPTION_ID=$ARM_SUBSCRIPTION_ID"',
                    '} >> "$GITHUB_ENV"',
                ]), 2),
            ]
        elif cloud == "gcp":
            lines += [
                "- name: GCP credentials (workload identity federation)",
                f"  if: {when}",
                f"  uses: {GCP_AUTH}",
                "  with:",
                "    workload_identity_provider: "
                f"${{{{ {c}.workload_identity_provider || vars.GCP_WORKLOAD_IDENTITY_PROVIDER }}}}",
                f"    service_account: ${{{{ {c}.service_account || vars.{account_var} }}}}",
                f"    project_id: ${{{{ {c}.project_id || vars.GCP_PROJECT_ID }}}}",
            ]
    return lines


def _matrix_credentials(repo: Repository, *, plan: bool = False) -> list[str]:
    """Login for the matrix entry's own cloud only, with its group's apply or (``plan``) plan identity."""
    creds = "matrix.plan_credentials" if plan else "matrix.credentials"
    return _credentials(repo, creds, "matrix.cloud == '{cloud}'", plan=plan)


def _identity_credentials(repo: Repository, outputs: str, *, plan: bool) -> list[str]:
    """Login for each cloud of the selected stacks with the one identity ``strata ci matrix --identity`` chose
    (``plan``: it was given ``--identity plan``)."""
    return _credentials(repo, f"fromJSON({outputs}.identity_{{cloud}} || '{{{{}}}}')",
                        f"contains(fromJSON({outputs}.clouds), '{{cloud}}')", plan=plan)


def _job(name: str, runner: tuple[str, ...], *, needs: list[str] | None = None, condition: str | None = None,
         environment: str | None = None, matrix: str | None = None, parallel: int | None = None) -> list[str]:
    lines = [f"name: {q(name)}"]
    if needs:
        lines.append(f"needs: [{', '.join(needs)}]")
    if condition:
        lines.append(f"if: {q(condition)}")
    lines.append(f"runs-on: {flow(runner)}")
    if environment is not None:
        lines.append(f"environment: {q(environment)}")
    if matrix is not None:
        lines += ["strategy:", "  fail-fast: false"]
        if parallel is not None:
            lines.append(f"  max-parallel: {parallel}")
        lines.append(f"  matrix: ${{{{ fromJSON({matrix}) }}}}")
    return lines


# --- strata-plan.yml -------------------------------------------------------------------------------------------

def _plan(repo: Repository, tool_: Tool) -> list[str]:
    steps = [
        *_setup(tool_),
        "- name: Choose the identities",
        "  id: select",
        *indent(block("run", [
            'BASE="$(strata ci base)"',
            f'strata ci matrix {base_args()} --allow-empty --outputs --identity plan >> "$GITHUB_OUTPUT"',
        ]), 2),
        *_identity_credentials(repo, "steps.select.outputs", plan=True),
        "- name: Plan",
        "  env:",
        '    STRATA_ALLOW_EMPTY: "1"  # no stack changed: an empty plan, not an error',
        *indent(block("run", [
            'BASE="$(strata ci base)"',
            f"strata plan {base_args()} --out --policy --summary-md plan.md --summary-format github",
        ]), 2),
        "- name: Post the plan (one comment, updated in place)",
        "  if: ${{ !cancelled() }}  # a failed plan is shown too",
        "  env:",
        "    GITHUB_TOKEN: ${{ github.token }}",
        *indent(block("run", [
            "if [ ! -f plan.md ]; then",
            '  echo "::warning::strata plan stopped before writing plan.md; see the Plan step"',
            "  exit 0",
            "fi",
            "strata ci comment plan.md",
        ]), 2),
        "- name: Pack the plans to apply after the merge",
        "  env:",
        "    STRATA_PLAN_KEY: ${{ secrets.STRATA_PLAN_KEY }}  # encrypts the bundle (plans hold secrets)",
        f"  run: strata ci plans pack {BUNDLE}",
        f"- uses: {UPLOAD_ARTIFACT}",
        "  with:",
        "    name: strata-plans-${{ github.event.pull_request.number }}",
        f"    path: {BUNDLE}",
        "    if-no-files-found: error",
        "    overwrite: true",
    ]
    return [
        *header("github"),
        "name: strata plan",
        "",
        "on:",
        "  pull_request:",
        f"    branches: [{MAIN_BRANCH}]",
        "",
        "permissions:",
        "  contents: read",
        "  pull-requests: write  # the plan comment",
        "  id-token: write  # OIDC: exchange GitHub's token for short-lived cloud credentials",
        "",
        "concurrency:",
        "  group: strata-plan-${{ github.event.pull_request.number }}",
        "  cancel-in-progress: true",
        "",
        "defaults:",
        "  run:",
        "    shell: bash  # bash -eo pipefail: a failing command fails its step",
        "",
        "jobs:",
        "  plan:",
        *indent(_job("Plan the changed stacks", settings.runner(repo, None)), 4),
        "    steps:",
        *indent(steps, 6),
    ]


# --- strata-apply.yml ------------------------------------------------------------------------------------------

def _apply(repo: Repository, tool_: Tool) -> list[str]:
    waves = every_wave(repo)
    keys = [output_key(env) for env in environments(repo)] + [output_key(env, n) for env, n in waves]
    lines = [
        *header("github"),
        "name: strata apply",
        "",
        "on:",
        "  push:",
        f"    branches: [{MAIN_BRANCH}]",
        "",
        "permissions:",
        "  contents: read",
        "  id-token: write  # OIDC: exchange GitHub's token for short-lived cloud credentials",
        "  actions: read  # strata ci plans fetch: the plan artifact of the merged pull request",
        "  pull-requests: read  # strata ci plans fetch: which pull request was merged",
        "",
        "# One apply run at a time (GitHub keeps one run waiting; a newer push replaces a waiting one).",
        "concurrency:",
        "  group: strata-apply",
        "  cancel-in-progress: false",
        "",
        "defaults:",
        "  run:",
        "    shell: bash  # bash -eo pipefail: a failing command fails its step",
        "",
        "jobs:",
        "  select:",
        *indent(_job("Select the stacks to apply", settings.runner(repo, None)), 4),
        "    outputs:",
        *[f"      {key}: ${{{{ steps.select.outputs.{key} }}}}" for key in keys],
        "    steps:",
        *indent([
            *_setup(tool_, terraform=False),
            "- name: Group the changed stacks by environment, wave, cloud and account",
            "  id: select",
            "  env:  # ci base compares with the last successful run (a cancelled pending run's merge included)",
            "    GITHUB_TOKEN: ${{ github.token }}",
            *indent(block("run", [
                'BASE="$(strata ci base)"',
                f'strata ci matrix {base_args()} --allow-empty --outputs >> "$GITHUB_OUTPUT"',
            ]), 2),
        ], 6),
    ]
    previous: str | None = None
    counts = waves_per_environment(repo)
    for env in environments(repo):
        jid = job_id(env)
        runner = settings.runner(repo, env)
        parallel = settings.parallelism(repo, env)
        everything = f"needs.select.outputs.{output_key(env)}"
        lines += [
            "",
            f"  plan-{jid}:",
            *indent(_job(f"Plan {env}", runner, needs=["select"],
                         condition=f"${{{{ !cancelled() && !failure() && {everything} != '{EMPTY_MATRIX}' }}}}",
                         matrix=everything, parallel=parallel), 4),
            "    steps:",
            *indent([
                *_setup(tool_),
                *_matrix_credentials(repo, plan=True),
                "- name: The reviewed plan, else a plan of main (shown in this job's summary)",
                "  env:",
                "    GITHUB_TOKEN: ${{ github.token }}",
                "    STRATA_PLAN_KEY: ${{ secrets.STRATA_PLAN_KEY }}",
                f"    {STACKS_VAR}: ${{{{ join(matrix.stacks, ' ') }}}}",
                *indent(block("run", fetch_or_plan(
                    "github", summary_lines(SUMMARY),
                    main_header=[f'echo "Plan of main, applied once approved:" >> {SUMMARY}'],
                    reviewed_header=[f'echo "The plan reviewed in the pull request, applied once approved:" >> '
                                     f'{SUMMARY}'])), 2),
                f"- uses: {UPLOAD_ARTIFACT}",
                "  with:",
                "    name: strata-plans-main-${{ matrix.id }}  # the group: ENV-CLOUD-ACCOUNT",
                f"    path: {BUNDLE}",
                "    if-no-files-found: error",
                "    retention-days: 7",
            ], 6),
        ]
        for n in range(counts.get(env, 0)):
            wave = f"needs.select.outputs.{output_key(env, n)}"
            needs = ["select", f"plan-{jid}", *([previous] if previous else [])]
            name = f"apply-{jid}-{n + 1}"
            comment = []
            if settings.is_protected(repo, env):
                comment = ["    # protected: give this GitHub environment required reviewers (Settings >",
                           "    # Environments); the jobs of one wave wait for one approval"]
            lines += [
                "",
                f"  {name}:",
                *indent(_job(f"Apply {env} ({n + 1}/{counts[env]})", runner, needs=needs,
                             condition=f"${{{{ !cancelled() && !failure() && {wave} != '{EMPTY_MATRIX}' }}}}",
                             environment=env, matrix=wave, parallel=parallel), 4),
                *comment,
                "    steps:",
                *indent([
                    *_setup(tool_),
                    *_matrix_credentials(repo),
                    f"- uses: {DOWNLOAD_ARTIFACT}",
                    "  with:",
                    "    name: strata-plans-main-${{ matrix.group }}",
                    f"- name: {q('Apply the saved plans of ' + env)}",
                    "  env:",
                    "    STRATA_PLAN_KEY: ${{ secrets.STRATA_PLAN_KEY }}",
                    f"    {STACKS_VAR}: ${{{{ join(matrix.stacks, ' ') }}}}",
                    f"    {ENV_VAR}: {q(env)}",
                    *indent(block("run", apply_saved("github", [
                        f'echo "Applied (a plan made again here is one whose dependencies changed):" >> {SUMMARY}',
                        *summary_lines(SUMMARY),
                    ])), 2),
                ], 6),
            ]
            previous = name
    return lines


# --- strata-destroy.yml ----------------------------------------------------------------------------------------

def _destroy(repo: Repository, tool_: Tool) -> list[str]:
    envs = sorted(environments(repo))
    steps = [
        "- name: Check the confirmation",
        "  env:",
        "    ENVIRONMENT: ${{ inputs.environment }}",
        "    CONFIRM: ${{ inputs.confirm }}",
        *indent(block("run", [
            'if [ "$CONFIRM" != "$ENVIRONMENT" ]; then',
            '  echo "::error::confirm must be the environment name ($ENVIRONMENT); nothing destroyed"',
            "  exit 1",
            "fi",
        ]), 2),
        *_setup(tool_),
        "- name: Choose the identities",
        "  id: select",
        "  env:",
        "    ENVIRONMENT: ${{ inputs.environment }}",
        '  run: strata ci matrix --all --env "$ENVIRONMENT" --outputs --identity apply >> "$GITHUB_OUTPUT"',
        *_identity_credentials(repo, "steps.select.outputs", plan=False),
        "- name: Destroy",
        "  env:",
        "    ENVIRONMENT: ${{ inputs.environment }}",
        '  run: strata destroy --env "$ENVIRONMENT" --yes',
    ]
    return [
        *header("github"),
        "name: strata destroy",
        "",
        "on:",
        "  workflow_dispatch:",
        "    inputs:",
        "      environment:",
        "        description: Environment to destroy",
        "        type: choice",
        "        required: true",
        "        options:",
        *[f"          - {q(env)}" for env in envs],
        "      confirm:",
        "        description: Type the environment name again to confirm",
        "        type: string",
        "        required: true",
        "",
        "permissions:",
        "  contents: read",
        "  id-token: write  # OIDC: exchange GitHub's token for short-lived cloud credentials",
        "",
        "concurrency:  # never at the same time as an apply",
        "  group: strata-apply",
        "  cancel-in-progress: false",
        "",
        "defaults:",
        "  run:",
        "    shell: bash  # bash -eo pipefail: a failing command fails its step",
        "",
        "jobs:",
        "  destroy:",
        "    name: Destroy ${{ inputs.environment }}",
        f"    runs-on: {flow(settings.runner(repo, None))}",
        "    environment: ${{ inputs.environment }}",
        "    steps:",
        *indent(steps, 6),
    ]
