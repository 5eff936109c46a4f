"""In-process restrictions: filtered builtins and a guarded ``__import__``.

These give users n8n's error messages and raise the bar for naive code. They are
*not* the boundary: the OS layers applied by ``confine.py`` are (sandbox-security.md
§3). Semantics follow n8n-python-runner.md §6.3-§6.5, with its bugs fixed:

* allowlists arrive already parsed (tuples); ``*`` allows every module of its kind;
* matching is by top-level package (``a.b.c`` -> ``a``), and a dotted entry such
  as ``os.path`` *does* work: it allows ``os.path`` and its submodules, not ``os``
  (``import os.path`` binds ``os`` to a stub module holding only ``path``);
* relative imports from user code are refused;
* ``datetime``/``time`` C code lazily imports ``_strptime`` through the caller's
  builtins; that import is allowed whenever ``datetime`` or ``time`` is. So is
  ``time``, which ``datetime``'s C code imports the same way for ``strftime``,
  ``date.today()`` and ``timetuple()`` (``_datetimemodule.c``);
* ``__build_class__`` is never removed, so ``class`` statements work (#24175);
* ``importlib.import_module`` / ``importlib.__import__`` are guarded too. With
  ``allow_transitive_imports`` they trust a caller that is not user code;
* every ``x.format(...)``, ``format_map``, ``vformat`` and ``get_field`` call in
  user code goes through :func:`safe_format` (the analyzer refuses any other use
  of those names), which refuses a template or field naming a private or
  introspection attribute with n8n's wording: ``string.Formatter().get_field``
  would otherwise hand back real objects from an attribute path.

Never imports ``taskbox``; logs nothing.
"""

from __future__ import annotations

import _string  # type: ignore[import-not-found]  # the parser str.format itself uses
import ast
import builtins
import importlib
import importlib.util
import os
import sys
import types
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, Final

__all__ = [
    "FORMAT_GUARD",
    "USER_FILENAME",
    "FormatGuard",
    "ImportPolicy",
    "SecurityViolation",
    "guard_importlib",
    "safe_builtins",
    "safe_format",
]

#: ``co_filename`` of every code object compiled from user code.
USER_FILENAME: Final = "<taskbox-user-code>"

#: Modules C code imports lazily on behalf of an allowed module, through the
#: *caller's* builtins (n8n-python-runner.md §6.3, "Gotcha").
_LAZY_C_IMPORTS: Final[dict[str, tuple[str, ...]]] = {
    "_strptime": ("datetime", "time"),
    "time": ("datetime",),
}

_STDLIB_ENV: Final = "N8N_RUNNERS_STDLIB_ALLOW"
_EXTERNAL_ENV: Final = "N8N_RUNNERS_EXTERNAL_ALLOW"

_real_import = builtins.__import__
_real_import_module = importlib.import_module


class ImportPolicy:
    """Decides which modules user code may import, and says why not."""

    __slots__ = ("_external", "_stdlib", "_stdlib_names", "external_all", "stdlib_all",
                 "transitive")

    def __init__(self, stdlib_allow: Iterable[str], external_allow: Iterable[str],
                 allow_transitive_imports: bool = False) -> None:
        """Args:
        stdlib_allow: parsed ``N8N_RUNNERS_STDLIB_ALLOW``; ``("*",)`` allows all.
        external_allow: parsed ``N8N_RUNNERS_EXTERNAL_ALLOW``.
        allow_transitive_imports: importlib calls made by non-user code are trusted.
        """
        self._stdlib = tuple(dict.fromkeys(s for s in stdlib_allow if s))
        self._external = tuple(dict.fromkeys(s for s in external_allow if s))
        self.stdlib_all = "*" in self._stdlib
        self.external_all = "*" in self._external
        self.transitive = allow_transitive_imports
        self._stdlib_names = sys.stdlib_module_names

    def is_stdlib(self, name: str) -> bool:
        """Whether the top-level package of ``name`` belongs to the standard library."""
        return name.partition(".")[0] in self._stdlib_names

    def _entries(self, name: str) -> tuple[bool, tuple[str, ...]]:
        if self.is_stdlib(name):
            return self.stdlib_all, self._stdlib
        return self.external_all, self._external

    def allowed(self, name: str) -> bool:
        """Whether user code may import module ``name`` (absolute, dotted)."""
        all_, entries = self._entries(name)
        if all_:
            return True
        top = name.partition(".")[0]
        for entry in entries:
            if entry in (top, name) or name.startswith(entry + "."):
                return True
        lazy_for = _LAZY_C_IMPORTS.get(name)
        return lazy_for is not None and any(self.allowed(m) for m in lazy_for)

    def allowed_prefix(self, name: str) -> str | None:
        """The shortest allowed dotted prefix of ``name`` (``None`` if none is)."""
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if self.allowed(prefix):
                return prefix
        return None

    def refusal(self, name: str) -> str:
        """n8n's error text for a refused import, naming the variable to set."""
        top = name.partition(".")[0]
        if self.is_stdlib(name):
            listed = ", ".join(self._stdlib) or "none"
            return (f"Import of standard library module '{top}' is disallowed. "
                    f"Allowed stdlib modules: {listed}. Set {_STDLIB_ENV} to allow it.")
        listed = ", ".join(self._external) or "none"
        return (f"Import of external module '{top}' is disallowed. "
                f"Allowed external modules: {listed}. Set {_EXTERNAL_ENV} to allow it.")

    def check(self, name: str, fromlist: Iterable[str] | None) -> str | None:
        """Return ``None`` if ``from name import fromlist`` is allowed, else the message."""
        if self.allowed(name):
            return None
        if fromlist:
            # ``from os import path`` with only ``os.path`` allowed.
            for item in fromlist:
                if item == "*" or not self.allowed(f"{name}.{item}"):
                    return self.refusal(name)
            return None
        if self.allowed_prefix(name) is None:
            return self.refusal(name)
        return None

    def make_import(self) -> Callable[..., Any]:
        """The guarded ``__import__`` placed in user code's builtins."""
        policy = self

        def __import__(name: str, globals: Mapping[str, Any] | None = None,
                       locals: Mapping[str, Any] | None = None,
                       fromlist: Sequence[str] | None = (), level: int = 0) -> Any:
            if level:
                raise ImportError("Relative imports are not allowed in the Code node.")
            if not isinstance(name, str):
                raise TypeError(f"__import__() argument 1 must be str, not {type(name).__name__}")
            message = policy.check(name, fromlist)
            if message is not None:
                raise ImportError(message, name=name)
            try:
                module = _real_import(name, None, None, fromlist, 0)
            except ModuleNotFoundError as exc:
                raise _unreadable(exc) or exc from None
            if fromlist or "." not in name or policy.allowed(name.partition(".")[0]):
                return module
            return _stub_parents(name, policy.allowed_prefix(name) or name)

        return __import__


def _unreadable(exc: ModuleNotFoundError) -> ModuleNotFoundError | None:
    """Say so when a module is missing only because this uid cannot read sys.path.

    Root's workers drop to an unprivileged uid; a Python under a 0700 home is then
    unreadable and only the modules preloaded at start-up import (deploy/README.md).
    """
    for entry in sys.path:
        if entry.endswith(".zip"):
            continue
        try:
            readable = os.access(entry, os.R_OK | os.X_OK) or not os.path.isdir(entry)
            os.stat(entry)  # EACCES when a directory above it cannot be searched
        except PermissionError:
            readable = False
        except OSError:  # a sys.path entry that does not exist
            continue
        if not readable:
            return ModuleNotFoundError(
                f"{exc}: the Python installation ({entry}) is not readable by uid "
                f"{os.getuid()}; only the modules preloaded at start-up can be imported "
                "(the runner's start-up log says how to fix it)", name=exc.name)
    return None


def _stub_parents(name: str, allowed: str) -> types.ModuleType:
    """Build what ``import a.b.c`` binds as ``a`` when only ``a.b`` is allowed.

    Every package above ``allowed`` becomes an empty stand-in module holding just
    the next step, so ``import os.path; os.path.join(...)`` works and ``os.system``
    does not exist.
    """
    depth = allowed.count(".")
    parts = name.split(".")
    node: Any = sys.modules[allowed]
    for i in range(depth, 0, -1):
        stub = types.ModuleType(".".join(parts[:i]))
        setattr(stub, parts[i], node)
        node = stub
    return node  # type: ignore[no-any-return]


def safe_builtins(deny: Iterable[str], guarded_import: Callable[..., Any]) -> dict[str, Any]:
    """User code's builtins: the real ones minus ``deny``, with the guarded import.

    ``__build_class__`` always stays, so ``class`` statements work.

    Args:
        deny: names to remove (``N8N_RUNNERS_BUILTINS_DENY``).
        guarded_import: replaces ``__import__``.

    Returns:
        A fresh dict (callers copy it per run so nothing leaks between items). It is
        built without deletions: ``dict(table)`` of a dict with deleted entries takes
        CPython's slow path (2.3 us instead of 0.26 us for 136 names), once per item.
    """
    denied = {name for name in deny if name and name != "__build_class__"}
    table = {name: value for name, value in builtins.__dict__.items() if name not in denied}
    table["__import__"] = guarded_import
    return table


def _caller_is_user(depth: int) -> bool:
    try:
        frame = sys._getframe(depth)
    except ValueError:  # pragma: no cover - the stack is never that shallow here
        return True
    return frame.f_code.co_filename == USER_FILENAME


def guard_importlib(policy: ImportPolicy) -> None:
    """Guard ``importlib.import_module`` and ``importlib.__import__`` in place.

    Called once per worker (each worker is fresh), before user code runs.
    """

    def import_module(name: str, package: str | None = None) -> types.ModuleType:
        if policy.transitive and not _caller_is_user(2):
            return _real_import_module(name, package)
        absolute = importlib.util.resolve_name(name, package) if name.startswith(".") else name
        if name.startswith(".") and _caller_is_user(2):
            raise ImportError("Relative imports are not allowed in the Code node.")
        message = policy.check(absolute, None)
        if message is not None:
            raise ImportError(message, name=absolute)
        return _real_import_module(name, package)

    guarded = policy.make_import()

    def dunder_import(name: str, globals: Mapping[str, Any] | None = None,
                      locals: Mapping[str, Any] | None = None,
                      fromlist: Sequence[str] | None = (), level: int = 0) -> Any:
        if policy.transitive and not _caller_is_user(2):
            return _real_import(name, globals, locals, fromlist, level)
        return guarded(name, globals, locals, fromlist, level)

    importlib.import_module = import_module
    importlib.__import__ = dunder_import


# --------------------------------------------------------------------------- format guard

#: Name of :func:`safe_format` in user code's globals (compile_user_code calls it).
FORMAT_GUARD: Final = "__taskbox_format__"
#: n8n's wording for a runtime refusal (its format guard and import guard).
SECURITY_VIOLATION: Final = "Security violation detected"
_PATTERN_REFUSED: Final = ("String pattern accessing '{attr}' is disallowed, because it "
                           "can be used to bypass security restrictions.")
_FORMAT_METHODS: Final = frozenset({"format", "format_map", "vformat", "get_field"})
#: Attribute or key names refused in a template besides every name starting with
#: ``_``: the frame, generator, code and closure internals of the analyzer's list.
_BLOCKED_FIELD_NAMES: Final = frozenset({
    "tb_frame", "tb_next", "f_back", "f_globals", "f_locals", "f_code", "f_builtins",
    "f_trace", "gi_frame", "gi_code", "gi_yieldfrom", "cr_frame", "cr_code", "cr_await",
    "ag_frame", "ag_code", "ag_await", "co_consts", "co_names", "cell_contents", "obj",
    "mro",
})
_MAX_SPEC_DEPTH: Final = 4  # str.format itself stops at two levels


class SecurityViolation(Exception):
    """A runtime refusal; shown as ``Security violation detected`` plus ``description``."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


def _field_tokens(template: str, depth: int = 0) -> Iterator[str]:
    """Attribute names and index keys of every field in a format template."""
    try:
        parts = list(_string.formatter_parser(template))
    except (ValueError, TypeError):
        return  # str.format raises its own error for a malformed template
    for _literal, field, spec, _conversion in parts:
        if field:
            try:
                _first, rest = _string.formatter_field_name_split(field)
                for _is_attr, key in rest:
                    yield str(key)
            except (ValueError, TypeError):
                pass
        if spec and depth < _MAX_SPEC_DEPTH:
            yield from _field_tokens(spec, depth + 1)


def check_template(template: str) -> None:
    """Raise :class:`SecurityViolation` if the template reaches a blocked attribute."""
    for token in _field_tokens(template):
        if token.startswith("_") or token in _BLOCKED_FIELD_NAMES:
            raise SecurityViolation(_PATTERN_REFUSED.format(attr=token))


def _template_of(method: str, receiver: Any, args: tuple[Any, ...]) -> str | None:
    """The template (or ``{field}``) a format call would evaluate, if a string."""
    if method == "get_field":
        # Formatter().get_field(field, ...) or Formatter.get_field(self, field, ...)
        candidate = args[1] if isinstance(receiver, type) and len(args) > 1 else \
            (args[0] if args else None)
        return "{" + candidate + "}" if isinstance(candidate, str) else None
    if isinstance(receiver, str):
        return receiver  # "...".format(...) / format_map(...)
    candidate = args[0] if args else None
    if isinstance(receiver, type) and not issubclass(receiver, str) and len(args) > 1:
        candidate = args[1]  # Formatter.vformat(self, template, ...)
    return candidate if isinstance(candidate, str) else None


def safe_format(method: str, receiver: Any, /, *args: Any, **kwargs: Any) -> Any:
    """``receiver.<method>(*args, **kwargs)``, after checking its template."""
    template = _template_of(method, receiver, args)
    if template is not None:
        check_template(template)
    return getattr(receiver, method)(*args, **kwargs)


class FormatGuard(ast.NodeTransformer):
    """Rewrites ``x.format(...)`` and friends into ``__taskbox_format__("format", x, ...)``."""

    def visit_Call(self, node: ast.Call) -> ast.AST:
        self.generic_visit(node)
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in _FORMAT_METHODS:
            # Every new node gets the call's location (no fix_missing_locations walk).
            name = ast.copy_location(ast.Name(FORMAT_GUARD, ast.Load()), func)
            method = ast.copy_location(ast.Constant(func.attr), func)
            call = ast.Call(name, [method, func.value, *node.args], node.keywords)
            return ast.copy_location(call, node)
        return node
