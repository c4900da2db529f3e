"""Load a repository: files -> parsed config -> evaluated stacks.

Each strata.hcl is read and parsed once per run (cached by content between runs). A stack's
configuration is the merge of every strata.hcl from the root down to its folder, deeper files
winning, at any depth. Locals and dimensions are evaluated lazily per stack, so a local is computed
only if something uses it, and cycles are reported with the chain that forms them.
"""

from __future__ import annotations

import posixpath
import re
from pathlib import Path
from typing import Any

from strata.backends import BACKEND_TYPES, get_backend
from strata.config import ast
from strata.config.cache import CACHE_NAME, ParseCache
from strata.config.discover import CONFIG_NAME, ancestors, config_dirs, read_config
from strata.config.evaluate import Context, Lazy, Taint, check_size, evaluate, object_key
from strata.config.files import ConfigFile, DependencyDecl, decode
from strata.config.functions import FunctionError, to_string, type_name
from strata.config.limits import MAX_LOCAL_CHAIN, max_file_size, shorten
from strata.config.policy import unmatched_skips
from strata.config.settings import Settings, load_settings
from strata.errors import ConfigError, Source, StaticConfigError
from strata.model import dimensions as dims
from strata.model.repository import Repository
from strata.model.stack import BackendConfig, Deferred, Dependency, Setting, Stack

CONTEXT_NAMES = (*dims.DIMENSION_NAMES, "stack")
FAILED: Any = object()  # what _StackBuilder.attempt returns when evaluation failed
_VARIABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")  # Terraform's variable names
STACK_CONTEXT = ("path", "name", "state_key")


def load(root: Path, cwd: Path | None = None, use_cache: bool = True) -> Repository:
    """Load every stack under ``root``; problems are collected in ``Repository.diagnostics``."""
    cwd = (cwd or Path.cwd()).resolve()
    root = root.resolve()
    repo = Repository(root=root, cwd=cwd, settings=Settings())

    directories = config_dirs(root)
    limit = max_file_size()
    displays: list[str] = []
    contents: list[tuple[str, bytes]] = []
    unreadable: dict[int, ConfigError] = {}
    for i, directory in enumerate(directories):
        rel = f"{directory}/{CONFIG_NAME}" if directory else CONFIG_NAME
        displays.append(repo.display(rel))
        try:
            contents.append((displays[-1], read_config(root / rel, displays[-1], limit)))
        except ConfigError as exc:
            unreadable[i] = exc  # like a syntax error: the stacks below it are not evaluated

    cache = ParseCache(root / ".strata" / "cache" / CACHE_NAME if use_cache else None)
    readable = iter(cache.parse_all(contents))
    cache.save()
    parsed = [unreadable[i] if i in unreadable else next(readable) for i in range(len(directories))]

    configs: dict[str, ConfigFile] = {}
    broken: set[str] = set()
    for directory, display, result in zip(directories, displays, parsed, strict=True):
        if isinstance(result, ConfigError):
            repo.add(result.diagnostic())
            broken.add(directory)
            continue
        cfg, errors = decode(result, directory, display, str(root / directory) if directory else str(root))
        for err in errors:
            repo.add(err.diagnostic())
        configs[directory] = cfg

    root_cfg = configs.get("")
    if root_cfg is not None:
        repo.settings, errors = load_settings(root_cfg)
        for err in errors:
            repo.add(err.diagnostic())

    repo.unreadable |= broken
    for directory in directories:
        stack_cfg = configs.get(directory)
        if stack_cfg is None or stack_cfg.stack is None:
            continue
        chain_dirs = [d for d in ancestors(directory) if d in configs or d in broken]
        if any(d in broken for d in chain_dirs):
            repo.unreadable.add(directory)
            continue  # its syntax error is already reported; evaluating would only add noise
        chain = [configs[d] for d in chain_dirs]
        stack, problems = _StackBuilder(repo, directory, chain).build()
        repo.stacks[stack.path] = stack
        for problem in problems:
            repo.add(problem.diagnostic())
    for warning in unmatched_skips(repo.settings.policy, repo.stacks):
        repo.add(warning)
    return repo


class _Locals(Lazy):
    def __init__(self, builder: _StackBuilder) -> None:
        self.b = builder
        self.values: dict[str, Any] = {}
        self.failed: dict[str, ConfigError] = {}  # evaluated once: a long chain is not walked again per local
        self.active: list[str] = []

    def names(self) -> list[str]:
        return list(self.b.local_defs)

    def get(self, name: str, node: ast.Expr, ctx: Context) -> Any:
        if name in self.values:
            return self.values[name]
        if name in self.failed:
            raise self.failed[name]
        if name not in self.b.local_defs:
            known = ", ".join(sorted(self.b.local_defs)) or "none are defined"
            raise ctx.error(f"unknown local.{shorten(name)} for stack {self.b.path or '.'} "
                            f"(locals: {shorten(known, 300)})", node)
        if name in self.active:
            chain = " -> ".join(f"local.{n}" for n in [*self.active[self.active.index(name):], name])
            raise ctx.error(f"local.{name} depends on itself: {chain}", node)
        attr, cfg = self.b.local_defs[name]
        if len(self.active) >= MAX_LOCAL_CHAIN:
            raise ctx.error(f"local.{name}: locals read other locals more than {MAX_LOCAL_CHAIN} levels deep "
                            f"(local.{self.active[0]} -> ... -> local.{name})", node)
        self.active.append(name)
        local_ctx = self.b.context(cfg)
        try:
            value = evaluate(attr.expr, local_ctx)
            if isinstance(value, list | dict):  # strings and numbers are bounded where they are made
                check_size(value, local_ctx, attr.expr, f"local.{name}")
        except RecursionError:
            # the nesting of each expression is bounded when it is parsed; their sum may still be too deep
            self.failed[name] = ConfigError(f"local.{name} is nested too deeply (locals within locals within ...)",
                                            cfg.source(attr.line))
            raise self.failed[name] from None
        except ConfigError as exc:
            self.failed[name] = exc
            raise
        finally:
            self.active.pop()
        self.values[name] = value
        return value


class _StackContext(Lazy):
    """The ``strata`` object: the stack's dimensions, path, name and state key."""

    def __init__(self, builder: _StackBuilder) -> None:
        self.b = builder

    def names(self) -> list[str]:
        return list(CONTEXT_NAMES)

    def get(self, name: str, node: ast.Expr, ctx: Context) -> Any:
        if name == "stack":
            return _StackInfo(self.b)
        if name not in dims.DIMENSION_NAMES:
            raise ctx.error(f"unknown strata.{shorten(name)} (available: {', '.join(CONTEXT_NAMES)})", node)
        return self.b.dimension(name, node, ctx).value


class _StackInfo(Lazy):
    def __init__(self, builder: _StackBuilder) -> None:
        self.b = builder

    def names(self) -> list[str]:
        return list(STACK_CONTEXT)

    def get(self, name: str, node: ast.Expr, ctx: Context) -> Any:
        if name == "path":
            return self.b.path
        if name == "name":
            return self.b.stack_name(ctx)
        if name == "state_key":
            return self.b.state_key(node, ctx)
        raise ctx.error(f"unknown strata.stack.{shorten(name)} (available: {', '.join(STACK_CONTEXT)})", node)


class _StackBuilder:
    """Evaluates one stack's merged configuration."""

    def __init__(self, repo: Repository, path: str, chain: list[ConfigFile]) -> None:
        self.repo = repo
        self.settings = repo.settings
        self.path = path
        self.chain = chain
        self.own = chain[-1]
        self.errors: list[ConfigError] = []
        self.reads: set[str] = set()
        self.work = [0]  # for-expression iterations in this stack (bounded: see limits)
        self.local_defs: dict[str, tuple[ast.Attribute, ConfigFile]] = {}
        self.dim_defs: dict[str, tuple[ast.Attribute, ConfigFile]] = {}
        for cfg in chain:
            for name, attr in cfg.locals.items():
                self.local_defs[name] = (attr, cfg)
            for name, attr in cfg.dimensions.items():
                self.dim_defs[name] = (attr, cfg)
        self.locals = _Locals(self)
        self.context_obj = _StackContext(self)
        self.dim_values: dict[str, Setting] = {}
        self.dim_active: list[str] = []
        segments = path.split("/") if path else []
        self.inferred = (dims.infer(segments, self.settings.environment_names)
                         if self.settings.infer_dimensions else {})
        self.backend_type = next((c.backend.type for c in reversed(chain) if c.backend), None)
        self._name: str | None = None
        self._naming = False  # the stack name is being evaluated: strata.stack.name would read itself
        self._state_key: str | None = None
        self.dependency_outputs: dict[str, dict[str, Any]] | None = None

    # -- scope ---------------------------------------------------------------------------------------

    def root(self, name: str, node: ast.Traversal, ctx: Context) -> Any:
        if name == "local":
            return self.locals
        if name == "strata":
            return self.context_obj
        if name == "dependency":
            if self.dependency_outputs is None:
                raise ctx.error("dependency outputs can be used only in inputs (they are read when the "
                                "stack runs)", node)
            return self.dependency_outputs
        hint = ""
        if name == "var":
            hint = "; strata.hcl has no variables: use local.<name> or set inputs"
        elif name in dims.DIMENSION_NAMES:
            hint = f"; did you mean strata.{name}?"
        raise StaticConfigError(f"unknown reference {shorten(node.text())!r}{hint} (use local.*, strata.* or "
                                f"dependency.<name>.outputs.*)", Source(ctx.file, node.line))

    def context(self, cfg: ConfigFile) -> Context:
        return Context(self, cfg.display, cfg.absdir, self.reads, work=self.work)

    def dimension(self, name: str, node: ast.Expr | None = None, ctx: Context | None = None) -> Setting:
        if name in self.dim_values:
            return self.dim_values[name]
        if name in self.dim_active:
            chain = " -> ".join(f"strata.{n}" for n in [*self.dim_active[self.dim_active.index(name):], name])
            assert ctx is not None and node is not None
            raise ctx.error(f"strata.{name} depends on itself: {chain}", node)
        setting: Setting
        if name in self.dim_defs:
            attr, cfg = self.dim_defs[name]
            self.dim_active.append(name)
            try:
                value = evaluate(attr.expr, self.context(cfg))
            finally:
                self.dim_active.pop()
            if isinstance(value, int | float) and not isinstance(value, bool) and name == "account_id":
                value = str(value)
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a string, got {type_name(value)}", cfg.source(attr.line))
            setting = Setting(value, cfg.source(attr.line))
        elif name in self.inferred:
            value, folder = self.inferred[name]
            setting = Setting(value, Source(note=f'inferred from folder "{folder}"'))
        elif name == "cloud" and self.backend_type in dims.BACKEND_CLOUDS:
            setting = Setting(dims.BACKEND_CLOUDS[self.backend_type],
                              Source(note=f'inferred from backend "{self.backend_type}"'))
        else:
            setting = Setting(None, Source(note="not set"))
        self.dim_values[name] = setting
        return setting

    def stack_name(self, ctx: Context | None = None) -> str:
        if self._name is None:
            attr = self.own.stack.attributes.get("name") if self.own.stack else None
            if attr is not None:
                if self._naming:
                    raise ConfigError("the stack name depends on itself (strata.stack.name)",
                                      self.own.source(attr.line))
                self._naming = True
                try:
                    value = evaluate(attr.expr, self.context(self.own))
                finally:
                    self._naming = False
                if not isinstance(value, str):
                    raise ConfigError(f"stack name must be a string, got {type_name(value)}",
                                      self.own.source(attr.line))
                self._name = value
            else:
                self._name = self.path.rsplit("/", 1)[-1] if self.path else self.repo.root.name
        return self._name

    def state_key(self, node: ast.Expr | None = None, ctx: Context | None = None) -> str:
        if self._state_key is None:
            values = {n: self.dimension(n, node, ctx).value for n in ("environment", "region", "layer", "client")}
            self._state_key = default_state_key(self.path, values)
        return self._state_key

    # -- building ------------------------------------------------------------------------------------

    def attempt(self, fn: Any, *args: Any) -> Any:
        """Call ``fn``; on a ConfigError record it and return :data:`FAILED`."""
        try:
            return fn(*args)
        except ConfigError as exc:
            if not any(exc is seen for seen in self.errors):  # a failed local is raised to every reader
                self.errors.append(exc)
            return FAILED
        except RecursionError:  # a safety net: nesting is bounded where it is written
            self.errors.append(ConfigError("the configuration of this stack is nested too deeply",
                                           self.own.source(self.own.stack.line if self.own.stack else 0)))
            return FAILED

    def build(self) -> tuple[Stack, list[ConfigError]]:
        own = self.own
        assert own.stack is not None
        stack = Stack(path=self.path, name=self.path.rsplit("/", 1)[-1] if self.path else ".",
                      config_file=own.display, source=own.source(own.stack.line),
                      config_chain=tuple(c.display for c in self.chain))
        name = self.attempt(self.stack_name)
        if name is not FAILED:
            stack.name = name
            attr = own.stack.attributes.get("name")
            reason = dims.unsafe_name_reason(name) if attr is not None else None
            if attr is not None and reason:
                self.errors.append(ConfigError(f"stack name {shorten(name)!r} is not safe in state paths: {reason}",
                                               own.source(attr.line)))
        self.attempt(self._describe, stack)
        for dim in dims.DIMENSION_NAMES:
            setting = self.attempt(self.dimension, dim)
            if setting is not FAILED and setting.value is not None:
                stack.dimensions[dim] = setting
                reason = dims.unsafe_name_reason(setting.value)
                if reason:
                    self.errors.append(ConfigError(
                        f"{dim} {shorten(str(setting.value))!r} is not safe in state paths and backend names: {reason}",
                        setting.source if setting.source.file else own.source(own.stack.line)))
        for local_name in self.local_defs:
            attr, cfg = self.local_defs[local_name]
            value = self.attempt(self.locals.get, local_name, attr.expr, self.context(cfg))
            if value is not FAILED:
                stack.locals[local_name] = Setting(value, cfg.source(attr.line))
        key = self.attempt(self.state_key)
        stack.state_key = "" if key is FAILED else key
        stack.dependencies = self._dependencies()
        backend = self.attempt(self._backend, stack.state_key)
        stack.backend = None if backend is FAILED else backend
        stack.bootstrap = self._bootstrap()
        stack.inputs = self._inputs(stack)
        stack.read_files = frozenset(self.reads)
        return stack, self.errors

    def _describe(self, stack: Stack) -> None:
        decl = self.own.stack
        assert decl is not None
        ctx = self.context(self.own)
        if "description" in decl.attributes:
            attr = decl.attributes["description"]
            value = evaluate(attr.expr, ctx)
            if not isinstance(value, str):
                raise ConfigError("description must be a string", self.own.source(attr.line))
            stack.description = value
        if "tags" in decl.attributes:
            attr = decl.attributes["tags"]
            value = evaluate(attr.expr, ctx)
            if not isinstance(value, list) or not all(isinstance(t, str) for t in value):
                raise ConfigError("tags must be a list of strings", self.own.source(attr.line))
            stack.tags = tuple(value)

    def _dependency_decls(self) -> list[tuple[DependencyDecl, ConfigFile]]:
        """Dependency blocks from this stack's file, and from every non-stack file above it."""
        decls: dict[str, tuple[DependencyDecl, ConfigFile]] = {}
        for cfg in self.chain:
            if cfg.stack is not None and cfg is not self.own:
                continue  # a parent stack's dependencies are its own
            for decl in cfg.dependencies:
                decls[decl.name] = (decl, cfg)
        return list(decls.values())

    def _resolve_path(self, value: Any, cfg: ConfigFile, line: int, what: str) -> str | None:
        try:
            rel = to_string(value, what)
        except FunctionError as exc:
            self.errors.append(ConfigError(str(exc), cfg.source(line)))
            return None
        if rel.startswith("/") or (len(rel) > 1 and rel[1] == ":"):
            self.errors.append(ConfigError(f"{what} {shorten(rel)!r} must be relative to the folder of this strata.hcl",
                                           cfg.source(line)))
            return None
        joined = posixpath.normpath(posixpath.join(cfg.directory or ".", rel))
        if joined == ".":
            return ""
        if joined.startswith("../") or joined == "..":
            self.errors.append(ConfigError(f"{what} {shorten(rel)!r} leads outside the repository", cfg.source(line)))
            return None
        return joined

    def _dependencies(self) -> list[Dependency]:
        out: list[Dependency] = []
        for decl, cfg in self._dependency_decls():
            if decl.path is None:
                continue
            ctx = self.context(cfg)
            value = self.attempt(evaluate, decl.path, ctx)
            if value is FAILED:
                continue
            path = self._resolve_path(value, cfg, decl.line, f'dependency "{decl.name}" path')
            if path is None:
                continue
            mocks = None
            if decl.mock_outputs is not None:
                mocks = self.attempt(evaluate, decl.mock_outputs, ctx)
                if mocks is FAILED:
                    mocks = None
                elif not isinstance(mocks, dict):
                    self.errors.append(ConfigError(
                        f'mock_outputs of dependency "{decl.name}" must be an object', cfg.source(decl.line)))
                    mocks = None
            out.append(Dependency(decl.name, path, cfg.source(decl.line), mocks))
        for cfg in self.chain:
            if cfg.dependency_paths is None or (cfg.stack is not None and cfg is not self.own):
                continue
            attr = cfg.dependency_paths
            value = self.attempt(evaluate, attr.expr, self.context(cfg))
            if value is FAILED:
                continue
            if not isinstance(value, list):
                self.errors.append(ConfigError("dependencies must be a list of stack paths",
                                               cfg.source(attr.line)))
                continue
            for item in value:
                path = self._resolve_path(item, cfg, attr.line, "dependency path")
                if path is not None:
                    out.append(Dependency(None, path, cfg.source(attr.line)))
        return out

    def _backend(self, state_key: str) -> BackendConfig | None:
        decl_cfg: ConfigFile | None = None
        attrs: dict[str, tuple[ast.Attribute, ConfigFile]] = {}
        backend_type = None
        for cfg in self.chain:
            if cfg.backend is None:
                continue
            if cfg.backend.type != backend_type:
                attrs = {}  # a different type below replaces the template above
            backend_type = cfg.backend.type
            decl_cfg = cfg
            for name, attr in cfg.backend.attributes.items():
                attrs[name] = (attr, cfg)
        if backend_type is None or decl_cfg is None:
            # the embedded default: local state laid out like the remote keys under the state folder
            local = get_backend("local")
            assert local is not None
            defaults = local.default_settings(state_key, self.path, self.settings.state_dir)
            return BackendConfig("local", {k: Setting(v, Source(note="embedded default"))
                                           for k, v in defaults.items()},
                                 Source(note="embedded default"), embedded=True)
        assert decl_cfg.backend is not None
        block_source = decl_cfg.source(decl_cfg.backend.line)
        backend = get_backend(backend_type)
        if backend is None:
            raise ConfigError(f'unknown backend type "{backend_type}" (strata supports: '
                              f'{", ".join(BACKEND_TYPES)})', block_source)
        settings: dict[str, Setting] = {}
        for name, (attr, cfg) in attrs.items():
            if name not in backend.attributes:
                import difflib

                close = difflib.get_close_matches(name, sorted(backend.attributes), n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.errors.append(ConfigError(f'unknown setting {shorten(name)!r} for backend "{backend_type}"{hint}',
                                               cfg.source(attr.line)))
                continue
            value = self.attempt(evaluate, attr.expr, self.context(cfg))
            if value is not FAILED:
                settings[name] = Setting(value, cfg.source(attr.line))
        for name, value in backend.default_settings(state_key, self.path, self.settings.state_dir).items():
            if name not in settings:
                settings[name] = Setting(value, Source(note="default"))
        return BackendConfig(backend_type, settings, block_source)

    def _bootstrap(self) -> dict[str, Setting]:
        attrs: dict[str, tuple[ast.Attribute, ConfigFile]] = {}
        for cfg in self.chain:
            if cfg.bootstrap is not None:
                for name, attr in cfg.bootstrap.attributes.items():
                    attrs[name] = (attr, cfg)
        out: dict[str, Setting] = {}
        for name, (attr, cfg) in attrs.items():
            value = self.attempt(evaluate, attr.expr, self.context(cfg))
            if value is not FAILED:
                out[name] = Setting(value, cfg.source(attr.line))
        return out

    # -- inputs --------------------------------------------------------------------------------------

    def _inputs(self, stack: Stack) -> dict[str, Setting]:
        merged: dict[str, Setting] = {}
        declared = {d.name: d for d in stack.dependencies if d.name}
        for cfg in self.chain:
            attr = cfg.inputs
            if attr is None:
                continue
            ctx = self.context(cfg)
            if isinstance(attr.expr, ast.ObjectExpr):
                for item in attr.expr.items:
                    key = item.key if isinstance(item.key, str) else self.attempt(
                        lambda k=item.key, c=ctx: object_key(evaluate(k, c), k, c))
                    if key is FAILED or not self._input_name_ok(key, cfg, item.line):
                        continue
                    value = self._sourced(item.value, ctx, cfg, item.line, declared, item.reads_dependency)
                    if value is not None:
                        merged[key] = _deep_merge(merged.get(key), value)
                continue
            if attr.reads_dependency:
                self.errors.append(ConfigError(
                    "inputs that read dependency outputs must be written as an object: inputs = { ... }",
                    cfg.source(attr.line)))
                continue
            value = self.attempt(evaluate, attr.expr, ctx)
            if value is FAILED:
                continue
            if not isinstance(value, dict):
                self.errors.append(ConfigError(f"inputs must be an object, got {type_name(value)}",
                                               cfg.source(attr.line)))
                continue
            for key, item_value in value.items():
                if self._input_name_ok(key, cfg, attr.line):
                    merged[key] = _deep_merge(merged.get(key), Setting(item_value, cfg.source(attr.line)))
        return merged

    def _input_name_ok(self, key: str, cfg: ConfigFile, line: int) -> bool:
        if _VARIABLE_NAME.match(key):
            return True
        self.errors.append(ConfigError(
            f"input {shorten(key)!r} is not a valid Terraform variable name (letters, digits, _ and -, "
            "not starting with a digit)", cfg.source(line)))
        return False

    def _sourced(self, expr: ast.Expr, ctx: Context, cfg: ConfigFile, line: int,
                 declared: dict[str, Dependency], reads_dependency: bool) -> Setting | None:
        source = cfg.source(line)
        if isinstance(expr, ast.ObjectExpr) and all(isinstance(i.key, str) for i in expr.items):
            children: dict[str, Setting] = {}
            for item in expr.items:
                child = self._sourced(item.value, ctx, cfg, item.line, declared, item.reads_dependency)
                if child is not None:
                    children[str(item.key)] = child
            return Setting(None, source, children)
        refs = ast.traversals(expr, "dependency") if reads_dependency else []
        if not refs:
            value = self.attempt(evaluate, expr, ctx)
            return None if value is FAILED else Setting(value, source)
        texts: list[str] = []
        for ref in refs:
            steps = ref.steps
            if len(steps) < 2 or not isinstance(steps[0], str) or steps[1] != "outputs":
                self.errors.append(ConfigError(
                    f"{shorten(ref.text())}: read outputs as dependency.<name>.outputs.<output>", cfg.source(ref.line)))
                return None
            if steps[0] not in declared:
                known = ", ".join(sorted(declared)) or "none are declared"
                self.errors.append(ConfigError(
                    f"unknown dependency {shorten(steps[0])!r} in {shorten(ref.text())} (dependencies: {known})",
                    cfg.source(ref.line)))
                return None
            declared[steps[0]].used = True
            texts.append(ref.text())
        return Setting(Deferred(expr, ctx, texts), source)


def _deep_merge(base: Setting | None, over: Setting) -> Setting:
    """Deep-merge objects key by key (deeper files win); anything else is replaced."""
    if base is None:
        return over
    base_children = _as_children(base)
    over_children = _as_children(over)
    if base_children is None or over_children is None:
        return over
    merged = dict(base_children)
    for key, value in over_children.items():
        merged[key] = _deep_merge(merged.get(key), value)
    return Setting(None, over.source, merged)


def _as_children(setting: Setting) -> dict[str, Setting] | None:
    if setting.children is not None:
        return setting.children
    if isinstance(setting.value, dict):
        return {k: Setting(v, setting.source) for k, v in setting.value.items()}
    return None


def default_state_key(path: str, values: dict[str, str | None]) -> str:
    """``<env>/<region>/<layer>/<rest of path>/terraform.tfstate``, or ``.../clients/<client>/...``."""
    segments = path.split("/") if path else []
    env, region, layer, client = (values.get(n) for n in ("environment", "region", "layer", "client"))
    parts = [p for p in (env, region) if p]
    anchor = client if client else layer
    if client:
        parts += ["clients", client]
    elif layer:
        parts.append(layer)
    taken = {v for v in (env, region, layer, client) if v}
    if anchor and anchor in segments:
        rest = segments[segments.index(anchor) + 1:]
    else:  # no layer/client folder: what follows the deepest environment/region folder
        marks = [i for i, s in enumerate(segments) if s in taken]
        rest = segments[marks[-1] + 1:] if marks else segments
    parts += [s for s in rest if s not in taken and s not in dims.STRUCTURAL_FOLDERS]
    return "/".join([*parts, "terraform.tfstate"])


def resolve_inputs(stack: Stack, outputs: dict[str, dict[str, Any]], partial: bool = False,
                   secrets: Taint | None = None) -> dict[str, Any]:
    """The inputs of ``stack`` that read dependency outputs, evaluated with ``outputs``.

    ``outputs`` maps a dependency's name to its output values (real ones, or its mock_outputs).
    Raises ConfigError (with file:line) when an expression reads an output that is not there, unless
    ``partial``: then such inputs are left out. Every value computed from one of ``secrets`` (the run's
    sensitive outputs) joins them: ``upper(dependency.db.outputs.password)`` is as secret as the password.
    """
    scope_outputs = {name: {"outputs": values} for name, values in outputs.items()}
    resolved: dict[str, Any] = {}
    for name, setting in stack.inputs.items():
        if not setting.has_deferred():
            continue
        try:
            resolved[name] = _resolve(setting, scope_outputs, secrets)
        except ConfigError:
            if not partial:
                raise
    return resolved


def _resolve(setting: Setting, scope_outputs: dict[str, dict[str, Any]], secrets: Taint | None) -> Any:
    if setting.children is not None:
        return {key: _resolve(child, scope_outputs, secrets) for key, child in setting.children.items()}
    value = setting.value
    if not isinstance(value, Deferred):
        return value
    builder = value.ctx.scope
    assert isinstance(builder, _StackBuilder)
    builder.dependency_outputs = scope_outputs
    try:
        return evaluate(value.expr, value.ctx.with_secrets(secrets))
    finally:
        builder.dependency_outputs = None
