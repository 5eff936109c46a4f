"""The static security policy: allowlists, blocked names and attributes, import checks.

This module owns *what* is allowed; :mod:`taskbox.policy.analyzer` owns *where*
in the code it is looked for. Both are pure: no I/O, no clock, no imports of
user modules. The names refused here are n8n's (n8n-python-runner.md §6.2,
``constants.py`` of ``@n8n/task-runner-python``) plus a few frame and closure
internals; they are defence in depth and good error messages, not the boundary
(sandbox-security.md §3: seccomp, Landlock, rlimits and the uid drop are).

Allowlist semantics follow n8n (§6.3) with one fix: a dotted entry such as
``os.path`` allows ``os.path`` and its submodules but not ``os`` (n8n keeps such
entries and silently never matches them).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from taskbox.errors import ConfigError

if TYPE_CHECKING:
    from taskbox.executor.limits import Limits

__all__ = [
    "BLOCKED_ATTRIBUTES",
    "BLOCKED_NAMES",
    "EXTERNAL_ALLOW_VAR",
    "FORMAT_METHOD_NAMES",
    "REEXPORT_SENSITIVE_MODULES",
    "STDLIB_ALLOW_VAR",
    "WILDCARD",
    "SecurityPolicy",
    "parse_allowlist",
]

STDLIB_ALLOW_VAR = "N8N_RUNNERS_STDLIB_ALLOW"
EXTERNAL_ALLOW_VAR = "N8N_RUNNERS_EXTERNAL_ALLOW"

#: An allowlist made of this entry alone allows every module of its kind.
WILDCARD = "*"

#: Names user code may not mention at all (``Name`` nodes, declarations, string
#: constants). n8n's set, plus its format-guard helper name.
BLOCKED_NAMES: frozenset[str] = frozenset({
    "__loader__",
    "__builtins__",
    "__globals__",
    "__spec__",
    "__name__",
    "__n8n_internal_safe_format__",
})

#: Attributes user code may not read or write (``x.attr``), nor name in a
#: format template, a ``match`` keyword pattern or a method definition.
BLOCKED_ATTRIBUTES: frozenset[str] = frozenset({
    # Frames, tracebacks, generators, coroutines: the way into the caller's
    # locals and globals (attack corpus B01-B08; CVE-2023-37271).
    "__traceback__", "tb_frame", "tb_next",
    "f_back", "f_globals", "f_locals", "f_code", "f_builtins", "f_trace",
    "gi_frame", "gi_code", "gi_yieldfrom",
    "cr_frame", "cr_code", "cr_await",
    "ag_frame", "ag_code", "ag_await",
    "co_consts", "co_names",
    "_getframe", "_current_frames",
    # Function and closure internals (A04, A07).
    "__globals__", "__builtins__", "__code__", "__closure__", "cell_contents",
    "__defaults__", "__kwdefaults__", "__func__", "__self__", "__wrapped__",
    "__annotations__",
    # Class graph (A01-A03, A10).
    "__subclasses__", "__class__", "__base__", "__bases__", "__mro__", "__dict__",
    "__getattribute__", "__getattr__", "__setattr__", "__delattr__",
    "__init_subclass__", "__qualname__", "__module__",
    # Super objects, AttributeError.obj, method descriptors (CVE-2024-47532).
    "__thisclass__", "__self_class__", "__objclass__", "obj",
    # Pickling, metaclass and match protocols.
    "__reduce__", "__reduce_ex__", "__prepare__", "__instancecheck__",
    "__subclasscheck__", "__match_args__",
    # Module internals.
    "__import__", "__loader__", "__spec__", "__cached__",
})

#: ``str.format`` and friends: they may only be called directly on their
#: receiver, so the sandbox's runtime format guard sees every template.
FORMAT_METHOD_NAMES: frozenset[str] = frozenset({"format", "format_map", "vformat", "get_field"})

#: Modules that, reached as an attribute of an imported module
#: (``datetime.sys``, ``random._os``), hand out what the allowlist withholds.
#: Kept to names that do not clash with common class or function names
#: (``datetime.time`` must keep working).
REEXPORT_SENSITIVE_MODULES: frozenset[str] = frozenset({
    "os", "posix", "nt", "sys", "subprocess", "posixsubprocess", "builtins",
    "importlib", "imp", "ctypes", "gc", "inspect", "socket", "signal", "pty",
    "marshal", "pickle", "multiprocessing", "resource", "fcntl", "mmap", "shutil",
    "runpy", "pdb", "sysconfig", "zipimport",
})

ERROR_RELATIVE_IMPORT = "Relative imports are disallowed."
ERROR_EMPTY_IMPORT = "Import of an empty module name is disallowed."


def parse_allowlist(value: str, var_name: str) -> tuple[str, ...]:
    """Parse an allowlist variable the way n8n does (n8n-python-runner.md §6.3).

    Split on commas, trim each entry, drop empty entries, drop duplicates
    (keeping the first), keep case. ``*`` must stand alone.

    Args:
        value: The variable's raw value; empty means nothing is allowed.
        var_name: The variable's name, for the error message.

    Returns:
        The entries in their first-seen order; ``("*",)`` means everything.

    Raises:
        ConfigError: ``*`` appears together with other entries.
    """
    entries = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    if WILDCARD in entries and len(entries) > 1:
        raise ConfigError([
            f"{var_name}: '*' allows every module and must be the only entry "
            f"(got {value!r})"
        ])
    return entries


def _covers(entries: tuple[str, ...], module: str) -> bool:
    """Whether ``module`` is allowed by one of ``entries``.

    ``os`` covers ``os`` and ``os.path``; ``os.path`` covers ``os.path`` and
    ``os.path.x`` but not ``os``.
    """
    if WILDCARD in entries:
        return True
    return any(module == entry or module.startswith(entry + ".") for entry in entries)


@dataclass(frozen=True, slots=True)
class SecurityPolicy:
    """What user code may import and touch; hashable, so it can key a cache.

    Attributes:
        stdlib_allow: ``N8N_RUNNERS_STDLIB_ALLOW`` entries; ``("*",)`` = all.
        external_allow: ``N8N_RUNNERS_EXTERNAL_ALLOW`` entries; ``("*",)`` = all.
        builtins_deny: Builtins the sandbox removes (``N8N_RUNNERS_BUILTINS_DENY``).
            Kept here so one object describes the whole policy; the analyzer
            does not use it.
        allow_transitive_imports: ``N8N_RUNNERS_ALLOW_TRANSITIVE_IMPORTS``; a
            runtime matter for the sandbox's import guard.
        blocked_names: Names user code may not mention.
        blocked_attributes: Attributes user code may not touch.

    Unlike n8n, allowing everything (``*`` in both lists) relaxes only the
    import rules: the name and attribute rules still apply.
    """

    stdlib_allow: tuple[str, ...] = ()
    external_allow: tuple[str, ...] = ()
    builtins_deny: tuple[str, ...] = ()
    allow_transitive_imports: bool = False
    blocked_names: frozenset[str] = field(default=BLOCKED_NAMES)
    blocked_attributes: frozenset[str] = field(default=BLOCKED_ATTRIBUTES)

    def __post_init__(self) -> None:
        problems = [
            f"{var}: '*' allows every module and must be the only entry"
            for var, entries in (
                (STDLIB_ALLOW_VAR, self.stdlib_allow),
                (EXTERNAL_ALLOW_VAR, self.external_allow),
            )
            if WILDCARD in entries and len(entries) > 1
        ]
        if problems:
            raise ConfigError(problems)

    @classmethod
    def from_limits(cls, limits: Limits) -> SecurityPolicy:
        """Build the policy that matches the limits a worker will enforce.

        Args:
            limits: The runner's :class:`~taskbox.executor.limits.Limits`.

        Returns:
            A policy with the same allowlists, deny list and transitive flag.
        """
        return cls(
            stdlib_allow=tuple(limits.stdlib_allow),
            external_allow=tuple(limits.external_allow),
            builtins_deny=tuple(limits.builtins_deny),
            allow_transitive_imports=limits.allow_transitive_imports,
        )

    @property
    def allows_all_imports(self) -> bool:
        """Both allowlists are ``*``."""
        return WILDCARD in self.stdlib_allow and WILDCARD in self.external_allow

    def is_sensitive_name(self, name: str) -> bool:
        """Whether ``name`` may not be used as an identifier or string constant.

        Every blocked name, and every blocked attribute that looks like an
        interpreter internal (all but ``obj``, which is an everyday word and
        harmless as a variable name or dictionary key).
        """
        return name in self.blocked_names or (
            name in self.blocked_attributes and "_" in name
        )

    def check_import(self, module: str) -> str | None:
        """Decide whether ``module`` may be imported.

        The top-level name decides which list applies (``sys.stdlib_module_names``
        is the standard library; anything else is external).

        Args:
            module: An absolute dotted module name, e.g. ``"os.path"``.

        Returns:
            ``None`` if allowed, else the user-facing reason, which names the
            module, what is allowed and the variable to set.
        """
        if not module:
            return ERROR_EMPTY_IMPORT
        if module.startswith("."):
            return ERROR_RELATIVE_IMPORT
        top = module.partition(".")[0]
        if top in sys.stdlib_module_names:
            entries, kind, plural, var = (
                self.stdlib_allow, "standard library module", "stdlib modules", STDLIB_ALLOW_VAR,
            )
        else:
            entries, kind, plural, var = (
                self.external_allow, "external package", "external packages", EXTERNAL_ALLOW_VAR,
            )
        if _covers(entries, module):
            return None
        listed = ", ".join(sorted(entries)) if entries else "none"
        return (
            f"Import of {kind} '{module}' is disallowed. "
            f"Allowed {plural}: {listed}. Set {var} to allow it."
        )
