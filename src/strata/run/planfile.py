"""What a saved plan file carries, checked against the checkout it is applied in.

A plan file is a zip: ``tfplan`` (the changes and the variables' values), the prior state (``tfstate``) and a
snapshot of the configuration (``tfconfig/m-<module key>/<file>``, with ``tfconfig/modules.json`` naming each
module's folder). Terraform applies the configuration *in the plan*, not the checkout's. A plan carried from a
pull request's job (whose code the pull request controls) must therefore be shown to hold the merged code before
it is applied: every configuration file, byte for byte, and the values of the variables strata sets.
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path
from typing import Any

from strata.terraform.modules import code_files, read_code

_CODE_SUFFIXES = (".tf", ".tf.json")


def configuration_differences(plan: Path, stack_dir: Path) -> list[str]:
    """How the configuration inside ``plan`` differs from the files of ``stack_dir`` and the modules it uses
    (empty when it is the same code); a file named relative to the stack folder."""
    try:
        with zipfile.ZipFile(plan) as archive:
            names = [n for n in archive.namelist() if not n.endswith("/")]
            try:
                modules = json.loads(archive.read("tfconfig/modules.json"))
            except (KeyError, ValueError):
                return ["the plan carries no readable configuration (tfconfig/modules.json)"]
            if not isinstance(modules, list):
                return ["the plan's tfconfig/modules.json is not a list of modules"]
            out: list[str] = []
            for module in modules:
                if not isinstance(module, dict) or not isinstance(module.get("Dir"), str):
                    return ["the plan's tfconfig/modules.json names a module without a folder"]
                prefix = f"tfconfig/m-{module.get('Key', '')}/"
                carried = {n[len(prefix):]: n for n in names
                           if n.startswith(prefix) and "/" not in n[len(prefix):] and n.endswith(_CODE_SUFFIXES)}
                folder = stack_dir / module["Dir"]
                present = {p.name: p for p in code_files(folder)} if folder.is_dir() else {}
                shown = module["Dir"].rstrip("/")
                for name in sorted(set(carried) | set(present)):
                    if name not in present:
                        out.append(f"{shown}/{name} is in the plan and not in this checkout")
                    elif name not in carried:
                        out.append(f"{shown}/{name} is in this checkout and not in the plan")
                    elif archive.read(carried[name]) != read_code(present[name]):
                        out.append(f"{shown}/{name} differs")
            return out
    except (OSError, zipfile.BadZipFile) as exc:
        return [f"the plan file cannot be read ({exc})"]


def variable_differences(plan_json: dict[str, Any], inputs: dict[str, Any], texts: dict[str, str]) -> list[str]:
    """The inputs strata passes whose value in the plan (``terraform show -json``) is another one. ``texts``: the
    ``TF_VAR_<name>`` texts strata passes (a variable without a type takes the text itself)."""
    variables = plan_json.get("variables") or {}
    out = []
    for name, value in sorted(inputs.items()):
        entry = variables.get(name)
        if not isinstance(entry, dict) or "value" not in entry:
            continue  # a variable the stack does not declare: terraform ignores the input
        planned = entry["value"]
        if not _same(planned, value) and not (isinstance(planned, str) and planned == texts.get(f"TF_VAR_{name}")):
            out.append(f"variable {name!r}")
    return out


def _same(planned: Any, given: Any) -> bool:
    """Whether terraform's typed value ``planned`` is the input ``given`` (passed as TF_VAR_ text or HCL: a
    number or bool input arrives typed, a string one may become a number or bool)."""
    if planned == given and type(planned) is type(given):
        return True
    if isinstance(planned, dict) and isinstance(given, dict):
        return planned.keys() == given.keys() and all(_same(planned[k], given[k]) for k in planned)
    if isinstance(planned, list) and isinstance(given, (list, tuple)):
        return len(planned) == len(given) and all(_same(a, b) for a, b in zip(planned, given, strict=True))
    if isinstance(planned, (dict, list)) or isinstance(given, (dict, list)):
        return False
    return _scalar(planned) == _scalar(given)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(float(value))
    if value is None:
        return "null"
    text = str(value)
    try:
        return repr(float(text))
    except ValueError:
        return text
