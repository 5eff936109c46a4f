"""Static analysis of user code against a :class:`SecurityPolicy`.

:func:`analyze` parses the code and returns *every* violation, sorted by
position; :func:`validate` raises :class:`~taskbox.errors.SecurityViolation`
with their ``Line N: message`` lines, the way n8n's ``TaskAnalyzer`` does
(n8n-python-runner.md §6.2). Results are cached per (sha256 of the code,
policy) in an LRU of 500 entries.

The rules are n8n's, with these deliberate differences:

* allowing every import (``*`` in both lists) relaxes only the import rules;
  n8n skips the whole analysis then;
* ``class`` statements and ordinary dunder methods are fine; only methods named
  after a blocked attribute (``__getattr__``, ``__reduce__``, ...) are refused;
* a dotted allowlist entry (``os.path``) works;
* modules re-exported by an allowed module (``datetime.sys``, ``random._os``)
  are refused unless they are allowed themselves;
* ``nonlocal`` and ``match`` capture names are checked like ``global`` names;
* a tree too deep to parse is refused instead of crashing the caller.

This is defence in depth and a source of clear error messages: runtime-built
strings are invisible here, and the OS layers are the boundary.
Traversal is iterative (:func:`ast.walk`), so hostile nesting cannot exhaust
the runner's stack. Pure module: no I/O, no clock.
"""

from __future__ import annotations

import _string  # type: ignore[import-not-found]  # the parser str.format itself uses
import ast
import hashlib
import sys
import threading
from collections import OrderedDict
from collections.abc import Iterator

from taskbox.errors import SecurityViolation
from taskbox.policy.policy import FORMAT_METHOD_NAMES, REEXPORT_SENSITIVE_MODULES, SecurityPolicy
from taskbox.policy.violations import Rule, Violation

__all__ = ["CACHE_SIZE", "analyze", "clear_cache", "validate"]

#: Cached results, as in n8n's ``MAX_VALIDATION_CACHE_SIZE``.
CACHE_SIZE = 500

#: str.format stops at two levels of nested specs; look a little further.
_FORMAT_SPEC_DEPTH = 8

# Message texts; the ones n8n has are n8n's, byte for byte (constants.py).
ERROR_DANGEROUS_NAME = (
    "Access to name '{name}' is disallowed, because it can be used to bypass "
    "security restrictions."
)
ERROR_DANGEROUS_ATTRIBUTE = (
    "Access to attribute '{attr}' is disallowed, because it can be used to "
    "bypass security restrictions."
)
ERROR_DANGEROUS_STRING_PATTERN = (
    "String pattern accessing '{attr}' is disallowed, because it can be used "
    "to bypass security restrictions."
)
ERROR_NAME_MANGLED_ATTRIBUTE = (
    "Access to name-mangled attributes (pattern: _ClassName__attr) is "
    "disallowed for security reasons."
)
ERROR_DYNAMIC_IMPORT = "Dynamic __import__() calls are not allowed for security reasons."
ERROR_MATCH_PATTERN_ATTRIBUTE = (
    "Match pattern extracting attribute '{attr}' is disallowed, because it "
    "can be used to bypass security restrictions."
)
ERROR_MATCH_POSITIONAL_PATTERN = "Positional match patterns are disallowed for security reasons."
ERROR_GLOBAL_BLOCKED_NAME = (
    "Global declaration of '{name}' is disallowed, because it can be used to "
    "bypass security restrictions."
)
ERROR_NONLOCAL_BLOCKED_NAME = (
    "Nonlocal declaration of '{name}' is disallowed, because it can be used to "
    "bypass security restrictions."
)
ERROR_FUNCDEF_BLOCKED_NAME = (
    "Function named '{name}' is disallowed, because it can be used to bypass "
    "security restrictions."
)
ERROR_CLASSDEF_BLOCKED_NAME = (
    "Class named '{name}' is disallowed, because it can be used to bypass "
    "security restrictions."
)
ERROR_PARAM_BLOCKED_NAME = (
    "Parameter named '{name}' is disallowed, because it can be used to bypass "
    "security restrictions."
)
ERROR_BARE_FORMAT_ATTRIBUTE = (
    "Extracting '{attr}' as a bound method is disallowed; call it directly on "
    "its receiver instead."
)
ERROR_REEXPORT = "Access to '{expr}' is disallowed: it can reach the module '{module}'. {reason}"
ERROR_TOO_COMPLEX = "The code is nested too deeply to be checked; simplify it."

_BUILTINS_NAMES = frozenset({"__builtins__", "builtins"})


def _is_dunder(name: str) -> bool:
    return len(name) > 4 and name.startswith("__") and name.endswith("__")


def _is_name_mangled(attr: str) -> bool:
    """``_Class__attr``: what ``self.__attr`` becomes inside ``class Class``."""
    head, sep, _tail = attr.partition("__")
    return bool(sep) and head.startswith("_")


def _format_parts(template: str) -> Iterator[tuple[str, str | None, str | None, str | None]]:
    """(literal, field_name, spec, conversion) parts, from str.format's own parser.

    The parser is lazy; str.format evaluates the fields before a malformed part,
    so those fields still count: stop at the first error, not before.
    """
    try:
        yield from _string.formatter_parser(template)
    except ValueError:
        return


def _field_keys(field_name: str) -> Iterator[str | int]:
    """The ``.attr`` and ``[key]`` parts of a field name, e.g. ``0.a[b]`` -> a, b."""
    try:
        _first, rest = _string.formatter_field_name_split(field_name)
        for _is_attr, key in rest:
            yield key
    except ValueError:
        return


class _Checker(ast.NodeVisitor):
    """Collects every violation in one tree.

    :meth:`run` walks the tree iteratively and calls :meth:`visit` on each node;
    ``generic_visit`` does nothing, so no ``visit_*`` method recurses.
    """

    def __init__(self, policy: SecurityPolicy) -> None:
        self.policy = policy
        self.violations: list[Violation] = []
        self._callees: set[int] = set()
        self._bound_modules: dict[str, str] = {}
        self._folded: dict[int, str] = {}
        self._reported_imports: set[str] = set()

    # ---- driving -----------------------------------------------------------

    def run(self, tree: ast.AST) -> list[Violation]:
        nodes = list(ast.walk(tree))
        self._prepare(nodes)
        for node in nodes:
            self.visit(node)
        return self.violations

    def generic_visit(self, node: ast.AST) -> None:
        """Do not recurse: :meth:`run` already visits every node."""

    def _prepare(self, nodes: list[ast.AST]) -> None:
        """Record callees, names bound to modules, and folded string concatenations."""
        adds: list[ast.BinOp] = []
        for node in nodes:
            if isinstance(node, ast.Call):
                self._callees.add(id(node.func))
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        self._bound_modules[alias.asname] = alias.name
                    else:
                        top = alias.name.partition(".")[0]
                        self._bound_modules[top] = top
            elif isinstance(node, ast.ImportFrom):
                if node.level == 0 and node.module:
                    for alias in node.names:
                        bound = alias.asname or alias.name
                        self._bound_modules[bound] = f"{node.module}.{alias.name}"
            elif isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
                adds.append(node)
        self._fold_concatenations(adds)

    def _fold_concatenations(self, adds: list[ast.BinOp]) -> None:
        """Fold maximal ``'a' + 'b' + ...`` trees of string literals, in linear time.

        ``ast.walk`` yields parents before children, so walking ``adds``
        backwards sees every operand before the node that uses it.
        """
        foldable: set[int] = set()
        inner: set[int] = set()
        for node in reversed(adds):
            if all(self._is_text(op) or id(op) in foldable for op in (node.left, node.right)):
                foldable.add(id(node))
                inner.update(id(op) for op in (node.left, node.right))
        for node in adds:
            if id(node) in foldable and id(node) not in inner:
                self._folded[id(node)] = self._fold(node)

    @staticmethod
    def _is_text(node: ast.expr) -> bool:
        if isinstance(node, ast.Constant):
            return isinstance(node.value, str)
        if isinstance(node, ast.JoinedStr):
            return all(
                isinstance(v, ast.Constant) and isinstance(v.value, str) for v in node.values
            )
        return False

    @staticmethod
    def _fold(root: ast.BinOp) -> str:
        """Concatenate the literal leaves of a foldable tree, left to right."""
        parts: list[str] = []
        stack: list[ast.expr] = [root]
        while stack:
            node = stack.pop()
            if isinstance(node, ast.BinOp):
                stack.append(node.right)
                stack.append(node.left)
            elif isinstance(node, ast.JoinedStr):
                stack.extend(reversed(node.values))
            else:
                assert isinstance(node, ast.Constant) and isinstance(node.value, str)
                parts.append(node.value)
        return "".join(parts)

    # ---- reporting ---------------------------------------------------------

    def _add(self, node: ast.AST, rule: Rule, message: str) -> None:
        self.violations.append(
            Violation(getattr(node, "lineno", 1), getattr(node, "col_offset", 0), rule, message)
        )

    def _add_at_attr(self, node: ast.Attribute, rule: Rule, message: str) -> None:
        """Point at the attribute's name, so ``a.b.c`` reports in reading order."""
        lineno = node.end_lineno or node.lineno
        col = max((node.end_col_offset or 0) - len(node.attr), 0)
        self.violations.append(Violation(lineno, col, rule, message))

    def _import_rule(self, module: str) -> Rule:
        if not module or module.startswith("."):
            return Rule.IMPORT_RELATIVE
        top = module.partition(".")[0]
        return Rule.IMPORT_STDLIB if top in sys.stdlib_module_names else Rule.IMPORT_EXTERNAL

    def _report_import(self, node: ast.AST, rule: Rule, reason: str) -> None:
        """Report an import reason once per analysis, as n8n does per module."""
        if reason not in self._reported_imports:
            self._reported_imports.add(reason)
            self._add(node, rule, reason)

    def _check_module(self, node: ast.AST, module: str) -> bool:
        reason = self.policy.check_import(module)
        if reason is not None:
            self._report_import(node, self._import_rule(module), reason)
        return reason is None

    def _reexport_reason(self, module: str) -> str | None:
        """Why ``<imported module>.<module>`` is refused, or ``None``."""
        if module not in REEXPORT_SENSITIVE_MODULES:
            return None
        return self.policy.check_import(module)

    def _check_binding(self, node: ast.AST, name: str) -> None:
        """An identifier being bound (alias, except name, capture name)."""
        if name in self.policy.blocked_names:
            self._add(node, Rule.BLOCKED_NAME, ERROR_DANGEROUS_NAME.format(name=name))
        elif self.policy.is_sensitive_name(name):
            self._add(node, Rule.BLOCKED_ATTRIBUTE, ERROR_DANGEROUS_ATTRIBUTE.format(attr=name))

    def _is_blocked_identifier(self, name: str) -> bool:
        """Blocked names, and dunder blocked attributes (``__class__``, ``__getattr__``)."""
        return name in self.policy.blocked_names or (
            _is_dunder(name) and name in self.policy.blocked_attributes
        )

    def _scan_text(self, node: ast.AST, text: str) -> None:
        """A string literal: exact blocked names, then format-template traversal."""
        if text in self.policy.blocked_names:
            self._add(node, Rule.STRING_CONSTANT, ERROR_DANGEROUS_NAME.format(name=text))
        elif self.policy.is_sensitive_name(text):
            self._add(node, Rule.STRING_CONSTANT, ERROR_DANGEROUS_ATTRIBUTE.format(attr=text))
        elif "{" in text:
            for token in self._format_tokens(text, 0):
                self._add(node, Rule.FORMAT_STRING,
                          ERROR_DANGEROUS_STRING_PATTERN.format(attr=token))

    def _format_tokens(self, template: str, depth: int) -> Iterator[str]:
        """Attribute and key tokens of a str.format template that are blocked.

        Uses the parser str.format itself uses, and descends into nested specs
        (``'{0:{1.__class__}}'``).
        """
        for _literal, field_name, spec, _conversion in _format_parts(template):
            if field_name:
                for key in _field_keys(field_name):
                    if isinstance(key, str) and (
                        key in self.policy.blocked_attributes
                        or key in self.policy.blocked_names
                        or _is_name_mangled(key)
                    ):
                        yield key
            if spec and "{" in spec and depth < _FORMAT_SPEC_DEPTH:
                yield from self._format_tokens(spec, depth + 1)

    def _dotted_module_path(self, node: ast.expr) -> str | None:
        """``datetime.x.y`` -> ``"datetime.x.y"`` when the root names an import."""
        attrs: list[str] = []
        while isinstance(node, ast.Attribute):
            attrs.append(node.attr)
            node = node.value
        if isinstance(node, ast.Name) and node.id in self._bound_modules:
            return ".".join([self._bound_modules[node.id], *reversed(attrs)])
        return None

    # ---- imports -----------------------------------------------------------

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            # ``import os.path`` with only ``os.path`` allowed is fine: the
            # sandbox binds ``os`` to a stand-in that holds only ``path``.
            self._check_module(node, alias.name)
            if alias.asname:
                self._check_binding(node, alias.asname)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.level > 0:
            self._add(node, Rule.IMPORT_RELATIVE, self.policy.check_import(".") or "")
        else:
            module = node.module or ""  # level 0 always names a module
            # With only dotted entries allowed (os.path), ``from os import path``
            # is fine: every imported name is itself an allowed module.
            if self.policy.check_import(module) is not None and not all(
                alias.name != "*" and self.policy.check_import(f"{module}.{alias.name}") is None
                for alias in node.names
            ):
                self._check_module(node, module)
        for alias in node.names:
            if alias.asname:
                self._check_binding(node, alias.asname)
            if alias.name != "*":
                self._check_binding(node, alias.name)
                module = alias.name.lstrip("_")
                reason = self._reexport_reason(module) if node.module else None
                if reason is not None:
                    self._add(node, Rule.MODULE_REEXPORT, ERROR_REEXPORT.format(
                        expr=f"{node.module}.{alias.name}", module=module, reason=reason))

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        is_dunder_import = (isinstance(func, ast.Name) and func.id == "__import__") or (
            isinstance(func, ast.Attribute)
            and func.attr == "__import__"
            and isinstance(func.value, ast.Name)
            and func.value.id in _BUILTINS_NAMES
        )
        first = node.args[0] if node.args else None
        literal = (
            first.value
            if isinstance(first, ast.Constant) and isinstance(first.value, str)
            else None
        )
        if is_dunder_import:
            if literal is None:
                self._add(node, Rule.IMPORT_DYNAMIC, ERROR_DYNAMIC_IMPORT)
            else:
                self._check_module(node, literal)
        elif literal is not None and self._is_import_module(func):
            self._check_module(node, literal)

    def _is_import_module(self, func: ast.expr) -> bool:
        """``importlib.import_module`` however it was bound."""
        if isinstance(func, ast.Attribute):
            return self._dotted_module_path(func) == "importlib.import_module"
        if isinstance(func, ast.Name):
            return self._bound_modules.get(func.id) == "importlib.import_module"
        return False

    # ---- names and attributes ----------------------------------------------

    def visit_Name(self, node: ast.Name) -> None:
        if node.id == "__import__":
            if id(node) not in self._callees:
                self._add(node, Rule.IMPORT_DYNAMIC, ERROR_DYNAMIC_IMPORT)
        elif self._is_blocked_identifier(node.id):
            self._add(node, Rule.BLOCKED_NAME, ERROR_DANGEROUS_NAME.format(name=node.id))

    def visit_Attribute(self, node: ast.Attribute) -> None:
        attr = node.attr
        if attr in self.policy.blocked_attributes:
            self._add_at_attr(node, Rule.BLOCKED_ATTRIBUTE,
                              ERROR_DANGEROUS_ATTRIBUTE.format(attr=attr))
        if attr in FORMAT_METHOD_NAMES and id(node) not in self._callees:
            self._add_at_attr(node, Rule.BARE_FORMAT, ERROR_BARE_FORMAT_ATTRIBUTE.format(attr=attr))
        if _is_name_mangled(attr):
            self._add_at_attr(node, Rule.NAME_MANGLED, ERROR_NAME_MANGLED_ATTRIBUTE)
        base = self._dotted_module_path(node.value)
        if base is not None:
            module = attr.lstrip("_")
            reason = self._reexport_reason(module)
            if reason is not None:
                self._add_at_attr(node, Rule.MODULE_REEXPORT, ERROR_REEXPORT.format(
                    expr=f"{base}.{attr}", module=module, reason=reason))

    def visit_Subscript(self, node: ast.Subscript) -> None:
        value = node.value
        on_builtins = (isinstance(value, ast.Name) and value.id in _BUILTINS_NAMES) or (
            isinstance(value, ast.Attribute) and value.attr in _BUILTINS_NAMES
        )
        key = node.slice
        if on_builtins and isinstance(key, ast.Constant) and isinstance(key.value, str):
            if key.value in self.policy.blocked_names:
                self._add(node, Rule.BUILTINS_SUBSCRIPT,
                          ERROR_DANGEROUS_NAME.format(name=key.value))
            elif key.value in self.policy.blocked_attributes:
                self._add(node, Rule.BUILTINS_SUBSCRIPT,
                          ERROR_DANGEROUS_ATTRIBUTE.format(attr=key.value))

    # ---- string literals ---------------------------------------------------

    def visit_Constant(self, node: ast.Constant) -> None:
        if isinstance(node.value, str):
            self._scan_text(node, node.value)

    def visit_BinOp(self, node: ast.BinOp) -> None:
        folded = self._folded.get(id(node))
        if folded is not None:
            self._scan_text(node, folded)

    # ---- declarations ------------------------------------------------------

    def visit_Global(self, node: ast.Global) -> None:
        for name in node.names:
            if self._is_blocked_identifier(name):
                self._add(node, Rule.GLOBAL_DECLARATION, ERROR_GLOBAL_BLOCKED_NAME.format(name=name))

    def visit_Nonlocal(self, node: ast.Nonlocal) -> None:
        for name in node.names:
            if self._is_blocked_identifier(name):
                self._add(node, Rule.GLOBAL_DECLARATION,
                          ERROR_NONLOCAL_BLOCKED_NAME.format(name=name))

    def _check_def(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        if self._is_blocked_identifier(node.name):
            self._add(node, Rule.FUNCTION_NAME, ERROR_FUNCDEF_BLOCKED_NAME.format(name=node.name))

    def visit_FunctionDef(self, node: ast.FunctionDef) -> None:
        self._check_def(node)

    def visit_AsyncFunctionDef(self, node: ast.AsyncFunctionDef) -> None:
        self._check_def(node)

    def visit_ClassDef(self, node: ast.ClassDef) -> None:
        if self._is_blocked_identifier(node.name):
            self._add(node, Rule.CLASS_NAME, ERROR_CLASSDEF_BLOCKED_NAME.format(name=node.name))

    def visit_ExceptHandler(self, node: ast.ExceptHandler) -> None:
        if node.name:
            self._check_binding(node, node.name)

    def visit_arg(self, node: ast.arg) -> None:
        if self._is_blocked_identifier(node.arg):
            self._add(node, Rule.PARAMETER_NAME, ERROR_PARAM_BLOCKED_NAME.format(name=node.arg))

    # ---- match statements --------------------------------------------------

    def visit_MatchClass(self, node: ast.MatchClass) -> None:
        if node.patterns:
            self._add(node, Rule.MATCH_POSITIONAL, ERROR_MATCH_POSITIONAL_PATTERN)
        for attr in node.kwd_attrs:
            if attr in self.policy.blocked_attributes:
                self._add(node, Rule.MATCH_ATTRIBUTE,
                          ERROR_MATCH_PATTERN_ATTRIBUTE.format(attr=attr))

    def visit_MatchAs(self, node: ast.MatchAs) -> None:
        if node.name:
            self._check_binding(node, node.name)

    def visit_MatchStar(self, node: ast.MatchStar) -> None:
        if node.name:
            self._check_binding(node, node.name)

    def visit_MatchMapping(self, node: ast.MatchMapping) -> None:
        if node.rest:
            self._check_binding(node, node.rest)


class _Cache:
    """A thread-safe LRU of analysis results keyed by (code digest, policy)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: OrderedDict[tuple[str, SecurityPolicy], tuple[Violation, ...]] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def get(self, key: tuple[str, SecurityPolicy]) -> tuple[Violation, ...] | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: tuple[str, SecurityPolicy], value: tuple[Violation, ...]) -> None:
        with self._lock:
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.size:
                self._entries.popitem(last=False)

    def __len__(self) -> int:
        return len(self._entries)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


_CACHE = _Cache(CACHE_SIZE)


def clear_cache() -> None:
    """Forget every cached result (tests; a policy reload needs nothing: it is in the key)."""
    _CACHE.clear()


def _parse(code: str) -> ast.Module | None:
    """Parse user code; ``None`` if the tree is too deep for the parser.

    Raises:
        SyntaxError: The code is not valid Python, contains null bytes, or
            cannot be encoded as UTF-8 (lone surrogates).
    """
    try:
        return ast.parse(code)
    except (RecursionError, MemoryError):
        # CPython's parser signals a too-deep tree with these; refuse the code
        # rather than let them escape into the runner.
        return None
    except UnicodeEncodeError as exc:
        raise SyntaxError(f"source code cannot be encoded as UTF-8: {exc.reason}") from exc
    except ValueError as exc:  # null bytes on some 3.11 patch releases
        raise SyntaxError(str(exc)) from exc


def _finish(violations: list[Violation]) -> tuple[Violation, ...]:
    """Sort by position; drop repeats of the same message on the same line."""
    seen: set[tuple[int, str]] = set()
    kept: list[Violation] = []
    for violation in sorted(violations, key=lambda v: (v.lineno, v.col)):
        key = (violation.lineno, violation.message)
        if key not in seen:
            seen.add(key)
            kept.append(violation)
    return tuple(kept)


def analyze(code: str, policy: SecurityPolicy) -> list[Violation]:
    """Return every violation of ``policy`` in ``code``, sorted by position.

    Identical messages on one line are reported once. Results are cached per
    (sha256 of the code, policy).

    Args:
        code: The Code node's Python source, unwrapped (line numbers refer to it).
        policy: The policy to check against.

    Returns:
        The violations; empty when the code may run.

    Raises:
        SyntaxError: The code does not parse; the caller reports ``str(exc)``.
    """
    key = (hashlib.sha256(code.encode("utf-8", "surrogatepass")).hexdigest(), policy)
    cached = _CACHE.get(key)
    if cached is not None:
        return list(cached)
    tree = _parse(code)
    if tree is None:
        result: tuple[Violation, ...] = (Violation(1, 0, Rule.TOO_COMPLEX, ERROR_TOO_COMPLEX),)
    else:
        result = _finish(_Checker(policy).run(tree))
    _CACHE.put(key, result)
    return list(result)


def validate(code: str, policy: SecurityPolicy) -> None:
    """Raise if ``code`` violates ``policy``.

    Args:
        code: The Code node's Python source, unwrapped.
        policy: The policy to check against.

    Raises:
        SecurityViolation: With one ``Line N: message`` string per violation;
            the runner sends ``"Security violations detected"`` and these lines
            joined by newlines.
        SyntaxError: The code does not parse.
    """
    violations = analyze(code, policy)
    if violations:
        raise SecurityViolation([str(v) for v in violations])
