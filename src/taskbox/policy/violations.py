"""One refused construct in user code, and the ids of the rules that refuse it.

A :class:`Violation` is what :func:`taskbox.policy.analyze` returns for every
construct it refuses; ``str(violation)`` is the ``Line N: message`` line that n8n
puts in a ``runner:taskerror`` description (n8n-python-runner.md §6.2).

The message texts are n8n's (``constants.py`` of ``@n8n/task-runner-python``),
byte for byte where n8n has one, so users see what they already know; the
import messages add the environment variable to set. Pure module: no I/O.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["Rule", "Violation"]


class Rule(enum.StrEnum):
    """Which rule refused a construct; stable ids for logs, tests and metrics."""

    #: ``import os`` where the standard-library allowlist does not cover ``os``.
    IMPORT_STDLIB = "import-stdlib"
    #: ``import numpy`` where the external allowlist does not cover ``numpy``.
    IMPORT_EXTERNAL = "import-external"
    #: ``from . import x``: there is no package to be relative to.
    IMPORT_RELATIVE = "import-relative"
    #: ``__import__(name)`` with a computed name, or ``__import__`` taken as a value.
    IMPORT_DYNAMIC = "import-dynamic"
    #: ``datetime.sys`` / ``random._os``: a module re-exported by an allowed one.
    MODULE_REEXPORT = "module-reexport"
    #: A name such as ``__builtins__`` or ``__spec__``.
    BLOCKED_NAME = "blocked-name"
    #: An attribute such as ``.__globals__`` or ``.f_back``.
    BLOCKED_ATTRIBUTE = "blocked-attribute"
    #: ``x._Class__secret``.
    NAME_MANGLED = "name-mangled"
    #: ``f = s.format``: the runtime format guard only sees direct calls.
    BARE_FORMAT = "bare-format"
    #: ``__import__`` taken out of the builtins by subscript: ``builtins['__import__']``.
    BUILTINS_SUBSCRIPT = "builtins-subscript"
    #: A string constant (or folded ``'a' + 'b'`` chain) equal to a blocked name.
    STRING_CONSTANT = "string-constant"
    #: A format template that traverses a blocked attribute: ``'{0.__globals__}'``.
    FORMAT_STRING = "format-string"
    #: ``global __builtins__`` / ``nonlocal``.
    GLOBAL_DECLARATION = "global-declaration"
    #: ``def __builtins__():`` or a method named after a blocked attribute.
    FUNCTION_NAME = "function-name"
    #: ``class __spec__:``.
    CLASS_NAME = "class-name"
    #: A parameter named ``__builtins__``.
    PARAMETER_NAME = "parameter-name"
    #: ``case C(x)``: positional sub-patterns read ``__match_args__`` attributes.
    MATCH_POSITIONAL = "match-positional"
    #: ``case AttributeError(obj=x)``.
    MATCH_ATTRIBUTE = "match-attribute"
    #: The tree is too deep to check; refused rather than half-checked.
    TOO_COMPLEX = "too-complex"


@dataclass(frozen=True, slots=True)
class Violation:
    """One refused construct.

    Attributes:
        lineno: 1-based line in the user's code (not the wrapped code).
        col: 0-based column offset, as in :mod:`ast`.
        rule: The rule that refused it.
        message: The user-facing reason, without the ``Line N:`` prefix.
    """

    lineno: int
    col: int
    rule: Rule
    message: str

    def __str__(self) -> str:
        return f"Line {self.lineno}: {self.message}"
