import os
from pathlib import Path

from conftest import write_tree


def test_help_and_version(strata, tmp_path: Path):
    result = strata("--help")
    assert result.code == 0
    assert "validate" in result.stdout


def test_version_names_the_terraform_it_would_use(strata, tmp_path: Path, tf_103: str):
    shown = strata("--version", cwd=tmp_path, env={"STRATA_TERRAFORM": tf_103})
    assert shown.code == 0 and shown.stdout.startswith("strata 0.1.0 (tfstrata)\n"), shown.output
    assert f"Terraform 1.0.3 ({os.path.realpath(tf_103)})" in shown.stdout, shown.output
    missing = strata("--version", cwd=tmp_path, env={"STRATA_TERRAFORM": "no-such-terraform"})
    assert missing.code == 0 and "terraform: none usable: cannot find 'no-such-terraform'" in missing.stdout


def test_minimal_repository(strata, tmp_path: Path):
    write_tree(tmp_path, {
        "strata.hcl": "strata {}\n",
        "dev/eu-west-1/01-net/strata.hcl": 'stack {}\ninputs = { cidr = "10.0.0.0/16" }\n',
    })
    result = strata("ls", "--json", cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert '"environment": "dev"' in result.stdout
