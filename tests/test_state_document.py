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


# -- the version-4 layout of resources and outputs: what Terraform's reader would refuse, at its JSON path -------

def instance(**overrides: Any) -> dict[str, Any]:
    return {"schema_version": 0, "attributes": {"id": "1"}, **overrides}


def resource(**overrides: Any) -> dict[str, Any]:
    return {"mode": "managed", "type": "null_resource", "name": "a",
            "provider": 'provider["registry.terraform.io/hashicorp/null"]', "instances": [instance()], **overrides}


@pytest.mark.parametrize(("resources", "problem"), [
    ([{"foo": 1}], 'resources[0].mode is missing (it must be "managed" or "data")'),
    (["a string"], 'resources[0] is "a string", not an object'),
    ([resource(), resource(mode="manged")], 'resources[1].mode is "manged", not "managed" or "data"'),
    ([resource(type=7)], "resources[0].type is 7, not a non-empty string"),
    ([resource(name="")], 'resources[0].name is "", not a non-empty string'),
    ([{k: v for k, v in resource().items() if k != "provider"}],
     "resources[0].provider is missing (it must be a non-empty string)"),
    ([resource(module=["x"])], "resources[0].module is an array, not a string"),
    ([resource(instances={"0": instance()})], "resources[0].instances is an object, not a list"),
    ([resource(instances=None)], "resources[0].instances is null, not a list"),
    ([resource(instances=[instance(), 3])], "resources[0].instances[1] is 3, not an object"),
    ([resource(instances=[instance(attributes=[1])])], "resources[0].instances[0].attributes is an array, not an "
                                                       "object"),
    ([resource(instances=[instance(attributes=None)])], "resources[0].instances[0].attributes is null, not an "
                                                        "object"),
    ([resource(instances=[{"schema_version": 0}])], "resources[0].instances[0] has no attributes (nor "
                                                    "attributes_flat)"),
    ([resource(instances=[{"schema_version": 0, "attributes_flat": {"id": 1}}])],
     "resources[0].instances[0].attributes_flat holds a value that is not a string"),
    ([resource(instances=[instance(schema_version="0")])], 'resources[0].instances[0].schema_version is "0", not a '
                                                           "whole number"),
    ([resource(instances=[instance(schema_version=-1)])], "resources[0].instances[0].schema_version is -1, not a "
                                                          "whole number"),
    ([resource(instances=[{"attributes": {}}])], "resources[0].instances[0].schema_version is missing (it must be "
                                                 "a whole number)"),
    ([resource(instances=[instance(index_key=1.5)])], "resources[0].instances[0].index_key is 1.5, not a whole "
                                                      "number or a string"),
])
def test_problems_names_a_malformed_resource_at_its_json_path(resources: list[Any], problem: str) -> None:
    problems = StateDocument.parse(raw(state(resources=resources))).problems()
    assert problems[0] == problem and len(problems) == (5 if resources == [{"foo": 1}] else 1), problems


@pytest.mark.parametrize(("outputs", "problem"), [
    ({"id": "x"}, 'outputs.id is "x", not an object'),
    ({"id": {"type": "string"}}, "outputs.id has no value"),
])
def test_problems_names_a_malformed_output(outputs: dict[str, Any], problem: str) -> None:
    assert StateDocument.parse(raw(state(outputs=outputs))).problems() == [problem]


def test_problems_of_every_layout_terraform_writes_are_none() -> None:
    """Data sources, modules, count and for_each keys, deposed and tainted objects, 0.11-era flat attributes."""
    resources = [
        resource(), resource(mode="data", type="null_data_source", instances=[instance(), instance()]),
        resource(module='module.m["a b"]', each="map", instances=[instance(index_key="a b"),
                                                                 instance(index_key="c", status="tainted")]),
        resource(each="list", instances=[instance(index_key=0), instance(index_key=1, deposed="00000001")]),
        resource(instances=[{"schema_version": 1, "attributes_flat": {"id": "1", "tags.%": "0"}}]),
        resource(instances=[instance(sensitive_attributes=[], private="bnVsbA==", dependencies=["null_resource.b"],
                                     create_before_destroy=True)]),
        resource(instances=[]),
    ]
    outputs = {"id": {"value": "x", "type": "string"}, "secret": {"value": None, "type": "string", "sensitive": True}}
    assert StateDocument.parse(raw(state(resources=resources, outputs=outputs))).problems() == []


def test_problems_names_the_first_few_in_resources_and_counts_the_rest() -> None:
    problems = StateDocument.parse(raw(state(resources=[{"mode": "managed"}] * 100))).problems()
    assert len(problems) == 6 and problems[0].startswith("resources[0].type is missing"), problems
    assert problems[-1] == "and 395 more problem(s) in resources or outputs"


def test_content_problems_leave_the_identity_aside() -> None:
    doc = StateDocument.parse(raw(state(serial="7", lineage=None, resources=[{"foo": 1}])))
    assert doc.content_problems() == doc.problems()[2:] and len(doc.content_problems()) == 5
    assert doc.valid_serial is None and StateDocument.parse(raw(state())).valid_serial == 7


# -- same contents: Terraform's one lineage and serial, one content --------------------------------------------

def test_same_contents_leaves_the_header_aside() -> None:
    """A newer terraform rewriting a state with nothing changed (key order, layout, terraform_version) is the
    same state; any other difference is not."""
    doc = StateDocument.parse(raw(state(resources=[resource()])))
    rewritten = state(resources=[resource()], terraform_version="1.12.0")
    assert doc.same_contents(StateDocument.parse(json.dumps(dict(reversed(rewritten.items()))).encode()))
    assert not doc.conflicts_with(StateDocument.parse(raw(rewritten)))
    for other in (state(), state(resources=[resource(name="b")]), state(resources=[resource()], check_results=[]),
                  state(resources=[resource()], outputs={"x": {"value": 1, "type": "number"}})):
        assert not doc.same_contents(StateDocument.parse(raw(other)))
        assert doc.conflicts_with(StateDocument.parse(raw(other)))


def test_conflicts_only_within_one_lineage_and_serial() -> None:
    doc = StateDocument.parse(raw(state(resources=[resource()])))
    for other in (state(serial=8), state(lineage="another"), state(lineage=None)):
        assert not doc.conflicts_with(StateDocument.parse(raw(other)))
    bad = StateDocument.parse(raw(state(serial="7")))
    assert not bad.conflicts_with(StateDocument.parse(raw(state(serial="7", resources=[resource()]))))


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
