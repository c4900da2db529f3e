"""azure-pipelines.yml: a pull request plans; main plans each group, waits for the environment's approval and
applies that saved plan.

Azure DevOps cannot hand a pull request's artifact to the pipeline of the merge (``strata ci plans fetch``
exits 3 there), so main always plans: one job per group of (environment, cloud, account) in a ``plan_ENV``
stage, its plan in the run's summary (``##vso[task.uploadsummary]``) and its saved plans, encrypted, as a
pipeline artifact; then an ``apply_ENV`` stage whose deployment jobs target the Azure DevOps environment, so
the environment's checks (approvals) gate all of them once, and apply exactly those plans.

Groups are written into the file, not a runtime matrix: a job's service connection must be known when the
pipeline is compiled. Each job authenticates for its own cloud only: Azure through ``AzureCLI@2`` with a
workload-identity service connection, AWS through ``AWSShellScript@1`` with an AWS service connection (OIDC
or keys); the credentials are handed to the next step as secret variables, so every script stays plain bash.
"""

from __future__ import annotations

from strata import __version__
from strata.ci import settings
from strata.ci.generate import (
    BUNDLE,
    ENV_VAR,
    INSTALL,
    INSTALL_CHECKOV,
    MAIN_BRANCH,
    PYTHON_VERSION,
    STACKS_VAR,
    Group,
    apply_saved,
    base_args,
    block,
    clouds,
    environments,
    fetch_or_plan,
    groups,
    header,
    indent,
    install_tool,
    job_id,
    q,
    summary_lines,
    text,
    tool_variables,
)
from strata.ci.tools import Tool
from strata.model.repository import Repository

# secret variables the credentials step sets, read by the strata step through env:
SECRETS = {
    "aws": ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"),
    "azure": ("ARM_CLIENT_ID", "ARM_TENANT_ID", "ARM_SUBSCRIPTION_ID", "ARM_OIDC_TOKEN"),
    "gcp": ("GOOGLE_APPLICATION_CREDENTIALS",),
}
PLAIN = {"aws": ("AWS_REGION",), "azure": ("ARM_USE_OIDC",), "gcp": ()}


def connection(repo: Repository, group: Group, *, plan: bool = False) -> str:
    """The service connection of ``group``'s apply: the ci block's ``service_connection``, else ``strata-CLOUD``;
    of its plan (``plan``): ``plan_service_connection``, else ``strata-CLOUD-plan`` — never the apply's, as a plan
    job runs code from the pull request."""
    creds = settings.credentials(repo, group.env, group.cloud, group.account)
    if plan:
        return creds.get("plan_service_connection") or f"strata-{group.cloud}-plan"
    return creds.get("service_connection") or f"strata-{group.cloud}"


def plan_connection(repo: Repository, cloud: str) -> str:
    """The service connection of the pull-request plan: the groups' plan connection when every group of
    ``cloud`` has the same, else ``strata-CLOUD-plan`` (one identity that can plan every account, read-only)."""
    names = {connection(repo, g, plan=True) for g in groups(repo) if g.cloud == cloud}
    return names.pop() if len(names) == 1 else f"strata-{cloud}-plan"


def service_connections(repo: Repository) -> list[str]:
    """Every service connection (GCP: secure file) the pipeline names, sorted."""
    names = {connection(repo, g, plan=plan) for g in groups(repo) if g.cloud in SECRETS for plan in (False, True)}
    names |= {plan_connection(repo, cloud) for cloud in clouds(repo)}
    return sorted(f"{n}.json" if n.startswith("strata-gcp") or _is_gcp(repo, n) else n for n in names)


def _is_gcp(repo: Repository, name: str) -> bool:
    return any(g.cloud == "gcp" and name in (connection(repo, g), connection(repo, g, plan=True))
               for g in groups(repo))


def _setvar(name: str, value: str, *, secret: bool) -> str:
    flag = ";issecret=true" if secret else ""
    return f'echo "##vso[task.setvariable variable={name}{flag}]{value}"'


def _credentials(repo: Repository, cloud: str, service_connection: str, region: str) -> list[str]:
    """A step that authenticates through the service connection and hands the credentials on as variables."""
    if cloud == "aws":
        return [
            "- task: AWSShellScript@1  # AWS Toolkit for Azure DevOps",
            "  displayName: AWS credentials",
            "  inputs:",
            f"    awsCredentials: {q(service_connection)}  # an AWS service connection (OIDC: 'Use OIDC')",
            f"    regionName: {q(region)}",
            "    scriptType: inlineScript",
            *indent(block("inlineScript", [
                "set -eo pipefail",
                *[_setvar(n, f"${n}", secret=True) for n in SECRETS["aws"]],
                _setvar("AWS_REGION", "$AWS_REGION", secret=False),
            ]), 4),
        ]
    if cloud == "azure":
        return [
            "- task: AzureCLI@2",
            "  displayName: Azure credentials (workload identity federation)",
            "  inputs:",
            f"    azureSubscription: {q(service_connection)}  # Azure Resource Manager, workload identity",
            "    scriptType: bash",
            "    scriptLocation: inlineScript",
            "    addSpnToEnvironment: true",
            *indent(block("inlineScript", [
                "set -eo pipefail",
                _setvar("ARM_USE_OIDC", "true", secret=False),
                _setvar("ARM_CLIENT_ID", "$servicePrincipalId", secret=True),
                _setvar("ARM_TENANT_ID", "$tenantId", secret=True),
                'subscription="$(az account show --query id --output tsv)"',
                _setvar("ARM_SUBSCRIPTION_ID", "$subscription", secret=True),
                _setvar("ARM_OIDC_TOKEN", "$idToken", secret=True),
            ]), 4),
        ]
    return [
        "- task: DownloadSecureFile@1  # GCP: a workload identity federation credential configuration",
        "  name: gcpCredentials",
        "  displayName: GCP credentials",
        "  inputs:",
        f"    secureFile: {q(service_connection + '.json')}",
        "- script: " + _setvar("GOOGLE_APPLICATION_CREDENTIALS", "$SECURE_FILE", secret=True),
        "  displayName: GCP credentials for terraform",
        "  env:",
        "    SECURE_FILE: $(gcpCredentials.secureFilePath)",
    ]


def _credential_env(cloud_list: list[str]) -> list[str]:
    """The env: lines that give a script the credentials the steps before set (secret variables must be)."""
    names = [n for cloud in cloud_list for n in (*SECRETS[cloud], *PLAIN[cloud])]
    return [f"    {name}: $({name})" for name in names]


def _setup(tool_: Tool) -> list[str]:
    return [
        "- checkout: self",
        "  fetchDepth: \"0\"  # change detection compares with the target branch / previous commit",
        "- task: UsePythonVersion@0",
        "  inputs:",
        f"    versionSpec: {q(PYTHON_VERSION)}",
        "- task: Cache@2",
        "  displayName: Cache pip downloads",
        "  inputs:",
        "    key: " + q('strata-pip | "$(Agent.OS)" | ' + __version__),
        "    path: $(PIP_CACHE_DIR)",
        "- task: Cache@2",
        "  displayName: Cache providers (strata's provider store)",
        "  inputs:",
        "    key: 'strata-providers | \"$(Agent.OS)\" | **/.terraform.lock.hcl'",
        "    restoreKeys: 'strata-providers | \"$(Agent.OS)\"'",
        "    path: $(Build.SourcesDirectory)/.strata/providers",
        f"- script: {INSTALL}",
        "  displayName: Install strata",
        f"- script: {INSTALL_CHECKOV}",
        "  displayName: Install checkov (policy checks), in a venv of its own",
        "- script: |",
            "    set -eo pipefail  # Azure DevOps runs bash without -e",
        *indent([*install_tool(tool_), 'echo "##vso[task.prependpath]$STRATA_TOOL_DIR/bin"'], 4),
        f"  displayName: {q(f'Install {tool_.name} {tool_.version} ({tool_.origin})')}",
    ]


def _group_env(group: Group) -> list[str]:
    lines = [f"    {ENV_VAR}: {q(group.env)}"]
    if group.cloud:
        lines.append(f"    STRATA_CLOUD: {q(group.cloud)}")
    if group.account:
        lines.append(f"    STRATA_ACCOUNT: {q(group.account)}")
    return lines


def _job_name(prefix: str, group: Group) -> str:
    return prefix + "_" + group.name.replace("-", "_")


def _region(repo: Repository, group: Group) -> str:
    return settings.credentials(repo, group.env, group.cloud, group.account).get("region", "us-east-1")


def _auth(repo: Repository, group: Group, *, plan: bool) -> tuple[list[str], list[str]]:
    if group.cloud not in SECRETS:
        return [], []
    return _credentials(repo, group.cloud, connection(repo, group, plan=plan), _region(repo, group)), [group.cloud]


def _plan_job(repo: Repository, group: Group, tool_: Tool) -> list[str]:
    folder = f"strata-plans/{group.name}"
    steps, cloud_list = _auth(repo, group, plan=True)
    summary = ['echo "##vso[task.uploadsummary]$PWD/plan.md"', "n=2", 'while [ -f "plan-$n.md" ]; do',
               '  echo "##vso[task.uploadsummary]$PWD/plan-$n.md"', "  n=$((n + 1))", "done"]
    script = [
        f'mkdir -p "{folder}"',
        'BASE="$(strata ci base)"',
        f"strata ci matrix {base_args()} {group.selection()} --allow-empty --paths > strata-stacks.txt",
        "if [ ! -s strata-stacks.txt ]; then",
        '  echo "No changed stack in this group: nothing to plan."',
        "  exit 0",
        "fi",
        f"{STACKS_VAR}=\"$(tr '\\n' ' ' < strata-stacks.txt)\"",
        f"export {STACKS_VAR}",
        *fetch_or_plan("azure", summary),
        f'mv {BUNDLE} "{folder}/plans.bundle"',
        f'cp strata-stacks.txt "{folder}/stacks.txt"',
    ]
    return [
        f"- job: {_job_name('plan', group)}",
        f"  displayName: {q('Plan ' + group.name)}",
        *indent(_pool(repo, group.env), 2),
        "  steps:",
        *indent([
            *_setup(tool_),
            *steps,
            "- script: |",
            "    set -eo pipefail  # Azure DevOps runs bash without -e",
            *indent(script, 4),
            "  displayName: Plan (shown in the run's summary)",
            "  env:",
            *_group_env(group),
            "    STRATA_PLAN_KEY: $(STRATA_PLAN_KEY)  # a secret variable: encrypts the saved plans",
            *_credential_env(cloud_list),
            "- publish: " + folder,
            f"  artifact: {q('strata-plans-' + group.name)}",
            "  displayName: Keep the saved plans for the approved apply",
        ], 4),
    ]


def _apply_job(repo: Repository, group: Group, tool_: Tool) -> list[str]:
    folder = f"$(Pipeline.Workspace)/strata-plans-{group.name}"
    steps, cloud_list = _auth(repo, group, plan=False)
    script = [
        'if [ ! -f "$PLANS/stacks.txt" ]; then',
        '  echo "No changed stack in this group: nothing to apply."',
        "  exit 0",
        "fi",
        f"{STACKS_VAR}=\"$(tr '\\n' ' ' < \"$PLANS/stacks.txt\")\"",
        f'mv "$PLANS/plans.bundle" {BUNDLE}',
        *apply_saved("azure", ['echo "##vso[task.uploadsummary]$PWD/plan.md"']),
    ]
    depends = [_job_name("apply", g) for g in group.needs]
    return [
        f"- deployment: {_job_name('apply', group)}",
        f"  displayName: {q('Apply ' + group.name)}",
        f"  dependsOn: [{', '.join(depends)}]",
        *indent(_pool(repo, group.env), 2),
        f"  environment: {q(group.env)}",
        "  strategy:",
        "    runOnce:",
        "      deploy:",
        "        steps:",
        *indent([
            "- download: current",
            f"  artifact: {q('strata-plans-' + group.name)}",
            *_setup(tool_),
            *steps,
            "- script: |",
            "    set -eo pipefail  # Azure DevOps runs bash without -e",
            *indent(script, 4),
            "  displayName: Apply the saved plans",
            "  env:",
            *_group_env(group),
            f"    PLANS: {q(folder)}",
            "    STRATA_PLAN_KEY: $(STRATA_PLAN_KEY)",
            *_credential_env(cloud_list),
        ], 10),
    ]


def _pool(repo: Repository, env: str | None) -> list[str]:
    labels = settings.runner(repo, env, default=())
    if not labels:
        return ["pool:", "  vmImage: ubuntu-latest"]
    lines = ["pool:", f"  name: {q(labels[0])}"]
    if labels[1:]:
        lines += ["  demands:", *[f"    - {q(label)}" for label in labels[1:]]]
    return lines


def _pr_plan(repo: Repository, tool_: Tool) -> list[str]:
    repo_clouds = clouds(repo)
    steps: list[str] = []
    for cloud in repo_clouds:
        regions = {_region(repo, g) for g in groups(repo) if g.cloud == cloud}
        steps += _credentials(repo, cloud, plan_connection(repo, cloud), min(regions) if regions else "us-east-1")
    return [
        "  - stage: plan",
        "    displayName: Plan the changed stacks",
        "    condition: eq(variables['Build.Reason'], 'PullRequest')",
        "    jobs:",
        "      - job: plan",
        *indent(_pool(repo, None), 8),
        "        steps:",
        *indent([
            *_setup(tool_),
            *steps,
            "- script: |",
            "    set -eo pipefail  # Azure DevOps runs bash without -e",
            *indent([
                'BASE="$(strata ci base)"',
                f"strata plan {base_args()} --out --policy --summary-md plan.md --summary-format azure",
            ], 4),
            "  displayName: Plan",
            "  env:",
            '    STRATA_ALLOW_EMPTY: "1"',
            *_credential_env(repo_clouds),
            "- script: |",
            "    set -eo pipefail  # Azure DevOps runs bash without -e",
            *indent([
                "if [ ! -f plan.md ]; then",
                '  echo "##vso[task.logissue type=warning]strata plan stopped before writing plan.md"',
                "  exit 0",
                "fi",
                "strata ci comment plan.md",
                *summary_lines('"$BUILD_ARTIFACTSTAGINGDIRECTORY/plan.md"'),
                'echo "##vso[task.uploadsummary]$BUILD_ARTIFACTSTAGINGDIRECTORY/plan.md"',
            ], 4),
            "  displayName: Post the plan (one pull request thread, updated in place)",
            "  condition: succeededOrFailed()",
            "  env:",
            "    SYSTEM_ACCESSTOKEN: $(System.AccessToken)  # the build service needs Contribute to pull requests",
        ], 10),
        "",
    ]


def _main(repo: Repository, tool_: Tool) -> list[str]:
    condition = ("and(succeeded(), ne(variables['Build.Reason'], 'PullRequest'), "
                 f"eq(variables['Build.SourceBranch'], 'refs/heads/{MAIN_BRANCH}'), "
                 "eq('${{ parameters.destroyEnvironment }}', 'none'))")
    found = groups(repo)
    lines: list[str] = []
    previous: str | None = None
    for env in environments(repo):
        mine = [g for g in found if g.env == env]
        sid = job_id(env).replace("-", "_")
        stage, plan_stage = f"apply_{sid}", f"plan_{sid}"
        lines += [
            f"  - stage: {plan_stage}",
            f"    displayName: {q('Plan ' + env)}",
            "    dependsOn: []",
            f'    condition: "{condition}"',
            "    jobs:",
        ]
        for group in mine:
            lines += indent(_plan_job(repo, group, tool_), 6)
        depends = [plan_stage, *([previous] if previous else [])]
        protected = settings.is_protected(repo, env)
        lines += [
            "",
            f"  - stage: {stage}",
            f"    displayName: {q('Apply ' + env)}",
            f"    dependsOn: [{', '.join(depends)}]",
            f'    condition: "{condition}"',
            "    lockBehavior: sequential  # two applies of one environment never overlap",
            *(["    # protected: add an Approvals check on this environment (Pipelines > Environments)"]
              if protected else []),
            "    jobs:",
        ]
        for group in mine:
            lines += indent(_apply_job(repo, group, tool_), 6)
        lines.append("")
        previous = stage
    return lines


# The destroy's typed confirmation: in a stage of its own before the destroy (no approver is asked for a refused
# run), and again in each destroy job.
_CONFIRMATION = [
    "- script: |",
    "    set -eo pipefail  # Azure DevOps runs bash without -e",
    '    if [ "$CONFIRM" != "$ENVIRONMENT" ]; then',
    '      echo "##vso[task.logissue type=error]confirmDestroy differs: nothing destroyed"',
    "      exit 1",
    "    fi",
    "  displayName: Check the confirmation",
    "  env:",
    "    ENVIRONMENT: ${{ parameters.destroyEnvironment }}",
    "    CONFIRM: ${{ parameters.confirmDestroy }}",
]


def _destroy(repo: Repository, tool_: Tool) -> list[str]:
    """One job per group of the chosen environment, dependents' groups first."""
    lines = [
        # a stage of its own: Azure DevOps asks for an environment's approvals before the stage that uses it
        # starts, so a mistyped confirmation must fail before that (no approver is asked for a refused run)
        "  - stage: destroy_confirm",
        "    displayName: Confirm the destroy of ${{ parameters.destroyEnvironment }}",
        "    dependsOn: []",
        "    condition: ne('${{ parameters.destroyEnvironment }}', 'none')",
        "    jobs:",
        "      - job: confirm",
        "        steps:",
        "          - checkout: none",
        *indent(_CONFIRMATION, 10),
        "  - stage: destroy",
        "    displayName: Destroy ${{ parameters.destroyEnvironment }}",
        "    dependsOn: [destroy_confirm]",
        "    condition: and(succeeded(), ne('${{ parameters.destroyEnvironment }}', 'none'))",
        "    lockBehavior: sequential",
        "    jobs:",
    ]
    found = groups(repo)
    for group in found:
        dependents = [_job_name("destroy", g) for g in found if group in g.needs]
        steps, cloud_list = _auth(repo, group, plan=False)
        lines += indent([
            f"- deployment: {_job_name('destroy', group)}",
            f"  displayName: {q('Destroy ' + group.name)}",
            f"  dependsOn: [{', '.join(dependents)}]",
            "  condition: " + q("eq('${{ parameters.destroyEnvironment }}', " + _single(group.env) + ")"),
            *indent(_pool(repo, group.env), 2),
            f"  environment: {q(group.env)}",
            "  strategy:",
            "    runOnce:",
            "      deploy:",
            "        steps:",
            *indent([
                *_CONFIRMATION,
                *_setup(tool_),
                *steps,
                f"- script: strata destroy {group.selection()} --yes",
                "  displayName: Destroy",
                "  env:",
                *_group_env(group),
                *_credential_env(cloud_list),
            ], 10),
        ], 6)
    return lines


def _single(value: str) -> str:
    """``value`` as a single-quoted string of an Azure DevOps expression (``'`` doubled)."""
    return "'" + value.replace("'", "''") + "'"


def azure(repo: Repository, tool_: Tool) -> str:
    envs = sorted(environments(repo))
    lines = [
        *header("azure-devops"),
        "trigger:",
        "  branches:",
        f"    include: [{MAIN_BRANCH}]",
        "",
        "pr:",
        "  branches:",
        f"    include: [{MAIN_BRANCH}]",
        "",
        "parameters:",
        "  - name: destroyEnvironment",
        "    displayName: Environment to destroy (none for a normal run)",
        "    type: string",
        "    default: none",
        "    values:",
        "      - none",
        *[f"      - {q(env)}" for env in envs],
        "  - name: confirmDestroy",
        "    displayName: Type the environment name again to confirm the destroy",
        "    type: string",
        "    default: ' '",
        "",
        "variables:",
        "  PIP_CACHE_DIR: $(Pipeline.Workspace)/.pip",
        "  STRATA_TOOL_DIR: $(Pipeline.Workspace)/.strata-tool",
        *[f"  {k}: {q(v)}" for k, v in tool_variables(tool_).items()],
        "",
        "stages:",
        *_pr_plan(repo, tool_),
        *_main(repo, tool_),
        *_destroy(repo, tool_),
    ]
    return text(lines)
