"""State surgery (src/strata/migrate/surgery.py): splitting a parsed state by a migration's rules.

The pure tests build version-4 states laid out as Terraform 1.11 writes them. The last test applies a
real monolith with terraform 1.11 (null provider from the offline mirror), splits its state with a real
migration file, writes the pieces into new stacks whose code declares the resources at their new
addresses, and proves with ``terraform plan -detailed-exitcode`` (exit 0) that terraform accepts them
and would change nothing.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from conftest import write_tree
from strata.errors import Source
from strata.migrate.spec import Rule, load_migration
from strata.migrate.surgery import SurgeryResult, address_prefixes, config_address, matches, split
from strata.state.document import StateDocument

NULL = 'provider["registry.terraform.io/hashicorp/null"]'


def res(address: str, instances: int | list[Any] = 1, deps: list[str] | None = None,
        provider: str = NULL) -> dict[str, Any]:
    """A state resource for ``address`` (``[module...].[data.]type.name``) laid out like Terraform's."""
    module, _, local = _split_address(address)
    mode = "data" if local.startswith("data.") else "managed"
    rtype, name = local.removeprefix("data.").split(".")
    keys: list[Any] = instances if isinstance(instances, list) else [None] * instances
    insts = []
    for n, key in enumerate(keys):
        inst: dict[str, Any] = {} if key is None else {"index_key": key}
        inst.update({"schema_version": 0, "attributes": {"id": f"{address}#{n}", "triggers": {"n": str(n)}},
                     "sensitive_attributes": [], "private": "bnVsbA=="})
        if deps is not None:
            inst["dependencies"] = list(deps)
        insts.append(inst)
    out: dict[str, Any] = {"module": module} if module else {}
    out.update({"mode": mode, "type": rtype, "name": name, "provider": provider, "instances": insts})
    return out


def _split_address(address: str) -> tuple[str, str, str]:
    parts = address.split(".")
    cut = len(parts) - (3 if len(parts) >= 3 and parts[-3] == "data" else 2)
    return ".".join(parts[:cut]), "", ".".join(parts[cut:])


def state(*resources: dict[str, Any], lineage: str = "src-lineage", serial: int = 12,
          outputs: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"version": 4, "terraform_version": "1.11.4", "serial": serial, "lineage": lineage,
            "outputs": outputs or {}, "resources": list(resources), "check_results": None}


def move(name: str, patterns: list[str], to: str, rename: dict[str, str] | None = None,
         regex: list[str] | None = None) -> Rule:
    return Rule(name, "move", tuple(patterns), tuple(regex or ()), to, tuple((rename or {}).items()),
                Source("m.hcl", 1))


def keep(name: str, patterns: list[str], regex: list[str] | None = None) -> Rule:
    return Rule(name, "keep", tuple(patterns), tuple(regex or ()), None, (), Source("m.hcl", 1))


def addresses(data: dict[str, Any]) -> list[str]:
    out = []
    for r in data["resources"]:
        local = f"data.{r['type']}.{r['name']}" if r["mode"] == "data" else f"{r['type']}.{r['name']}"
        out.append(f"{r['module']}.{local}" if "module" in r else local)
    return out


def where(result: SurgeryResult) -> dict[str, str]:
    """old address -> target of every move."""
    return {m.old: m.target for m in result.moves}


# -- matching ---------------------------------------------------------------------------------------------


def test_exact_address() -> None:
    src = state(res("null_resource.a"), res("null_resource.ab"), res("null_resource.b"))
    r = split(src, {}, [move("x", ["null_resource.a"], "t"), keep("rest", ["*"])])
    assert where(r) == {"null_resource.a": "t"}
    assert r.kept == ["null_resource.ab", "null_resource.b"]
    assert r.ok()


def test_a_module_prefix_takes_the_module_and_everything_below() -> None:
    src = state(res("module.vpc.null_resource.this"), res("module.vpc.module.sub.null_resource.leaf"),
                res("module.vpc.module.sub.module.deep.null_resource.x"), res("module.vpcx.null_resource.this"),
                res("null_resource.vpc"))
    r = split(src, {}, [move("net", ["module.vpc"], "t")])
    assert where(r) == {"module.vpc.null_resource.this": "t", "module.vpc.module.sub.null_resource.leaf": "t",
                        "module.vpc.module.sub.module.deep.null_resource.x": "t"}
    assert r.unmatched == ["module.vpcx.null_resource.this", "null_resource.vpc"]
    assert not r.ok()


def test_a_nested_module_prefix() -> None:
    src = state(res("module.vpc.null_resource.this"), res("module.vpc.module.sub.null_resource.leaf"))
    r = split(src, {}, [move("sub", ["module.vpc.module.sub"], "t"), keep("rest", ["module.vpc"])])
    assert where(r) == {"module.vpc.module.sub.null_resource.leaf": "t"}
    assert r.kept == ["module.vpc.null_resource.this"]


def test_a_module_prefix_covers_every_module_instance() -> None:
    src = state(res('module.tenant["a"].null_resource.this'), res("module.tenant[0].null_resource.this"),
                res('module.tenant["b"].module.sub.null_resource.leaf'), res('module.other["a"].null_resource.this'))
    r = split(src, {}, [move("one", ['module.tenant["a"]'], "a"), move("all", ["module.tenant"], "t"),
                        keep("rest", ["module.other"])])
    assert where(r) == {'module.tenant["a"].null_resource.this': "a", "module.tenant[0].null_resource.this": "t",
                        'module.tenant["b"].module.sub.null_resource.leaf': "t"}


def test_globs_cross_dots() -> None:
    src = state(res("module.eks.null_resource.node_a"), res("module.eks.null_resource.node_b"),
                res("module.eks.null_resource.master"), res("module.x.module.y.null_resource.node_c"),
                res("null_resource.q1"), res("null_resource.q22"))
    r = split(src, {}, [move("nodes", ["*.null_resource.node_*"], "n"), move("q", ["null_resource.q?"], "q"),
                        keep("rest", ["module.eks.*", "null_resource.q[0-9][0-9]"])])
    assert where(r) == {"module.eks.null_resource.node_a": "n", "module.eks.null_resource.node_b": "n",
                        "module.x.module.y.null_resource.node_c": "n", "null_resource.q1": "q"}
    assert r.kept == ["module.eks.null_resource.master", "null_resource.q22"]
    assert r.ok()


def test_regular_expressions_search_the_address() -> None:
    src = state(res("module.network.null_resource.a"), res("module.network2.null_resource.b"),
                res("null_resource.network"))
    r = split(src, {}, [move("net", [], "n", regex=[r"^module\.network\."]), move("word", [], "w", regex=["network"])])
    assert where(r) == {"module.network.null_resource.a": "n", "module.network2.null_resource.b": "w",
                        "null_resource.network": "w"}


def test_the_first_rule_that_matches_wins_whatever_the_kind_of_pattern() -> None:
    src = state(res("module.vpc.null_resource.a"), res("module.vpc.null_resource.b"), res("null_resource.c"),
                res("null_resource.d"))
    rules = [move("r1", [], "one", regex=["null_resource\\.a$"]),
             keep("r2", ["module.vpc.null_resource.b"]),
             move("r3", ["module.vpc", "null_resource.*"], "three"),
             move("r4", ["null_resource.c", "null_resource.d", "module.vpc.null_resource.a"], "four")]
    r = split(src, {}, rules)
    assert {m.old: m.rule for m in r.moves} == {"module.vpc.null_resource.a": "r1", "null_resource.c": "r3",
                                                 "null_resource.d": "r3"}
    assert r.kept == ["module.vpc.null_resource.b"]
    # a literal pattern of an earlier rule beats a glob of a later one
    r = split(src, {}, [move("lit", ["null_resource.d"], "lit"), move("glob", ["*"], "glob")])
    assert {m.old: m.rule for m in r.moves}["null_resource.d"] == "lit"


def test_data_sources_are_matched_by_their_data_address() -> None:
    src = state(res("data.null_data_source.info"), res("module.vpc.data.null_data_source.zones"),
                res("null_resource.info"))
    r = split(src, {}, [move("data", ["data.null_data_source.info"], "d"), move("vpc", ["module.vpc"], "v"),
                        keep("rest", ["null_resource.*"])])
    assert where(r) == {"data.null_data_source.info": "d", "module.vpc.data.null_data_source.zones": "v"}
    moved = r.targets["v"]["resources"][0]
    assert (moved["mode"], moved["module"], moved["type"], moved["name"]) == ("data", "module.vpc",
                                                                              "null_data_source", "zones")
    assert r.kept == ["null_resource.info"]


# -- renames ------------------------------------------------------------------------------------------------


def test_rename_drops_a_module_prefix() -> None:
    src = state(res("module.vpc.null_resource.this"), res("module.vpc.module.sub.null_resource.leaf"),
                res("module.vpc.data.null_data_source.zones"))
    r = split(src, {}, [move("f", ["module.vpc"], "found", rename={"module.vpc": ""})])
    assert [(m.old, m.new) for m in r.moves] == [
        ("module.vpc.null_resource.this", "null_resource.this"),
        ("module.vpc.module.sub.null_resource.leaf", "module.sub.null_resource.leaf"),
        ("module.vpc.data.null_data_source.zones", "data.null_data_source.zones")]
    out = r.targets["found"]["resources"]
    assert "module" not in out[0] and out[1]["module"] == "module.sub" and "module" not in out[2]
    assert addresses(r.targets["found"]) == ["null_resource.this", "module.sub.null_resource.leaf",
                                             "data.null_data_source.zones"]


def test_rename_renames_a_module_prefix_keeping_instance_keys() -> None:
    src = state(res("module.vpc.null_resource.this"), res('module.tenant["a"].module.sub.null_resource.leaf'))
    r = split(src, {}, [move("f", ["module.vpc", "module.tenant"], "t",
                             rename={"module.vpc": "module.network", "module.tenant": 'module.customer'})])
    assert [m.new for m in r.moves] == ["module.network.null_resource.this",
                                        'module.customer["a"].module.sub.null_resource.leaf']
    assert [x["module"] for x in r.targets["t"]["resources"]] == ["module.network",
                                                                  'module.customer["a"].module.sub']


def test_rename_a_full_address_and_the_longest_prefix_wins() -> None:
    src = state(res("module.vpc.null_resource.a"), res("module.vpc.null_resource.b"),
                res("module.vpc.module.sub.null_resource.c"), res("null_resource.app"))
    r = split(src, {}, [move("f", ["module.vpc", "null_resource.app"], "t", rename={
        "module.vpc": "", "module.vpc.module.sub": "module.inner", "module.vpc.null_resource.a": "null_resource.x",
        "null_resource.app": "module.apps.null_resource.application"})])
    assert [(m.old, m.new) for m in r.moves] == [
        ("module.vpc.null_resource.a", "null_resource.x"),
        ("module.vpc.null_resource.b", "null_resource.b"),
        ("module.vpc.module.sub.null_resource.c", "module.inner.null_resource.c"),
        ("null_resource.app", "module.apps.null_resource.application")]
    app = r.targets["t"]["resources"][3]
    assert (app["module"], app["type"], app["name"]) == ("module.apps", "null_resource", "application")


def test_renames_of_one_rule_do_not_apply_to_another() -> None:
    src = state(res("module.vpc.null_resource.a"), res("module.vpc.null_resource.b"))
    r = split(src, {}, [move("one", ["module.vpc.null_resource.a"], "t", rename={"module.vpc": ""}),
                        move("two", ["module.vpc"], "t")])
    assert [m.new for m in r.moves] == ["null_resource.a", "module.vpc.null_resource.b"]


def test_dropping_a_module_that_has_instance_keys_is_refused() -> None:
    src = state(res('module.tenant["a"].null_resource.this'))
    r = split(src, {}, [move("c", ["module.tenant"], "t", rename={"module.tenant": ""})])
    assert not r.ok()
    assert len(r.collisions) == 1 and "is not a resource address" in r.collisions[0]
    assert r.collisions[0].startswith('module.tenant["a"].null_resource.this: rule "c" renames it to')
    r = split(src, {}, [move("c", ["module.tenant"], "t", rename={'module.tenant["a"]': ""})])
    assert r.ok() and [m.new for m in r.moves] == ["null_resource.this"]


def test_a_rename_to_another_type_or_mode_is_refused() -> None:
    # spec.py refuses such renames in a file; rules built in code (strata state mv) reach split() directly
    src = state(res("null_resource.a"), res("null_resource.b"))
    r = split(src, {}, [move("m", ["*"], "t", rename={"null_resource.a": "random_id.a",
                                                      "null_resource.b": "data.null_resource.b"})])
    assert r.collisions == [
        'null_resource.a: rule "m" renames it to random_id.a, another resource type or mode; terraform cannot '
        "move a resource between types",
        'null_resource.b: rule "m" renames it to data.null_resource.b, another resource type or mode; terraform '
        "cannot move a resource between types"]
    assert addresses(r.source) == ["null_resource.a", "null_resource.b"] and r.targets["t"]["resources"] == []


def test_the_provider_follows_a_renamed_module() -> None:
    own = 'module.vpc.provider["registry.terraform.io/hashicorp/null"]'
    aliased = 'module.vpc.provider["registry.terraform.io/hashicorp/null"].east'
    dns = 'module.dns.provider["registry.terraform.io/hashicorp/null"]'
    full = 'module.full.provider["registry.terraform.io/hashicorp/null"]'
    src = state(res("module.vpc.null_resource.a", provider=own), res("module.vpc.null_resource.b", provider=aliased),
                res("module.vpc.module.sub.null_resource.c", provider=own),
                res("module.dns.null_resource.d", provider=dns), res("module.keep.null_resource.e", provider=NULL),
                res("module.full.null_resource.f", provider=full))
    renames = {"module.vpc": "", "module.dns": "module.records", "module.keep": "",
               "module.full.null_resource.f": "null_resource.f"}
    r = split(src, {}, [move("f", ["*"], "t", rename=renames)])
    assert [x["provider"] for x in r.targets["t"]["resources"]] == [
        NULL, 'provider["registry.terraform.io/hashicorp/null"].east', NULL,
        'module.records.provider["registry.terraform.io/hashicorp/null"]', NULL, NULL]


def test_a_provider_is_untouched_without_a_rename() -> None:
    own = 'module.vpc.provider["registry.terraform.io/hashicorp/null"]'
    r = split(state(res("module.vpc.null_resource.a", provider=own)), {}, [move("f", ["module.vpc"], "t")])
    assert r.targets["t"]["resources"][0]["provider"] == own


# -- count, for_each, instances ---------------------------------------------------------------------------


def test_count_and_for_each_instances_move_together() -> None:
    src = state(res("null_resource.node", [0, 1, 2], deps=["null_resource.zone"]), res("null_resource.zone"),
                res("null_resource.client", ["ezra", "mtn-ghana"]))
    r = split(src, {}, [move("nodes", ["null_resource.node", "null_resource.zone"], "p", rename={
                        "null_resource.node": "null_resource.worker"}),
                        move("clients", ["null_resource.client"], "c")])
    assert [(m.old, m.new, m.instances) for m in r.moves] == [("null_resource.node", "null_resource.worker", 3),
                                                              ("null_resource.zone", "null_resource.zone", 1),
                                                              ("null_resource.client", "null_resource.client", 2)]
    worker = r.targets["p"]["resources"][0]
    assert [i["index_key"] for i in worker["instances"]] == [0, 1, 2]
    assert [i["attributes"]["id"] for i in worker["instances"]] == [f"null_resource.node#{n}" for n in range(3)]
    assert [i["dependencies"] for i in worker["instances"]] == [["null_resource.zone"]] * 3
    assert [i["index_key"] for i in r.targets["c"]["resources"][0]["instances"]] == ["ezra", "mtn-ghana"]
    assert r.source["resources"] == []


# -- dependencies -----------------------------------------------------------------------------------------


def test_dependencies_are_rewritten_in_the_target_and_dropped_across_states() -> None:
    src = state(res("null_resource.zone"),
                res("module.vpc.null_resource.this"),
                res("module.vpc.module.sub.null_resource.leaf", deps=["module.vpc.null_resource.this",
                                                                     "null_resource.zone"]),
                res("null_resource.app", deps=["module.vpc.null_resource.this", "null_resource.zone",
                                               "null_resource.legacy"]),
                res("null_resource.legacy", deps=["null_resource.zone", "null_resource.other"]),
                res("null_resource.only", deps=["null_resource.zone"]))
    r = split(src, {}, [move("f", ["module.vpc"], "found", rename={"module.vpc": ""}),
                        move("dns", ["null_resource.zone", "null_resource.only"], "dns"),
                        move("apps", ["null_resource.app"], "apps"),
                        keep("rest", ["null_resource.legacy"])])
    leaf = r.targets["found"]["resources"][1]
    assert leaf["instances"][0]["dependencies"] == ["null_resource.this"]  # same target: new address
    only = r.targets["dns"]["resources"][1]
    assert only["instances"][0]["dependencies"] == ["null_resource.zone"]
    app = r.targets["apps"]["resources"][0]
    assert "dependencies" not in app["instances"][0]  # everything it depended on lives in other states now
    legacy = r.source["resources"][0]
    assert legacy["instances"][0]["dependencies"] == ["null_resource.other"]  # not in the state: kept


def test_source_dependencies_on_moved_resources_are_dropped_and_empty_lists_removed() -> None:
    src = state(res("null_resource.zone"), res("null_resource.legacy", deps=["null_resource.zone"]),
                res("null_resource.kept", deps=["null_resource.legacy"]))
    r = split(src, {}, [move("dns", ["null_resource.zone"], "dns"), keep("rest", ["*"])])
    legacy, kept = r.source["resources"]
    assert "dependencies" not in legacy["instances"][0]
    assert kept["instances"][0]["dependencies"] == ["null_resource.legacy"]
    assert kept is src["resources"][2]  # unchanged resources are not copied


def test_dependencies_use_config_addresses_of_module_instances() -> None:
    src = state(res('module.tenant["a"].null_resource.this'), res('module.tenant["b"].null_resource.this'),
                res('module.tenant["a"].module.sub.null_resource.leaf', deps=["module.tenant.null_resource.this"]))
    r = split(src, {}, [move("c", ["module.tenant"], "c", rename={"module.tenant": "module.customer"})])
    leaf = r.targets["c"]["resources"][2]
    assert leaf["instances"][0]["dependencies"] == ["module.customer.null_resource.this"]


def test_a_dependency_partly_kept_stays_in_the_source() -> None:
    src = state(res('module.tenant["a"].null_resource.this'), res('module.tenant["b"].null_resource.this'),
                res("null_resource.x", deps=["module.tenant.null_resource.this"]))
    r = split(src, {}, [move("a", ['module.tenant["a"]'], "a"), keep("rest", ["*"])])
    assert r.source["resources"][1]["instances"][0]["dependencies"] == ["module.tenant.null_resource.this"]


# -- unmatched and collisions -----------------------------------------------------------------------------


def test_unmatched_resources_are_listed_and_stay_in_the_source() -> None:
    src = state(res("null_resource.a"), res("null_resource.b"), res("data.null_data_source.c"))
    r = split(src, {}, [move("a", ["null_resource.a"], "t")])
    assert r.unmatched == ["null_resource.b", "data.null_data_source.c"]
    assert addresses(r.source) == ["null_resource.b", "data.null_data_source.c"]
    assert not r.ok()


def test_a_collision_with_the_target_state() -> None:
    existing = state(res("null_resource.this"), lineage="target-lineage", serial=3)
    src = state(res("module.vpc.null_resource.this"), res("module.vpc.null_resource.other"))
    r = split(src, {"t": existing}, [move("f", ["module.vpc"], "t", rename={"module.vpc": ""})])
    assert not r.ok()
    assert r.collisions == ['t: null_resource.this already exists in the target\'s state (moving '
                            'module.vpc.null_resource.this, rule "f")']
    assert addresses(r.targets["t"]) == ["null_resource.this", "null_resource.other"]
    assert r.targets["t"]["resources"][0] is existing["resources"][0]
    assert addresses(r.source) == ["module.vpc.null_resource.this"]


def test_two_resources_landing_on_one_address() -> None:
    src = state(res("module.a.null_resource.x"), res("module.b.null_resource.x"), res("module.c.null_resource.x"))
    r = split(src, {}, [move("f", ["module.a", "module.b"], "t", rename={"module.a": "", "module.b": ""}),
                        move("g", ["module.c"], "u", rename={"module.c": ""})])
    assert r.collisions == ['t: module.a.null_resource.x and module.b.null_resource.x would both become '
                            'null_resource.x (rule "f")']
    assert addresses(r.targets["t"]) == ["null_resource.x"]
    assert addresses(r.targets["u"]) == ["null_resource.x"]  # another target: no collision
    assert not r.ok()


# -- targets and the source -------------------------------------------------------------------------------


def test_a_new_target_gets_a_new_state() -> None:
    src = state(res("null_resource.a"), outputs={"x": {"value": 1, "type": "number"}})
    r = split(src, {"t": None}, [move("a", ["null_resource.a"], "t")])
    t = r.targets["t"]
    assert {k: v for k, v in t.items() if k != "resources"} == {"version": 4, "terraform_version": "1.11.4",
                                                                "serial": 0, "lineage": "", "outputs": {}}
    assert t["resources"] == [src["resources"][0]]
    assert t["resources"][0] is not src["resources"][0]
    assert r.source["outputs"] == src["outputs"]


def test_an_existing_target_keeps_its_resources_identity_and_outputs() -> None:
    first = res("null_resource.existing")
    existing = state(first, lineage="target-lineage", serial=3, outputs={"o": {"value": "v", "type": "string"}})
    before = copy.deepcopy(existing)
    src = state(res("null_resource.a"), res("null_resource.b"))
    r = split(src, {"t": existing}, [move("a", ["*"], "t")])
    out = r.targets["t"]
    assert addresses(out) == ["null_resource.existing", "null_resource.a", "null_resource.b"]
    assert out["resources"][0] == before["resources"][0]
    assert (out["lineage"], out["serial"], out["outputs"]) == ("target-lineage", 3, before["outputs"])
    assert existing == before


def test_every_target_named_by_a_rule_is_in_the_result() -> None:
    existing = state(res("null_resource.z"), lineage="l", serial=1)
    r = split(state(res("null_resource.a")), {"t2": existing},
              [move("a", ["null_resource.a"], "t1"), move("none", ["null_resource.nothing"], "t2"),
               move("none2", ["null_resource.nothing2"], "t3")])
    assert list(r.targets) == ["t1", "t2", "t3"]
    assert r.targets["t2"] == existing and r.targets["t3"]["resources"] == []


def test_the_source_keeps_exactly_the_kept_resources_in_order() -> None:
    src = state(res("null_resource.k1"), res("null_resource.m1"), res("null_resource.k2"), res("null_resource.m2"),
                outputs={"o": {"value": 1, "type": "number"}})
    r = split(src, {}, [move("m", ["null_resource.m*"], "t"), keep("k", ["null_resource.k*"])])
    assert addresses(r.source) == ["null_resource.k1", "null_resource.k2"] == r.kept
    assert addresses(r.targets["t"]) == ["null_resource.m1", "null_resource.m2"]
    assert (r.source["lineage"], r.source["serial"], r.source["outputs"]) == ("src-lineage", 12, src["outputs"])
    assert r.source["check_results"] is None


def test_deterministic_and_the_input_is_not_modified() -> None:
    src = state(*(res(f"module.m{i % 3}.null_resource.r{i}", [0, 1], deps=[f"module.m{(i + 1) % 3}.null_resource.r0"])
                  for i in range(30)))
    target = state(res("null_resource.existing"), lineage="l", serial=2)
    before = copy.deepcopy((src, target))
    rules = [move("a", ["module.m0"], "a", rename={"module.m0": ""}), move("b", ["module.m1"], "b"),
             keep("c", [], regex=["^module\\.m2\\."])]
    one = split(src, {"a": target}, rules)
    two = split(src, {"a": target}, rules)
    assert (src, target) == before
    dump = lambda r: json.dumps([r.source, r.targets, [m.__dict__ for m in r.moves], r.kept], sort_keys=False)  # noqa: E731
    assert dump(one) == dump(two)


def test_a_source_that_is_not_a_version_4_state() -> None:
    with pytest.raises(ValueError, match="format version 4"):
        split({"version": 3, "modules": []}, {}, [])


def test_matches_one_pattern_like_the_rules_do() -> None:
    assert matches("null_resource.a", "null_resource.a")
    assert not matches("null_resource.ab", "null_resource.a")
    assert matches("module.vpc.module.sub.null_resource.leaf", "module.vpc")
    assert matches('module.vpc["k"].null_resource.this', "module.vpc")
    assert not matches("module.vpcx.null_resource.this", "module.vpc")
    assert matches('module.x["k"].null_resource.this', 'module.x["k"]')
    assert not matches('module.x["j"].null_resource.this', 'module.x["k"]')
    assert matches("module.eks.null_resource.node_a", "module.*.null_resource.node_?")
    assert not matches("module.eks.null_resource.node_ab", "module.*.null_resource.node_?")
    assert matches("data.null_data_source.x", "data.*")


def test_address_helpers() -> None:
    assert address_prefixes('module.x["a.b"].module.y[0].null_resource.z') == [
        "module", "module.x", 'module.x["a.b"]', 'module.x["a.b"].module', 'module.x["a.b"].module.y',
        'module.x["a.b"].module.y[0]', 'module.x["a.b"].module.y[0].null_resource',
        'module.x["a.b"].module.y[0].null_resource.z']
    assert config_address('module.x["a.b"].module.y[0].null_resource.z') == "module.x.module.y.null_resource.z"


def test_ten_thousand_resources_and_twenty_rules_in_well_under_a_second() -> None:
    resources = []
    for m in range(20):
        for i in range(250):
            resources.append(res(f"module.m{m:02d}.null_resource.r{i}", deps=[f"module.m{m:02d}.null_resource.r0"]))
            resources.append(res(f"module.m{m:02d}.module.inner.null_resource.r{i}", [0, 1]))
    src = state(*resources)
    rules: list[Rule] = []
    for m in range(20):
        if m % 3 == 0:
            rules.append(move(f"r{m}", [f"module.m{m:02d}"], f"stack{m}", rename={f"module.m{m:02d}": ""}))
        elif m % 3 == 1:
            rules.append(move(f"r{m}", [f"module.m{m:02d}.*"], f"stack{m}"))
        else:
            rules.append(move(f"r{m}", [], f"stack{m}", regex=[f"^module\\.m{m:02d}\\."]))
    # CPU time of this process, not the wall clock: other processes on a loaded machine do not count.
    # About 0.1 s; the bound only catches a quadratic split (minutes).
    start = time.process_time()
    r = split(src, {}, rules)
    elapsed = time.process_time() - start
    assert r.ok() and len(r.moves) == 10_000 and len(r.targets) == 20
    assert elapsed < 2.0, f"split took {elapsed:.2f} s of CPU"


# -- real terraform ---------------------------------------------------------------------------------------

MODULE_NET = {
    "modules/net/main.tf": """
        variable "cidr" {
          type = string
        }
        resource "null_resource" "this" {
          triggers = { cidr = var.cidr }
        }
        module "sub" {
          source = "./sub"
          parent = null_resource.this.id
        }
        output "id" {
          value = null_resource.this.id
        }
        """,
    "modules/net/sub/main.tf": """
        variable "parent" {
          type = string
        }
        resource "null_resource" "leaf" {
          triggers = { parent = var.parent }
        }
        """,
    "modules/dns/main.tf": """
        provider "null" {}
        resource "null_resource" "record" {
          triggers = { name = "www" }
        }
        """,
}

MONOLITH = """
    resource "null_resource" "dns_zone" {
      triggers = { zone = "example.com" }
    }
    resource "null_resource" "node" {
      count      = 2
      triggers   = { index = count.index }
      depends_on = [null_resource.dns_zone]
    }
    resource "null_resource" "client" {
      for_each = toset(["ezra", "mtn-ghana"])
      triggers = { name = each.key }
    }
    data "null_data_source" "info" {
      inputs = { region = "us-east-1" }
    }
    module "vpc" {
      source = "./modules/net"
      cidr   = "10.0.0.0/16"
    }
    module "tenant" {
      source   = "./modules/net"
      for_each = toset(["a"])
      cidr     = "10.1.0.0/16"
    }
    module "dns" {
      source = "./modules/dns"
    }
    resource "null_resource" "app" {
      triggers   = { name = "app" }
      depends_on = [module.vpc, null_resource.dns_zone]
    }
    resource "null_resource" "legacy_a" {
      triggers = { old = "yes" }
    }
    """

MIGRATION = r"""
    migration {
      description = "split the monolith"
    }
    source {
      stack = "mono"
    }
    move "foundation" {
      resources = ["module.vpc", "null_resource.dns_zone", "module.dns"]
      to        = "foundation"
      rename    = { "module.vpc" = "", "module.dns" = "module.records" }
    }
    move "platform" {
      resources = ["null_resource.node", "data.null_data_source.info"]
      to        = "platform"
    }
    move "apps" {
      regex  = ["^null_resource\\.app$"]
      to     = "apps"
      rename = { "null_resource.app" = "null_resource.application" }
    }
    move "clients" {
      resources = ["null_resource.client", "module.tenant"]
      to        = "clients"
      rename    = { "module.tenant" = "module.customer" }
    }
    keep "leftovers" {
      resources = ["null_resource.legacy_*"]
    }
    """

TARGET_CODE = {
    "foundation/main.tf": """
        resource "null_resource" "dns_zone" {
          triggers = { zone = "example.com" }
        }
        resource "null_resource" "this" {
          triggers = { cidr = "10.0.0.0/16" }
        }
        module "sub" {
          source = "../modules/net/sub"
          parent = null_resource.this.id
        }
        module "records" {
          source = "../modules/dns"
        }
        """,
    "platform/main.tf": """
        resource "null_resource" "node" {
          count    = 2
          triggers = { index = count.index }
        }
        data "null_data_source" "info" {
          inputs = { region = "us-east-1" }
        }
        """,
    "apps/main.tf": """
        resource "null_resource" "existing" {
          triggers = { here = "before" }
        }
        resource "null_resource" "application" {
          triggers = { name = "app" }
        }
        """,
    "clients/main.tf": """
        resource "null_resource" "client" {
          for_each = toset(["ezra", "mtn-ghana"])
          triggers = { name = each.key }
        }
        module "customer" {
          source   = "../modules/net"
          for_each = toset(["a"])
          cidr     = "10.1.0.0/16"
        }
        """,
}


def terraform(binary: str, cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([binary, *args], cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=300, check=False)


def ids(data: dict[str, Any]) -> list[tuple[str, str]]:
    """(id, index key) of every managed instance (two provider configurations of null 2.1.2 can draw
    the same random id, so ids alone are not unique)."""
    return [(i["attributes"]["id"], repr(i.get("index_key"))) for r in data["resources"] if r["mode"] == "managed"
            for i in r["instances"]]


@pytest.mark.terraform
def test_a_real_monolith_split_plans_with_no_changes(tmp_path: Path, tf_111: str,
                                                     provider_mirror: dict[str, str]) -> None:
    root = write_tree(tmp_path, {"mono/main.tf": MONOLITH, **{f"mono/{k}": v for k, v in MODULE_NET.items()},
                                 **{k: v for k, v in MODULE_NET.items()}, "split.hcl": MIGRATION,
                                 "apps/main.tf": 'resource "null_resource" "existing" {\n'
                                                 '  triggers = { here = "before" }\n}\n'})
    env = {**provider_mirror, "TF_INPUT": "0"}
    for stack in ("mono", "apps"):
        for args in (("init", "-input=false"), ("apply", "-auto-approve", "-input=false")):
            proc = terraform(tf_111, root / stack, env, *args)
            assert proc.returncode == 0, proc.stdout + proc.stderr
    mono = json.loads((root / "mono" / "terraform.tfstate").read_text())
    apps_before = json.loads((root / "apps" / "terraform.tfstate").read_text())
    assert any(r.get("module", "").startswith('module.tenant["a"]') for r in mono["resources"])
    assert any(r["provider"].startswith("module.dns.provider[") for r in mono["resources"])

    migration = load_migration(root / "split.hcl", "split.hcl")
    result = split(mono, {"foundation": None, "platform": None, "apps": apps_before, "clients": None},
                   migration.rules)
    assert result.ok(), (result.unmatched, result.collisions)
    assert result.kept == ["null_resource.legacy_a"]
    assert sorted((m.old, m.new) for m in result.moves if m.old != m.new) == [
        ("module.dns.null_resource.record", "module.records.null_resource.record"),
        ('module.tenant["a"].module.sub.null_resource.leaf', 'module.customer["a"].module.sub.null_resource.leaf'),
        ('module.tenant["a"].null_resource.this', 'module.customer["a"].null_resource.this'),
        ("module.vpc.module.sub.null_resource.leaf", "module.sub.null_resource.leaf"),
        ("module.vpc.null_resource.this", "null_resource.this"),
        ("null_resource.app", "null_resource.application")]
    # no resource id changed, none lost, none duplicated
    pieces = [result.source, *result.targets.values()]
    assert sorted(i for p in pieces for i in ids(p)) == sorted(ids(mono) + ids(apps_before))

    # write every piece as the next state (lineage kept, serial + 1) and plan against the new code
    write_tree(root, {**TARGET_CODE, "mono/main.tf": 'resource "null_resource" "legacy_a" {\n'
                                                     '  triggers = { old = "yes" }\n}\n'})
    for name, data in [("mono", result.source), *result.targets.items()]:
        path = root / name / "terraform.tfstate"
        before = StateDocument.parse(path.read_bytes()) if path.exists() else None
        doc = StateDocument(b"", data)
        path.write_bytes(doc.with_identity(before.serial + 1 if before else 1,
                                           before.lineage if before else str(uuid.uuid4())))
    for name in ("mono", "foundation", "platform", "apps", "clients"):
        proc = terraform(tf_111, root / name, env, "init", "-input=false")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        proc = terraform(tf_111, root / name, env, "plan", "-detailed-exitcode", "-input=false", "-lock=false")
        assert proc.returncode == 0, f"{name}: plan shows changes or failed\n{proc.stdout}\n{proc.stderr}"
        assert "No changes." in proc.stdout, proc.stdout
    listed = terraform(tf_111, root / "foundation", env, "state", "list").stdout.split()
    assert listed == ["null_resource.dns_zone", "null_resource.this", "module.records.null_resource.record",
                      "module.sub.null_resource.leaf"]
