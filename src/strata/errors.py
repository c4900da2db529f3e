"""Errors and diagnostics: values the user can act on.

Every expected failure is a :class:`StrataError` (or a :class:`Diagnostic` when many are collected),
carrying the configuration file and line, and the stack, where they apply. One place, :mod:`strata.main`,
turns them into output and exit codes; anything that is not a StrataError is a bug in strata.

The whole tree::

    StrataError                      exit 1 unless the class says otherwise
    ├── ConfigError                  a strata.hcl (or migration file) is wrong: syntax, schema, evaluation
    │   └── StaticConfigError        ... in the text itself; never hidden by try() or can()
    ├── FunctionError                a function called with arguments it cannot take (gets file:line when
    │                                the evaluator turns it into a ConfigError)
    ├── UsageError                   exit 64: wrong command line (unknown stack, bad selection, bad flag)
    ├── ProblemsFound                the repository has errors; carries every Diagnostic
    ├── BackendError                 a backend could not be reached or refused (no bucket, access denied)
    │   └── StateLocked              (strata.backends.base) someone else holds the state's lock
    ├── StateFormatError             bytes that are not a Terraform state strata can work with
    ├── StateError                   (strata.state.operations) a state operation refused or failed
    └── MigrationError               (strata.migrate.runner) a migration refused or failed
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

# Exit codes, documented in the README.
EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2  # plan --detailed-exitcode: succeeded with changes
EXIT_POLICY = 3  # plan: the plans were made, a policy check failed or could not run (strata.policy)
EXIT_USAGE = 64  # sysexits EX_USAGE: never confused with "changes present"
EXIT_INTERRUPTED = 130


@dataclass(frozen=True, slots=True)
class Source:
    """Where a value or a problem comes from: a file and line, or a note such as "default"."""

    file: str = ""
    line: int = 0
    note: str = ""

    def __str__(self) -> str:
        if self.file and self.line:
            place = f"{self.file}:{self.line}"
        elif self.file:
            place = self.file
        else:
            return self.note
        return f"{place} ({self.note})" if self.note else place

    @property
    def is_file(self) -> bool:
        return bool(self.file)


Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem found in a repository."""

    severity: Severity
    message: str
    source: Source = Source()

    def __str__(self) -> str:
        where = f"{self.source}: " if self.source.file or self.source.note else ""
        return f"{where}{self.severity}: {self.message}"

    def to_json(self) -> dict[str, object]:
        return {
            "severity": self.severity,
            "file": self.source.file or None,
            "line": self.source.line or None,
            "message": self.message,
        }


class StrataError(Exception):
    """An error the user can act on; printed without a traceback."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, source: Source | None = None, *, stack: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.source = source or Source()
        self.stack = stack  # the stack's path, when the failure concerns one stack

    def __str__(self) -> str:
        where = f"{self.stack}: " if self.stack else ""
        if self.source.file or self.source.note:
            return f"{where}{self.source}: {self.message}"
        return f"{where}{self.message}"

    def diagnostic(self) -> Diagnostic:
        return Diagnostic("error", self.message, self.source)


class ConfigError(StrataError):
    """A mistake in a strata.hcl file (syntax, schema or evaluation)."""


class StaticConfigError(ConfigError):
    """A mistake in the text itself (unknown function or name): never hidden by try() or can()."""


class UsageError(StrataError):
    """Wrong command-line usage (unknown stack, bad selection...)."""

    exit_code = EXIT_USAGE


class ProblemsFound(StrataError):
    """Raised when a command cannot go on because the repository has errors."""

    def __init__(self, diagnostics: list[Diagnostic]) -> None:
        errors = sum(1 for d in diagnostics if d.severity == "error")
        super().__init__(f"{errors} error(s) in the configuration")
        self.diagnostics = diagnostics


class FunctionError(StrataError):
    """A function was called with arguments it cannot take."""


class BackendError(StrataError):
    """The backend could not be reached or refused (no such bucket, access denied, not JSON...).

    The message says what failed in the backend's words; callers add the stack.
    """


class StateFormatError(StrataError, ValueError):
    """The bytes are not a Terraform state strata can work with."""


def did_you_mean(value: str, known: Iterable[str]) -> str:
    """`` (did you mean 'x' or 'y'?)`` for the names nearest to ``value``, or nothing."""
    close = difflib.get_close_matches(value, list(known), n=3, cutoff=0.6)
    if not close:
        return ""
    return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
