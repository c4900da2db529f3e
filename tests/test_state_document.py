"""StateDocument (src/strata/state/document.py): parsing, soundness checks and rewriting a Terraform state.

Pure functions over bytes: no terraform, no files. The layouts used are what Terraform 1.x writes
(format version 4).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from strata.state.document import StateDocument, StateFormatError

LINEAGE = "8d3c1f0e-5b7a-4c2d-9e1f-0a1b2c3d4e5f"


def state(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "version": 4,
        "terraform_version": "1.11.4",
        "serial": 7,
        "lineage": LINEAGE,
        "outputs": {},
        "resources": [],
        "check_results": None,
    }
    data.update(overrides)
    return data


def raw(data: dict[str, Any]) -> bytes:
    return json.dumps(data, indent=2).encode()


def managed(rtype: str, name: str, instances: int) -> dict[str, Any]:
    return {"mode": "managed", "type": rtype, "name": name, "provider": 'provider["registry.terraform.io/x/y"]',
            "instances": [{"schema_version": 0, "attributes": {"id": f"{name}-{i}"}} for i in range(instances)]}


# -- parse -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("data", [b"", b"not json{", b"\xff\xfe\x00garbage", b'{"version": 4,'])
def test_parse_refuses_what_is_not_json(data: bytes) -> None:
    with pytest.raises(StateFormatError, match="not JSON"):
        StateDocument.parse(data)


@pytest.mark.parametrize("data", [b"[]", b"[1, 2]", b'"a string"', b"42", b"null", b"true"])
def test_parse_refuses_json_that_is_not_an_object(data: bytes) -> None:
    with pytest.raises(StateFormatError, match="not an object"):
        StateDocument.parse(data)


def test_parse_error_is_a_value_error() -> None:
    """Callers that catch ValueError (the CLI's generic handling) catch it too."""
    assert issubclass(StateFormatError, ValueError)


def test_parse_keeps_the_raw_bytes_and_reads_the_identity() -> None:
    data = raw(state())
    doc = StateDocument.parse(data)
    assert doc.raw == data
    assert (doc.version, doc.serial, doc.lineage, doc.terraform_version) == (4, 7, LINEAGE, "1.11.4")
    assert doc.problems() == []
    summary = doc.summary()
    assert summary["serial"] == 7 and summary["lineage"] == LINEAGE and summary["size"] == len(data)
    assert summary["sha256"] == doc.sha256 == hashlib.sha256(data).hexdigest()


# -- problems --------------------------------------------------------------------------------------------------

def test_problems_of_a_sound_state_are_none() -> None:
    assert StateDocument.parse(raw(state(resources=[managed("null_resource", "a", 1)]))).problems() == []


@pytest.mark.parametrize("version", [3, "4", None, 5])
def test_problems_names_a_format_version_other_than_4(version: Any) -> None:
    problems = StateDocument.parse(raw(state(version=version))).problems()
    assert len(problems) == 1 and "format version" in problems[0] and "not 4" in problems[0], problems


def test_problems_names_a_missing_version() -> None:
    data = state()
    del data["version"]
    problems = StateDocument.parse(raw(data)).problems()
    assert any("format version" in p for p in problems), problems


@pytest.mark.parametrize("lineage", [None, "", 42])
def test_problems_names_a_missing_lineage(lineage: Any) -> None:
    problems = StateDocument.parse(raw(state(lineage=lineage))).problems()
    assert problems == ["it has no lineage"], problems


def test_problems_names_an_absent_lineage_key() -> None:
    data = state()
    del data["lineage"]
    assert StateDocument.parse(raw(data)).problems() == ["it has no lineage"]


@pytest.mark.parametrize("serial", ["7", 7.5, None, True, -1, [7]])
def test_problems_names_a_bad_serial(serial: Any) -> None:
    doc = StateDocument.parse(raw(state(serial=serial)))
    assert doc.serial == -1
    problems = doc.problems()
    assert len(problems) == 1 and "serial" in problems[0], problems


def test_serial_zero_is_sound() -> None:
    doc = StateDocument.parse(raw(state(serial=0)))
    assert doc.serial == 0 and doc.problems() == []


def test_problems_names_resources_that_are_not_a_list() -> None:
    problems = StateDocument.parse(raw(state(resources={"a": 1}))).problems()
    assert problems == ["resources is not a list"], problems


def test_problems_lists_every_problem() -> None:
    problems = StateDocument.parse(b'{"version": 3}').problems()
    assert len(problems) == 3, problems


# -- with_identity ---------------------------------------------------------------------------------------------

def test_with_identity_sets_serial_and_lineage_and_keeps_everything_else() -> None:
    original = state(resources=[managed("null_resource", "a", 2)], outputs={"id": {"value": "x", "type": "string"}})
    original["extra_field"] = {"nested": [1, 2, 3]}
    doc = StateDocument.parse(raw(original))
    rewritten = doc.with_identity(12, "other-lineage")
    assert rewritten.endswith(b"}\n")
    data = json.loads(rewritten)
    assert data["serial"] == 12 and data["lineage"] == "other-lineage"
    assert {k: v for k, v in data.items() if k not in ("serial", "lineage")} == \
        {k: v for k, v in original.items() if k not in ("serial", "lineage")}
    again = StateDocument.parse(rewritten)
    assert again.problems() == [] and again.resource_count == 2
    # the document itself is unchanged (frozen; a copy was rewritten)
    assert doc.serial == 7 and doc.lineage == LINEAGE


def test_with_identity_lays_keys_out_as_terraform_does() -> None:
    """version, terraform_version, serial, lineage first; then the other keys in their original order."""
    scrambled = {"resources": [], "lineage": LINEAGE, "outputs": {}, "serial": 3, "zzz": 1,
                 "terraform_version": "1.0.3", "version": 4, "check_results": None}
    rewritten = StateDocument.parse(raw(scrambled)).with_identity(4, LINEAGE)
    assert list(json.loads(rewritten)) == ["version", "terraform_version", "serial", "lineage", "resources",
                                           "outputs", "zzz", "check_results"]


def test_with_identity_adds_serial_and_lineage_when_missing() -> None:
    rewritten = StateDocument.parse(b'{"version": 4, "resources": []}').with_identity(1, LINEAGE)
    assert list(json.loads(rewritten)) == ["version", "serial", "lineage", "resources"]
    assert StateDocument.parse(rewritten).problems() == []


# -- resource_count / is_empty ---------------------------------------------------------------------------------

def test_resource_count_counts_managed_instances_only() -> None:
    data_source = {"mode": "data", "type": "null_data_source", "name": "d", "instances": [{}, {}, {}]}
    resources = [managed("null_resource", "a", 1), managed("null_resource", "many", 3), data_source,
                 managed("null_resource", "none", 0), {"mode": "managed", "type": "x", "name": "no_instances"},
                 "not a resource"]
    doc = StateDocument.parse(raw(state(resources=resources)))
    assert doc.resource_count == 4
    assert len(doc.resources) == 5  # the string is skipped


def test_resource_count_of_a_state_without_resources() -> None:
    assert StateDocument.parse(raw(state())).resource_count == 0
    assert StateDocument.parse(raw(state(resources="oops"))).resource_count == 0


def test_is_empty() -> None:
    assert StateDocument.parse(raw(state())).is_empty()
    data = state()
    del data["resources"], data["outputs"]
    assert StateDocument.parse(raw(data)).is_empty()
    assert not StateDocument.parse(raw(state(resources=[managed("null_resource", "a", 1)]))).is_empty()
    assert not StateDocument.parse(raw(state(outputs={"x": {"value": 1, "type": "number"}}))).is_empty()
    # a data source alone still counts as content: Terraform's rule is about resources, not managed ones
    data_only = {"mode": "data", "type": "null_data_source", "name": "d", "instances": [{}]}
    assert not StateDocument.parse(raw(state(resources=[data_only]))).is_empty()
