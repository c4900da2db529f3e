from pathlib import Path

from conftest import write_tree


def test_help_and_version(strata):
    result = strata("--help")
    assert result.code == 0
    assert "validate" in result.stdout
    assert strata("--version").stdout.strip().endswith("0.1.0")


def test_minimal_repository(strata, tmp_path: Path):
    write_tree(tmp_path, {
        "strata.hcl": "strata {}\n",
        "dev/eu-west-1/01-net/strata.hcl": 'stack {}\ninputs = { cidr = "10.0.0.0/16" }\n',
    })
    result = strata("ls", "--json", cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert '"environment": "dev"' in result.stdout
