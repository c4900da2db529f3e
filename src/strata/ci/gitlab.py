""".gitlab-ci.yml: a merge request plans; main plans (or fetches the reviewed plan) and applies per group.

Fan-out model: one plan job and one apply job per group of (environment, cloud, account) of the repository,
written into the file when it is generated — neither a dynamic child pipeline nor ``parallel:matrix``:
GitLab's ``id_tokens`` audience, the manual gate of a protected environment and ``needs`` are per job, and
with one job per group each carries its own identity, its own approval and exact ``needs`` (a group after the
groups it depends on, an environment after the one before it). A group without a changed stack finishes at
once. Regenerate the file when an environment, cloud or account is added.
"""

from __future__ import annotations

from strata import __version__
from strata.ci import settings
from strata.ci.generate import (
    BUNDLE,
    ENV_VAR,
    INSTALL,
    INSTALL_CHECKOV,
    PYTHON_VERSION,
    STACKS_VAR,
    Group,
    apply_saved,
    base_args,
    clouds,
    environments,
    fetch_or_plan,
    flow,
    groups,
    header,
    indent,
    install_tool,
    job_id,
    q,
    text,
    tool_variables,
)
from strata.ci.tools import Tool
from strata.errors import StrataError
from strata.model.repository import Repository

MAX_NEEDS = 50  # GitLab's limit of needs per job
# Main's plan and apply jobs: a push (a merge). A pipeline run from the web UI is for a destroy job only; were the
# plans and applies in it too, production's blocking approval would hold the destroy jobs of the later stage.
ON_MAIN = '$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH && $CI_PIPELINE_SOURCE != "web"'
AUDIENCE = {"aws": "sts.amazonaws.com", "azure": "api://AzureADTokenExchange"}
# the ci block's setting -> the variable the login script reads (CI/CD variables of the same meaning follow)
CREDENTIAL_VARIABLES = {
    "aws": {"role": "STRATA_CI_AWS_ROLE", "region": "STRATA_CI_AWS_REGION"},
    "azure": {"client_id": "STRATA_CI_AZURE_CLIENT_ID", "tenant_id": "STRATA_CI_AZURE_TENANT_ID",
              "subscription_id": "STRATA_CI_AZURE_SUBSCRIPTION_ID"},
    "gcp": {"workload_identity_provider": "STRATA_CI_GCP_PROVIDER", "service_account": "STRATA_CI_GCP_ACCOUNT",
            "project_id": "STRATA_CI_GCP_PROJECT"},
}
_GCP_CONFIG = (
    "import json, os; p = os.environ['STRATA_CI_GCP_PROVIDER']; a = os.environ.get('STRATA_CI_GCP_ACCOUNT', ''); "
    "c = {'type': 'external_account', 'audience': '//iam.googleapis.com/' + p, "
    "'subject_token_type': 'urn:ietf:params:oauth:token-type:jwt', 'token_url': 'https://sts.googleapis.com/v1/token', "
    "'credential_source': {'file': os.environ['STRATA_GCP_TOKEN_FILE']}}; "
    "c.update({'service_account_impersonation_url': 'https://iamcredentials.googleapis.com/v1/projects/-/"
    "serviceAccounts/' + a + ':generateAccessToken'} if a else {}); print(json.dumps(c))"
)


def login(cloud: str, *, plan: bool) -> list[str]:
    """Bash that turns the job's OIDC token into credentials terraform reads, for ``cloud`` only. Settings come
    from STRATA_CI_* (the ci block, written per job), else from the CI/CD variables named in docs/ci.md: for a
    plan job (``plan``) the plan identity's variables, never the apply ones (a plan job runs the merge request's
    code)."""
    client_var, account_var = ("AZURE_PLAN_CLIENT_ID", "GCP_PLAN_SERVICE_ACCOUNT") if plan else \
        ("AZURE_CLIENT_ID", "GCP_SERVICE_ACCOUNT")
    if cloud == "aws":
        role_var, setting = ("STRATA_AWS_PLAN_ROLE_ARN", "plan_role") if plan else ("STRATA_AWS_ROLE_ARN", "role")
        return [
            f'STRATA_CI_AWS_ROLE="${{STRATA_CI_AWS_ROLE:-${{{role_var}:-}}}}"',
            'if [ -z "$STRATA_CI_AWS_ROLE" ]; then',
            f'  echo "no AWS role: set aws {{ {setting} }} in the ci block or the CI/CD variable {role_var}" >&2',
            "  exit 1",
            "fi",
            'AWS_WEB_IDENTITY_TOKEN_FILE="$(mktemp)"',
            'printf "%s" "$STRATA_AWS_ID_TOKEN" > "$AWS_WEB_IDENTITY_TOKEN_FILE"',
            'export AWS_WEB_IDENTITY_TOKEN_FILE AWS_ROLE_ARN="$STRATA_CI_AWS_ROLE"',
            'export AWS_ROLE_SESSION_NAME="strata-$CI_JOB_ID"',
            'export AWS_REGION="${STRATA_CI_AWS_REGION:-${AWS_REGION:-us-east-1}}"',
        ]
    if cloud == "azure":
        return [
            'export ARM_USE_OIDC=true ARM_OIDC_TOKEN="$STRATA_AZURE_ID_TOKEN"',
            f'export ARM_CLIENT_ID="${{STRATA_CI_AZURE_CLIENT_ID:-${{{client_var}:-}}}}"',
            'export ARM_TENANT_ID="${STRATA_CI_AZURE_TENANT_ID:-${AZURE_TENANT_ID:-}}"',
            'export ARM_SUBSCRIPTION_ID="${STRATA_CI_AZURE_SUBSCRIPTION_ID:-${AZURE_SUBSCRIPTION_ID:-}}"',
        ]
    return [
        'export STRATA_CI_GCP_PROVIDER="${STRATA_CI_GCP_PROVIDER:-${GCP_WORKLOAD_IDENTITY_PROVIDER:-}}"',
        f'export STRATA_CI_GCP_ACCOUNT="${{STRATA_CI_GCP_ACCOUNT:-${{{account_var}:-}}}}"',
        'STRATA_GCP_TOKEN_FILE="$(mktemp)"',
        'printf "%s" "$STRATA_GCP_ID_TOKEN" > "$STRATA_GCP_TOKEN_FILE"',
        "export STRATA_GCP_TOKEN_FILE",
        'GOOGLE_APPLICATION_CREDENTIALS="$(mktemp)"',
        f'python -c "{_GCP_CONFIG}" > "$GOOGLE_APPLICATION_CREDENTIALS"',
        'export GOOGLE_APPLICATION_CREDENTIALS GOOGLE_PROJECT="${STRATA_CI_GCP_PROJECT:-${GOOGLE_PROJECT:-}}"',
    ]


def _identity_from_file(repo: Repository) -> list[str]:
    """Read ``strata ci matrix --outputs --identity`` lines (strata-identity.txt) into STRATA_CI_* variables."""
    lines = ["while IFS='=' read -r key value; do", '  case "$key" in']
    for cloud in clouds(repo):
        for setting, variable in CREDENTIAL_VARIABLES[cloud].items():
            lines.append(f'    identity_{cloud}_{setting}) export {variable}="$value" ;;')
    return [*lines, "  esac", "done < strata-identity.txt"]


def _gcp_audience(repo: Repository, group: Group | None) -> str:
    if group is not None:
        provider = settings.credentials(repo, group.env, "gcp", group.account).get("workload_identity_provider")
        if provider:
            return "https://iam.googleapis.com/" + provider
    return "$STRATA_GCP_AUDIENCE"  # a CI/CD variable: the provider's allowed audience


def _id_tokens(repo: Repository, cloud_list: list[str], group: Group | None) -> list[str]:
    lines = ["id_tokens:  # OIDC: short-lived tokens exchanged for cloud credentials"] if cloud_list else []
    for cloud in cloud_list:
        audience = AUDIENCE.get(cloud) or _gcp_audience(repo, group)
        lines += [f"  STRATA_{cloud.upper()}_ID_TOKEN:", f"    aud: {q(audience)}"]
    return lines


def _variable(name: str, value: str) -> list[str]:
    """A job variable GitLab passes as it is (``expand: false``: a ``$`` in it is not another variable)."""
    return [f"  {name}:", f"    value: {q(value)}", "    expand: false"]


def _group_variables(repo: Repository, group: Group, *, plan: bool) -> list[str]:
    lines = ["variables:", *_variable(ENV_VAR, group.env)]
    if group.cloud:
        lines += _variable("STRATA_CLOUD", group.cloud)
    if group.account:
        lines += _variable("STRATA_ACCOUNT", group.account)
    if group.cloud in CREDENTIAL_VARIABLES:
        creds = settings.credentials(repo, group.env, group.cloud, group.account)
        creds = settings.plan_identity(group.cloud, creds) if plan else settings.apply_identity(creds)
        for setting, variable in CREDENTIAL_VARIABLES[group.cloud].items():
            if setting in creds:
                lines += _variable(variable, creds[setting])
    return lines


def _tags(repo: Repository, env: str | None) -> list[str]:
    labels = settings.runner(repo, env, default=())
    return [f"tags: {flow(labels)}"] if labels else []


def _tier(env: str) -> str:
    lowered = env.lower()
    for tier, names in (("staging", ("stag", "preprod", "pre-prod", "uat")), ("testing", ("test", "qa")),
                        ("development", ("dev", "sandbox"))):
        if any(n in lowered for n in names):
            return tier
    return "other"


def _stacks_file(group: Group) -> str:
    return f"strata-plans/{group.name}.stacks"


def _plan_group(repo: Repository, group: Group) -> list[str]:
    bundle = f"strata-plans/{group.name}.bundle"
    script = [
        'BASE="$(strata ci base)"',
        f"strata ci matrix {base_args()} {group.selection()} --allow-empty --paths > strata-stacks.txt",
        "mkdir -p strata-plans",
        "if [ ! -s strata-stacks.txt ]; then",
        '  echo "No changed stack in this group: nothing to plan."',
        "  exit 0",
        "fi",
        f"{STACKS_VAR}=\"$(tr '\\n' ' ' < strata-stacks.txt)\"",
        f"export {STACKS_VAR}",
        *fetch_or_plan("gitlab", [
            "mkdir -p strata-summary",
            "cp plan.md plan-*.md strata-summary/ 2>/dev/null || true",
        ]),
        f'mv {BUNDLE} "{bundle}"',
        f'cp strata-stacks.txt "{_stacks_file(group)}"',
    ]
    cloud_list = [group.cloud] if group.cloud in AUDIENCE or group.cloud == "gcp" else []
    return [
        f"plan-{group.name}:",
        *indent([
            "extends: .strata",
            "stage: plan",
            *_tags(repo, group.env),
            "rules:",
            f"  - if: {ON_MAIN}",
            *_id_tokens(repo, cloud_list, group),
            *_group_variables(repo, group, plan=True),
            "script:",
            "  - |",
            "    set -eo pipefail",
            *indent([*(login(group.cloud, plan=True) if cloud_list else []), *script], 4),
            "artifacts:  # the saved plans (encrypted) for the apply; plan*.md: the plan to approve",
            "  when: always",
            "  expire_in: 7 days",
            "  paths: [strata-plans/, strata-summary/]",
        ], 2),
        "",
    ]


def _apply_group(repo: Repository, group: Group, after: list[Group]) -> list[str]:
    protected = settings.is_protected(repo, group.env)
    needs = [f"plan-{group.name}", *[f"apply-{g.name}" for g in after]]
    if len(needs) > MAX_NEEDS:
        raise StrataError(f"GitLab: apply-{group.name} would need {len(needs)} jobs (the plan of its group, every "
                          f"group of the environment before and those it depends on); GitLab allows {MAX_NEEDS}. "
                          "Fewer accounts per environment, or an environment in between, keep it within the limit")
    cloud_list = [group.cloud] if group.cloud in AUDIENCE or group.cloud == "gcp" else []
    script = [
        f'if [ ! -f "{_stacks_file(group)}" ]; then',
        '  echo "No changed stack in this group: nothing to apply."',
        "  exit 0",
        "fi",
        f"{STACKS_VAR}=\"$(tr '\\n' ' ' < \"{_stacks_file(group)}\")\"",
        f'mv "strata-plans/{group.name}.bundle" {BUNDLE}',
        *apply_saved("gitlab", ["cat plan.md"]),
    ]
    rules = ["rules:", f"  - if: {ON_MAIN}"]
    if protected:
        rules += ["    when: manual  # approval: protect this environment (Settings > CI/CD > Protected",
                  "    allow_failure: false  # environments) so only approvers can start the job"]
    return [
        f"apply-{group.name}:",
        *indent([
            "extends: .strata",
            "stage: apply",
            *_tags(repo, group.env),
            f"resource_group: {q('apply-' + group.name)}  # two applies of one group never overlap",
            f"needs: [{', '.join(q(n) for n in needs)}]",
            *rules,
            "environment:",
            f"  name: {q(group.env)}",
            f"  deployment_tier: {'production' if protected else _tier(group.env)}",
            *_id_tokens(repo, cloud_list, group),
            *_group_variables(repo, group, plan=False),
            "script:",
            "  - |",
            "    set -eo pipefail",
            *indent([*(login(group.cloud, plan=False) if cloud_list else []), *script], 4),
        ], 2),
        "",
    ]


def _mr_plan(repo: Repository) -> list[str]:
    repo_clouds = clouds(repo)
    login_lines: list[str] = []
    for cloud in repo_clouds:
        login_lines += [f"case \"$(grep '^clouds=' strata-identity.txt)\" in *'\"{cloud}\"'*)",
                        *indent(login(cloud, plan=True), 2), "  ;;", "esac"]
    script = [
        'BASE="$(strata ci base)"',
        f"strata ci matrix {base_args()} --allow-empty --outputs --identity plan > strata-identity.txt",
        *(_identity_from_file(repo) if repo_clouds else []),
        *login_lines,
        "status=0",
        f"STRATA_ALLOW_EMPTY=1 strata plan {base_args()} --out --policy --summary-md plan.md --summary-format gitlab"
        " --terraform-report strata-reports || status=$?",
        "# the merge request note, updated in place; STRATA_GITLAB_TOKEN: a project access token (api scope)",
        "if [ -f plan.md ]; then",
        "  strata ci comment plan.md",
        "fi",
        'if [ "$status" -ne 0 ]; then',
        '  exit "$status"',
        "fi",
        f"strata ci plans pack {BUNDLE}",
    ]
    return [
        "plan:",
        "  extends: .strata",
        "  stage: plan",
        *indent(_tags(repo, None), 2),
        "  rules:",
        '    - if: $CI_PIPELINE_SOURCE == "merge_request_event"',
        *indent(_id_tokens(repo, repo_clouds, None), 2),
        "  script:",
        "    - |",
            "      set -eo pipefail",
        *indent(script, 6),
        "  artifacts:  # every part of the summary, the terraform reports (the merge request widget), the plans",
        "    when: always",
        "    expire_in: 30 days",
        f"    paths: [plan.md, plan-*.md, {BUNDLE}]",
        "    reports:",
        "      terraform: strata-reports/*.json",
        "",
    ]


def _destroy(repo: Repository) -> list[str]:
    lines: list[str] = []
    repo_clouds = clouds(repo)
    login_lines: list[str] = []
    for cloud in repo_clouds:
        login_lines += [f"case \"$(grep '^clouds=' strata-identity.txt)\" in *'\"{cloud}\"'*)",
                        *indent(login(cloud, plan=False), 2), "  ;;", "esac"]
    for env in sorted(environments(repo)):
        jid = job_id(env)
        lines += [
            f"destroy-{jid}:",
            "  extends: .strata",
            "  stage: destroy",
            *indent(_tags(repo, env), 2),
            "  resource_group: " + q("destroy-" + jid),
            "  rules:  # run the pipeline from the web UI, start this job and set CONFIRM to the environment name",
            '    - if: $CI_PIPELINE_SOURCE == "web"',
            "      when: manual",
            *indent(_id_tokens(repo, repo_clouds, None), 2),
            "  variables:",
            '    CONFIRM: ""',
            *indent(_variable(ENV_VAR, env), 2),
            "  environment:",
            f"    name: {q(env)}",
            "    action: stop",
            "  script:",
            f"    - 'if [ \"$CONFIRM\" != \"${ENV_VAR}\" ]; then"
            f" echo \"set CONFIRM to ${ENV_VAR} to destroy it\"; exit 1; fi'",
            "    - |",
            "      set -eo pipefail",
            *indent([
                f'strata ci matrix --all --env "${ENV_VAR}" --outputs --identity apply > strata-identity.txt',
                *(_identity_from_file(repo) if repo_clouds else []),
                *login_lines,
            ], 6),
            f'    - strata destroy --env "${ENV_VAR}" --yes',
            "",
        ]
    return lines


def gitlab(repo: Repository, tool_: Tool) -> str:
    lines = [
        *header("gitlab"),
        "stages: [plan, apply, destroy]",
        "",
        "workflow:",
        "  rules:",
        '    - if: $CI_PIPELINE_SOURCE == "merge_request_event"',
        "    - if: $CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH",
        '    - if: $CI_PIPELINE_SOURCE == "web"',
        "",
        "variables:",
        '  PIP_CACHE_DIR: "$CI_PROJECT_DIR/.cache/pip"',
        '  STRATA_TOOL_DIR: "$CI_PROJECT_DIR/.cache/strata-tool"',
        *[f"  {k}: {q(v)}" for k, v in tool_variables(tool_).items()],
        "",
        ".strata:",
        f"  image: {q('python:' + PYTHON_VERSION)}",
        "  variables:",
        "    GIT_DEPTH: 0  # change detection compares with the target branch / previous commit",
        "  cache:",
        f"    - key: {q('strata-pip-' + __version__)}",
        "      paths: [.cache/pip]",
        "    - key:  # strata's provider store, and the terraform download (checked against SHA256SUMS each time)",
        "        prefix: strata-providers",
        '        files: ["**/.terraform.lock.hcl"]',
        "      paths: [.strata/providers, .cache/strata-tool]",
        "  before_script:",
        f"    - {INSTALL}",
        f"    - |  # {tool_.name} {tool_.version}: {tool_.origin}",
        *indent(install_tool(tool_), 6),
        '    - export PATH="$STRATA_TOOL_DIR/bin:$PATH"',
        f"    - {INSTALL_CHECKOV}  # policy checks: checkov in a venv of its own",
        "",
        *_mr_plan(repo),
    ]
    found = groups(repo)
    by_env: dict[str, list[Group]] = {}
    for group in found:
        by_env.setdefault(group.env, []).append(group)
    previous: list[Group] = []
    for env in environments(repo):
        mine = by_env.get(env, [])
        for group in mine:
            lines += _plan_group(repo, group)
        for group in mine:
            lines += _apply_group(repo, group, [*previous, *group.needs])
        previous = mine
    lines += _destroy(repo)
    return text(lines)
