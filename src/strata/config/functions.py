"""The functions strata.hcl expressions may call.

They follow Terraform's functions of the same name (arguments, results, errors), so a team's
habits carry over. Every function here is pure except ``file``/``fileexists``, which read files
relative to the strata.hcl that calls them; the files read are recorded for change detection.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import math
import os
import re
from collections.abc import Callable
from typing import Any

from strata.config.limits import MAX_FORMAT_WIDTH, MAX_STRING
from strata.errors import FunctionError as FunctionError


def type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def to_string(value: Any, what: str = "value") -> str:
    """Convert a primitive to a string the way HCL does (``true``, ``1.5``); refuse collections."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    if value is None:
        raise FunctionError(f"{what} is null")
    raise FunctionError(f"{what} must be a string, got {type_name(value)}")


def to_number(value: Any, what: str = "value") -> int | float:
    if isinstance(value, bool):
        raise FunctionError(f"{what} must be a number, got bool")
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise FunctionError(f"{what} must be a number, got {value!r}") from None
        return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
    raise FunctionError(f"{what} must be a number, got {type_name(value)}")


def to_int(value: Any, what: str = "value") -> int:
    number = to_number(value, what)
    if isinstance(number, float):
        if not number.is_integer():
            raise FunctionError(f"{what} must be a whole number, got {number}")
        return int(number)
    return number


def _list(value: Any, what: str = "argument") -> list[Any]:
    if isinstance(value, list):
        return value
    raise FunctionError(f"{what} must be a list, got {type_name(value)}")


def _map(value: Any, what: str = "argument") -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise FunctionError(f"{what} must be a map or object, got {type_name(value)}")


def _arity(name: str, args: list[Any], low: int, high: int | None = None) -> None:
    high = low if high is None else high
    if len(args) < low or (high >= 0 and len(args) > high):
        if low == high:
            want = f"{low} argument{'s' if low != 1 else ''}"
        elif high < 0:
            want = f"at least {low} argument{'s' if low != 1 else ''}"
        else:
            want = f"{low} to {high} arguments"
        raise FunctionError(f"{name}() takes {want}, got {len(args)}")


# -- strings -----------------------------------------------------------------------------------------

_FORMAT_RE = re.compile(r"%(?P<flags>[-+# 0]*)(?P<width>\d+)?(?:\.(?P<prec>\d+))?(?P<verb>[a-zA-Z%])")


def _format(args: list[Any]) -> str:
    _arity("format", args, 1, -1)
    spec = to_string(args[0], "format string")
    values = list(args[1:])
    position = 0

    def sub(m: re.Match[str]) -> str:
        nonlocal position
        verb = m.group("verb")
        if verb == "%":
            return "%"
        if position >= len(values):
            raise FunctionError(f"format: not enough arguments for {m.group(0)!r}")
        value = values[position]
        position += 1
        flags, width, prec = m.group("flags"), m.group("width") or "", m.group("prec")
        for number in (width, prec):
            if number and (len(number) > 6 or int(number) > MAX_FORMAT_WIDTH):
                raise FunctionError(f"format: {m.group(0)[:20]!r}: widths and precisions above "
                                    f"{MAX_FORMAT_WIDTH} are not supported")
        py_prec = f".{prec}" if prec is not None else ""
        if verb in "sv":
            text = (_json(value) if isinstance(value, list | dict)
                    else to_string(value, "format argument"))
            if prec is not None:
                text = text[: int(prec)]
            return f"{text:{'<' if '-' in flags else '>'}{width}}" if width else text
        if verb == "q":
            return json.dumps(to_string(value, "format argument"))
        if verb == "t":
            if not isinstance(value, bool):
                raise FunctionError("format: %t needs a bool")
            return "true" if value else "false"
        if verb in "dbxXo":
            whole = to_int(value, "format argument")
            return f"{whole:{_py_flags(flags)}{width}{verb}}"
        if verb in "feEgG":
            real = float(to_number(value, "format argument"))
            return f"{real:{_py_flags(flags)}{width}{py_prec}{verb}}"
        raise FunctionError(f"format: unsupported verb %{verb}")

    result = _FORMAT_RE.sub(sub, spec)
    if position < len(values):
        raise FunctionError(f"format: too many arguments ({len(values)} given, {position} used)")
    return result


def _py_flags(flags: str) -> str:
    out = ""
    if "-" in flags:
        out += "<"
    if "+" in flags:
        out += "+"
    elif " " in flags:
        out += " "
    if "0" in flags and "-" not in flags:
        out += "0"
    return out


def _json(value: Any) -> str:
    """JSON as Terraform's jsonencode writes it: compact, keys sorted, <, > and & escaped."""
    text = json.dumps(value, separators=(",", ":"), sort_keys=True, ensure_ascii=False)
    return (text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _split(separator: str, text: str) -> list[str]:
    return list(text) if separator == "" else text.split(separator)


def _regex(pattern: str) -> Any:
    """A compiled RE2 pattern, as Terraform's regex functions use: linear time whatever the pattern and
    the text (Python's backtracking ``re`` hangs on ``(a+)+$``), and the same syntax Terraform accepts."""
    import re2  # imported on first use: most repositories never call a regex function

    options = re2.Options()
    options.log_errors = False  # RE2 would print its own copy of the error on stderr
    try:
        return re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode(errors="replace") if exc.args and isinstance(exc.args[0], bytes) else str(exc)
        raise FunctionError(f"replace: invalid regular expression /{pattern}/: {reason}") from None


def _replace(args: list[Any]) -> str:
    _arity("replace", args, 3)
    text, old, new = (to_string(a, "argument") for a in args)
    if len(old) > 1 and old.startswith("/") and old.endswith("/"):
        pattern = _regex(old[1:-1])
        template = re.sub(r"\$(\d+)", r"\\\1", new)
        # every match adds at most the template plus, per group reference, the whole text
        references = len(re.findall(r"\$\d+", new))
        matches = sum(1 for _ in pattern.finditer(text)) if new else 0
        _check_result_size(len(text) + matches * (len(new) + references * len(text)))
        return str(pattern.sub(template, text))
    if new and len(new) > len(old):
        _check_result_size(len(text) + (len(text) + 1 if old == "" else text.count(old)) * (len(new) - len(old)))
    return text.replace(old, new)


def _check_result_size(size: int) -> None:
    """Refuse before building a string bigger than strata handles (a replace() that multiplies its input)."""
    if size > MAX_STRING:
        raise FunctionError(f"replace: the result would be too long (up to {size} characters; "
                            f"the limit is {MAX_STRING})")


def _join(args: list[Any]) -> str:
    _arity("join", args, 2, -1)
    sep = to_string(args[0], "separator")
    items: list[str] = []
    for lst in args[1:]:
        items.extend(to_string(v, "list element") for v in _list(lst))
    return sep.join(items)


def _substr(args: list[Any]) -> str:
    _arity("substr", args, 3)
    text = to_string(args[0])
    offset: int = to_int(args[1], "offset")
    length: int = to_int(args[2], "length")
    if offset < 0:
        offset = max(len(text) + offset, 0)
    return text[offset:] if length < 0 else text[offset:offset + length]


def _trim(args: list[Any]) -> str:
    _arity("trim", args, 2)
    return to_string(args[0]).strip(to_string(args[1]))


# -- collections -------------------------------------------------------------------------------------

def _lookup(args: list[Any]) -> Any:
    _arity("lookup", args, 2, 3)
    mapping = _map(args[0], "lookup: first argument")
    key = to_string(args[1], "lookup: key")
    if key in mapping:
        return mapping[key]
    if len(args) == 3:
        return args[2]
    raise FunctionError(f"lookup: the map has no key {key!r} and no default was given")


def _merge(args: list[Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i, value in enumerate(args):
        if value is None:
            continue
        out.update(_map(value, f"merge: argument {i + 1}"))
    return out


def _concat(args: list[Any]) -> list[Any]:
    out: list[Any] = []
    for i, value in enumerate(args):
        out.extend(_list(value, f"concat: argument {i + 1}"))
    return out


def _flatten(args: list[Any]) -> list[Any]:
    _arity("flatten", args, 1)

    def flat(value: list[Any]) -> list[Any]:
        out: list[Any] = []
        for v in value:
            out.extend(flat(v) if isinstance(v, list) else [v])
        return out

    return flat(_list(args[0]))


def _distinct(args: list[Any]) -> list[Any]:
    _arity("distinct", args, 1)
    out: list[Any] = []
    for v in _list(args[0]):
        if v not in out:
            out.append(v)
    return out


def _element(args: list[Any]) -> Any:
    _arity("element", args, 2)
    lst = _list(args[0])
    if not lst:
        raise FunctionError("element: cannot use element() on an empty list")
    return lst[to_int(args[1], "index") % len(lst)]


def _index(args: list[Any]) -> int:
    _arity("index", args, 2)
    lst = _list(args[0])
    if args[1] not in lst:
        raise FunctionError("index: the value is not in the list")
    return lst.index(args[1])


def _length(args: list[Any]) -> int:
    _arity("length", args, 1)
    value = args[0]
    if isinstance(value, str | list | dict):
        return len(value)
    raise FunctionError(f"length: cannot take the length of {type_name(value)}")


def _keys(args: list[Any]) -> list[str]:
    _arity("keys", args, 1)
    return sorted(_map(args[0]))


def _values(args: list[Any]) -> list[Any]:
    _arity("values", args, 1)
    mapping = _map(args[0])
    return [mapping[k] for k in sorted(mapping)]


def _slice(args: list[Any]) -> list[Any]:
    _arity("slice", args, 3)
    lst = _list(args[0])
    start, end = to_int(args[1], "start"), to_int(args[2], "end")
    if not 0 <= start <= end <= len(lst):
        raise FunctionError(f"slice: indices {start}..{end} are out of range for a list of {len(lst)}")
    return lst[start:end]


def _range(args: list[Any]) -> list[int | float]:
    _arity("range", args, 1, 3)
    nums = [to_number(a, "range argument") for a in args]
    start: int | float = 0
    step: int | float = 1
    if len(nums) == 1:
        end = nums[0]
        step = 1 if end >= 0 else -1
    else:
        start, end = nums[0], nums[1]
        step = nums[2] if len(nums) == 3 else (1 if end >= start else -1)
    if step == 0:
        raise FunctionError("range: step must not be zero")
    out: list[int | float] = []
    value = start
    while (step > 0 and value < end) or (step < 0 and value > end):
        out.append(value)
        value += step
        if len(out) > 1024:
            raise FunctionError("range: more than 1024 elements")
    return out


def _zipmap(args: list[Any]) -> dict[str, Any]:
    _arity("zipmap", args, 2)
    keys, values = _list(args[0]), _list(args[1])
    if len(keys) != len(values):
        raise FunctionError("zipmap: the key and value lists have different lengths")
    return {to_string(k, "key"): v for k, v in zip(keys, values, strict=True)}


def _coalesce(args: list[Any]) -> Any:
    for value in args:
        if value is not None and value != "":
            return value
    raise FunctionError("coalesce: no non-null, non-empty argument")


def _toset(values: list[Any]) -> list[Any]:
    unique = _distinct([values])
    # Terraform orders a set of strings lexically; other element types keep first-seen order
    return sorted(unique) if all(isinstance(v, str) for v in unique) else unique


def _sort(args: list[Any]) -> list[str]:
    _arity("sort", args, 1)
    return sorted(to_string(v, "list element") for v in _list(args[0]))


# -- numbers -----------------------------------------------------------------------------------------

def _minmax(pick: Callable[..., Any], name: str) -> Callable[[list[Any]], Any]:
    def fn(args: list[Any]) -> Any:
        _arity(name, args, 1, -1)
        return pick(to_number(a, f"{name} argument") for a in args)

    return fn


# -- networks ----------------------------------------------------------------------------------------

def _network(value: Any, fn: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    text = to_string(value, f"{fn}: prefix")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        raise FunctionError(f"{fn}: {text!r} is not a CIDR prefix (like \"10.0.0.0/16\")") from None


def _cidrsubnet(args: list[Any]) -> str:
    _arity("cidrsubnet", args, 3)
    net = _network(args[0], "cidrsubnet")
    newbits, netnum = to_int(args[1], "newbits"), to_int(args[2], "netnum")
    new_prefix = net.prefixlen + newbits
    if newbits < 0 or new_prefix > net.max_prefixlen:
        raise FunctionError(f"cidrsubnet: {net} has no room for {newbits} more bits")
    if not 0 <= netnum < 2 ** newbits:
        raise FunctionError(f"cidrsubnet: netnum {netnum} does not fit in {newbits} bits")
    size = 2 ** (net.max_prefixlen - new_prefix)
    start = int(net.network_address) + netnum * size
    return str(ipaddress.ip_network((start, new_prefix)))


def _cidrsubnets(args: list[Any]) -> list[str]:
    _arity("cidrsubnets", args, 1, -1)
    net = _network(args[0], "cidrsubnets")
    out: list[str] = []
    current = int(net.network_address)
    for bits in args[1:]:
        new_prefix = net.prefixlen + to_int(bits, "newbits")
        if new_prefix > net.max_prefixlen:
            raise FunctionError(f"cidrsubnets: {net} has no room for {bits} more bits")
        size = 2 ** (net.max_prefixlen - new_prefix)
        current = -(-current // size) * size  # align up
        sub = ipaddress.ip_network((current, new_prefix))
        if not sub.subnet_of(net):  # type: ignore[arg-type]
            raise FunctionError(f"cidrsubnets: not enough room in {net}")
        out.append(str(sub))
        current += size
    return out


def _cidrhost(args: list[Any]) -> str:
    _arity("cidrhost", args, 2)
    net = _network(args[0], "cidrhost")
    hostnum = to_int(args[1], "hostnum")
    if hostnum < 0:
        hostnum += net.num_addresses
    if not 0 <= hostnum < net.num_addresses:
        raise FunctionError(f"cidrhost: host {args[1]} is outside {net}")
    return str(net.network_address + hostnum)


def _cidrnetmask(args: list[Any]) -> str:
    _arity("cidrnetmask", args, 1)
    net = _network(args[0], "cidrnetmask")
    if net.version != 4:
        raise FunctionError("cidrnetmask: only IPv4 prefixes have a netmask")
    return str(net.netmask)


# -- encoding ----------------------------------------------------------------------------------------

def _not_finite(text: str) -> float:
    raise FunctionError(f"jsondecode: {text} is not a number JSON allows")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise FunctionError(f"jsondecode: the number {text[:20]} is too large")
    return number


def _jsondecode(args: list[Any]) -> Any:
    _arity("jsondecode", args, 1)
    try:
        value = json.loads(to_string(args[0]), parse_constant=_not_finite, parse_float=_finite)
    except json.JSONDecodeError as exc:
        raise FunctionError(f"jsondecode: invalid JSON: {exc}") from None
    except RecursionError:
        raise FunctionError("jsondecode: the JSON is nested too deeply") from None
    if "\\u" in args[0]:
        try:
            json.dumps(value, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError:
            raise FunctionError("jsondecode: a \\u escape in the JSON is half of a surrogate pair, "
                                "not a character") from None
    return value


def _tobool(args: list[Any]) -> bool | None:
    _arity("tobool", args, 1)
    value = args[0]
    if value is None or isinstance(value, bool):
        return value
    if value in ("true", "false"):
        return bool(value == "true")
    raise FunctionError(f"tobool: cannot convert {value!r} to bool")


def _one(name: str, fn: Callable[[Any], Any]) -> Callable[[list[Any]], Any]:
    def wrapper(args: list[Any]) -> Any:
        _arity(name, args, 1)
        return fn(args[0])

    return wrapper


def _two(name: str, fn: Callable[[Any, Any], Any]) -> Callable[[list[Any]], Any]:
    def wrapper(args: list[Any]) -> Any:
        _arity(name, args, 2)
        return fn(args[0], args[1])

    return wrapper


def _b64decode(value: Any) -> str:
    try:
        return base64.b64decode(to_string(value), validate=True).decode()
    except ValueError:
        raise FunctionError("base64decode: not valid base64") from None


FUNCTIONS: dict[str, Callable[[list[Any]], Any]] = {
    # strings
    "lower": _one("lower", lambda s: to_string(s).lower()),
    "upper": _one("upper", lambda s: to_string(s).upper()),
    "title": _one("title", lambda s: re.sub(r"\b[a-z]", lambda m: m.group(0).upper(), to_string(s))),
    "trimspace": _one("trimspace", lambda s: to_string(s).strip()),
    "trim": _trim,
    "trimprefix": _two("trimprefix", lambda s, p: to_string(s).removeprefix(to_string(p))),
    "trimsuffix": _two("trimsuffix", lambda s, p: to_string(s).removesuffix(to_string(p))),
    "startswith": _two("startswith", lambda s, p: to_string(s).startswith(to_string(p))),
    "endswith": _two("endswith", lambda s, p: to_string(s).endswith(to_string(p))),
    "strcontains": _two("strcontains", lambda s, p: to_string(p) in to_string(s)),
    "replace": _replace,
    "format": _format,
    "join": _join,
    "split": _two("split", lambda sep, s: _split(to_string(sep), to_string(s))),
    "substr": _substr,
    "tostring": _one("tostring", lambda v: None if v is None else to_string(v)),
    "tonumber": _one("tonumber", lambda v: None if v is None else to_number(v)),
    "tobool": _tobool,
    # collections
    "length": _length,
    "lookup": _lookup,
    "merge": _merge,
    "concat": _concat,
    "contains": _two("contains", lambda lst, v: v in _list(lst)),
    "element": _element,
    "index": _index,
    "flatten": _flatten,
    "distinct": _distinct,
    "compact": _one("compact", lambda lst: [v for v in _list(lst) if v not in (None, "")]),
    "keys": _keys,
    "values": _values,
    "slice": _slice,
    "sort": _sort,
    "reverse": _one("reverse", lambda lst: list(reversed(_list(lst)))),
    "range": _range,
    "zipmap": _zipmap,
    "coalesce": _coalesce,
    "tolist": _one("tolist", lambda v: list(_list(v))),
    "toset": _one("toset", lambda v: _toset(_list(v))),
    "tomap": _one("tomap", lambda v: dict(_map(v))),
    "alltrue": _one("alltrue", lambda lst: all(v is True for v in _list(lst))),
    "anytrue": _one("anytrue", lambda lst: any(v is True for v in _list(lst))),
    # numbers
    "min": _minmax(min, "min"),
    "max": _minmax(max, "max"),
    "abs": _one("abs", lambda n: abs(to_number(n))),
    "ceil": _one("ceil", lambda n: math.ceil(to_number(n))),
    "floor": _one("floor", lambda n: math.floor(to_number(n))),
    # networks
    "cidrsubnet": _cidrsubnet,
    "cidrsubnets": _cidrsubnets,
    "cidrhost": _cidrhost,
    "cidrnetmask": _cidrnetmask,
    # encoding and hashing
    "jsonencode": _one("jsonencode", lambda v: _json(v)),
    "jsondecode": _jsondecode,
    "base64encode": _one("base64encode", lambda s: base64.b64encode(to_string(s).encode()).decode()),
    "base64decode": _one("base64decode", _b64decode),
    "md5": _one("md5", lambda s: hashlib.md5(to_string(s).encode()).hexdigest()),
    "sha1": _one("sha1", lambda s: hashlib.sha1(to_string(s).encode()).hexdigest()),
    "sha256": _one("sha256", lambda s: hashlib.sha256(to_string(s).encode()).hexdigest()),
    # paths
    "basename": _one("basename", lambda s: os.path.basename(to_string(s))),
    "dirname": _one("dirname", lambda s: os.path.dirname(to_string(s))),
}

# Functions the evaluator implements itself: they need the calling file or lazy arguments.
SPECIAL_FUNCTIONS = ("file", "fileexists", "try", "can")


def is_function(name: str) -> bool:
    return name in FUNCTIONS or name in SPECIAL_FUNCTIONS


def function_names() -> list[str]:
    return sorted([*FUNCTIONS, *SPECIAL_FUNCTIONS])
