"""The AST analyzer: every rule of n8n-python-runner.md §6.2, taskbox's changes, no false positives."""

from __future__ import annotations

import ast
import textwrap
from collections.abc import Iterator

import pytest

from taskbox.errors import SecurityViolation
from taskbox.policy import Rule, SecurityPolicy, Violation, analyze, validate
from taskbox.policy import analyzer as analyzer_module
from taskbox.policy.policy import BLOCKED_ATTRIBUTES, BLOCKED_NAMES

DEFAULT = SecurityPolicy(stdlib_allow=("json", "math", "datetime", "random", "collections", "re"))
NOTHING = SecurityPolicy()
ALL = SecurityPolicy(stdlib_allow=("*",), external_allow=("*",))

ATTR = "Access to attribute '{}' is disallowed, because it can be used to bypass security restrictions."
NAME = "Access to name '{}' is disallowed, because it can be used to bypass security restrictions."
PATTERN = (
    "String pattern accessing '{}' is disallowed, because it can be used to bypass "
    "security restrictions."
)


@pytest.fixture(autouse=True)
def _fresh_cache() -> Iterator[None]:
    analyzer_module.clear_cache()
    yield
    analyzer_module.clear_cache()


def check(code: str, policy: SecurityPolicy = DEFAULT) -> list[Violation]:
    return analyze(textwrap.dedent(code), policy)


def lines(code: str, policy: SecurityPolicy = DEFAULT) -> list[str]:
    return [str(v) for v in check(code, policy)]


def rules(code: str, policy: SecurityPolicy = DEFAULT) -> list[Rule]:
    return [v.rule for v in check(code, policy)]


def assert_clean(code: str, policy: SecurityPolicy = DEFAULT) -> None:
    assert lines(code, policy) == []


# ---- imports -------------------------------------------------------------------------------


def test_allowed_imports_pass() -> None:
    assert_clean("import json\nfrom math import sqrt\nimport collections.abc\nimport re as regex")


def test_stdlib_import_refused_with_line_and_variable() -> None:
    assert lines("x = 1\nimport os") == [
        "Line 2: Import of standard library module 'os' is disallowed. Allowed stdlib modules: "
        "collections, datetime, json, math, random, re. Set N8N_RUNNERS_STDLIB_ALLOW to allow it."
    ]
    assert rules("import os") == [Rule.IMPORT_STDLIB]


def test_external_import_refused() -> None:
    assert lines("import numpy as np") == [
        "Line 1: Import of external package 'numpy' is disallowed. Allowed external packages: "
        "none. Set N8N_RUNNERS_EXTERNAL_ALLOW to allow it."
    ]
    assert rules("from pandas import DataFrame") == [Rule.IMPORT_EXTERNAL]


def test_each_refused_module_reported_once() -> None:
    assert rules("import os\nimport os\nfrom os import sep\nimport sys, os") == [
        Rule.IMPORT_STDLIB, Rule.IMPORT_STDLIB,
    ]


def test_wildcards_relax_only_imports() -> None:
    code = "import os, subprocess, ctypes, numpy\nfrom pandas import DataFrame\nx = os.__class__"
    assert lines(code, ALL) == ["Line 3: " + ATTR.format("__class__")]


def test_stdlib_wildcard_alone_still_refuses_external() -> None:
    policy = SecurityPolicy(stdlib_allow=("*",))
    assert rules("import os\nimport numpy", policy) == [Rule.IMPORT_EXTERNAL]


def test_external_wildcard_alone_still_refuses_stdlib() -> None:
    policy = SecurityPolicy(external_allow=("*",))
    assert rules("import numpy\nimport os", policy) == [Rule.IMPORT_STDLIB]


@pytest.mark.parametrize("code", ["from . import x", "from .. import y", "from .m import z"])
def test_relative_imports_refused(code: str) -> None:
    assert lines(code, ALL) == ["Line 1: Relative imports are disallowed."]
    assert rules(code, ALL) == [Rule.IMPORT_RELATIVE]


def test_dotted_entry_allows_submodule_imports() -> None:
    policy = SecurityPolicy(stdlib_allow=("os.path",))
    assert_clean("import os.path\nimport os.path as p\nfrom os import path\nfrom os.path import join",
                 policy)


def test_dotted_entry_does_not_allow_the_parent() -> None:
    policy = SecurityPolicy(stdlib_allow=("os.path",))
    refusal = (
        "Import of standard library module 'os' is disallowed. Allowed stdlib modules: "
        "os.path. Set N8N_RUNNERS_STDLIB_ALLOW to allow it."
    )
    assert lines("import os", policy) == ["Line 1: " + refusal]
    assert lines("from os import path, system", policy) == ["Line 1: " + refusal]
    assert lines("from os import *", policy) == ["Line 1: " + refusal]


def test_dunder_import_with_constant_is_checked_against_the_allowlist() -> None:
    assert_clean("j = __import__('json')")
    assert rules("o = __import__('os')") == [Rule.IMPORT_STDLIB]
    assert_clean("o = __import__('os')", ALL)


def test_dynamic_dunder_import_refused() -> None:
    message = "Dynamic __import__() calls are not allowed for security reasons."
    assert lines("m = __import__(name)") == ["Line 1: " + message]
    assert lines("m = __import__()") == ["Line 1: " + message]
    assert lines("f = __import__\nf('os')", ALL) == ["Line 1: " + message]


def test_builtins_dunder_import_refused() -> None:
    found = rules("import builtins\nbuiltins.__import__('json')", ALL)
    assert found == [Rule.BLOCKED_ATTRIBUTE]
    assert rules("import builtins\nbuiltins.__import__(n)", ALL) == [
        Rule.IMPORT_DYNAMIC, Rule.BLOCKED_ATTRIBUTE,
    ]


def test_import_module_with_a_constant_is_checked() -> None:
    policy = SecurityPolicy(stdlib_allow=("importlib", "json"))
    assert_clean("import importlib\nimportlib.import_module('json')", policy)
    assert rules("import importlib\nimportlib.import_module('os')", policy) == [
        Rule.IMPORT_STDLIB
    ]
    assert rules("from importlib import import_module as im\nim('os')", policy) == [
        Rule.IMPORT_STDLIB
    ]
    assert rules("import importlib as il\nil.import_module('.x', 'json')", policy) == [
        Rule.IMPORT_RELATIVE
    ]
    # Computed names are the runtime guard's job.
    assert_clean("import importlib\nimportlib.import_module(name)", policy)
    assert_clean("other.import_module('os')\nimport_module('os')\n(lambda m: 0)('os')", policy)


@pytest.mark.parametrize("alias", sorted(BLOCKED_NAMES))
def test_import_alias_with_blocked_name(alias: str) -> None:
    assert lines(f"import json as {alias}") == ["Line 1: " + NAME.format(alias)]
    assert lines(f"from json import loads as {alias}") == ["Line 1: " + NAME.format(alias)]


def test_import_alias_and_from_name_with_blocked_attribute() -> None:
    assert lines("import json as __class__") == ["Line 1: " + ATTR.format("__class__")]
    assert lines("from json import __loader__") == ["Line 1: " + NAME.format("__loader__")]
    assert lines("from json import __dict__") == ["Line 1: " + ATTR.format("__dict__")]
    assert_clean("from json import loads as obj")


# ---- modules re-exported by allowed modules ---------------------------------------------------


def test_reexported_modules_refused() -> None:
    found = lines("import datetime, random\nx = datetime.sys\ny = random._os")
    assert found[0].startswith(
        "Line 2: Access to 'datetime.sys' is disallowed: it can reach the module 'sys'. "
        "Import of standard library module 'sys' is disallowed."
    )
    assert found[1].startswith("Line 3: Access to 'random._os' is disallowed")
    assert rules("from datetime import sys\nfrom random import _os as o") == [
        Rule.MODULE_REEXPORT, Rule.MODULE_REEXPORT,
    ]


def test_reexport_through_aliases_and_chains() -> None:
    policy = SecurityPolicy(stdlib_allow=("xml", "random", "os.path"))
    assert rules("import random as r\nr._os.system('id')", policy) == [Rule.MODULE_REEXPORT]
    assert rules("import xml.sax.saxutils\nxml.sax.saxutils.os", policy) == [Rule.MODULE_REEXPORT]
    assert rules("import os.path as p\np.os", policy) == [Rule.MODULE_REEXPORT]
    assert rules("from os.path import os", policy) == [Rule.MODULE_REEXPORT]


def test_reexport_allowed_when_the_module_is_allowed() -> None:
    policy = SecurityPolicy(stdlib_allow=("datetime", "sys"))
    assert_clean("import datetime\nx = datetime.sys", policy)
    assert_clean("import datetime, random\nx = datetime.sys\ny = random._os", ALL)


def test_reexport_rule_ignores_ordinary_attributes_and_objects() -> None:
    assert_clean("""
        import datetime, collections, json
        t = datetime.time(1, 2)
        d = datetime.datetime.now
        m = collections.abc.Mapping
        j = json.decoder.JSONDecodeError
        x = something.os
        y = (1).real
    """)


# ---- names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(BLOCKED_NAMES))
def test_blocked_names_refused_in_every_context(name: str) -> None:
    message = NAME.format(name)
    assert lines(f"x = {name}") == ["Line 1: " + message]
    assert lines(f"{name} = 1") == ["Line 1: " + message]
    assert lines(f"del {name}") == ["Line 1: " + message]
    assert lines(f"x = {name}", ALL) == ["Line 1: " + message]


def test_dunder_blocked_attribute_as_a_name_refused() -> None:
    # Inside a method, ``__class__`` is the implicit class cell.
    code = "class A:\n    def f(self):\n        return __class__"
    assert lines(code) == ["Line 3: " + NAME.format("__class__")]


def test_non_dunder_blocked_attributes_are_fine_as_names() -> None:
    assert_clean("obj = 1\nf_back = 2\ntb_frame = obj + f_back")


# ---- attributes ----------------------------------------------------------------------------


@pytest.mark.parametrize("attr", sorted(BLOCKED_ATTRIBUTES))
def test_every_blocked_attribute_refused(attr: str) -> None:
    assert lines(f"y = x.{attr}") == ["Line 1: " + ATTR.format(attr)]
    assert lines(f"x.{attr} = y", ALL) == ["Line 1: " + ATTR.format(attr)]
    assert rules(f"del x.{attr}") == [Rule.BLOCKED_ATTRIBUTE]


@pytest.mark.parametrize(
    ("family", "code", "expected"),
    [
        ("generator frames", """
            def g():
                yield gen.gi_frame.f_back
            gen = g()
            f = next(gen)
            while f is not None:
                x = f.f_locals, f.f_globals, f.f_builtins, f.f_code
                f = f.f_back
        """, ["gi_frame", "f_back", "f_locals", "f_globals", "f_builtins", "f_code", "f_back"]),
        ("tracebacks", """
            try:
                1 / 0
            except Exception as e:
                f = e.__traceback__.tb_next.tb_frame
        """, ["__traceback__", "tb_next", "tb_frame"]),
        ("coroutines", "c.cr_frame, c.cr_code, c.cr_await",
         ["cr_frame", "cr_code", "cr_await"]),
        ("async generators", "a.ag_frame, a.ag_code, a.ag_await",
         ["ag_frame", "ag_code", "ag_await"]),
        ("generators", "g.gi_frame, g.gi_code, g.gi_yieldfrom",
         ["gi_frame", "gi_code", "gi_yieldfrom"]),
        ("sys frames", "sys._getframe(1)\nsys._current_frames()", ["_getframe", "_current_frames"]),
        ("class graph", "().__class__.__base__.__subclasses__()[0].__mro__",
         ["__class__", "__base__", "__subclasses__", "__mro__"]),
        ("functions", "print.__globals__, f.__code__, f.__closure__[0].cell_contents",
         ["__globals__", "__code__", "__closure__", "cell_contents"]),
        ("method internals", "len.__self__, m.__func__, f.__wrapped__, f.__defaults__",
         ["__self__", "__func__", "__wrapped__", "__defaults__"]),
        ("attribute hooks", "ga = x.__getattribute__\nx.__dict__", ["__getattribute__", "__dict__"]),
        ("super and errors", "s.__thisclass__, s.__self_class__, d.__objclass__, e.obj",
         ["__thisclass__", "__self_class__", "__objclass__", "obj"]),
        ("pickling", "x.__reduce__(), x.__reduce_ex__(2)", ["__reduce__", "__reduce_ex__"]),
        ("modules", "m.__loader__, m.__spec__, m.__builtins__, m.__cached__",
         ["__loader__", "__spec__", "__builtins__", "__cached__"]),
    ],
)
def test_blocked_attribute_families(family: str, code: str, expected: list[str]) -> None:
    found = [v for v in check(code, ALL) if v.rule is Rule.BLOCKED_ATTRIBUTE]
    assert {v.message for v in found} == {ATTR.format(a) for a in expected}, family


def test_attributes_reported_in_reading_order_on_their_own_line() -> None:
    found = lines("x = (y\n     .__class__\n     .__mro__)", ALL)
    assert found == ["Line 2: " + ATTR.format("__class__"), "Line 3: " + ATTR.format("__mro__")]
    found = lines("a.__class__.__base__.__subclasses__()", ALL)
    assert found == ["Line 1: " + ATTR.format(a) for a in ("__class__", "__base__", "__subclasses__")]


def test_unicode_identifiers_are_normalized_by_the_parser() -> None:
    # NFKC: the fullwidth letters become '__globals__' in the AST (corpus D05).
    assert lines("x = print.__\uff47\uff4c\uff4f\uff42\uff41\uff4c\uff53__", ALL) == [
        "Line 1: " + ATTR.format("__globals__")
    ]


def test_name_mangled_attributes_refused() -> None:
    message = (
        "Access to name-mangled attributes (pattern: _ClassName__attr) is disallowed for "
        "security reasons."
    )
    assert lines("x._Secret__token", ALL) == ["Line 1: " + message]
    assert lines("x.__Secret__token", ALL) == []  # head is empty: not the mangled pattern
    assert rules("x._A__") == [Rule.NAME_MANGLED]
    assert_clean("x._private\nx.__private\nx.__dunder__\nx.a__b\nx.___x")


@pytest.mark.parametrize("method", ["format", "format_map", "vformat", "get_field"])
def test_bare_format_methods_refused(method: str) -> None:
    assert lines(f"f = s.{method}", ALL) == [
        f"Line 1: Extracting '{method}' as a bound method is disallowed; call it directly on "
        "its receiver instead."
    ]
    assert rules(f"m = map(s.{method}, xs)", ALL) == [Rule.BARE_FORMAT]
    assert_clean(f"r = s.{method}(x)", ALL)


def test_builtins_subscripts_with_blocked_keys() -> None:
    assert rules("import builtins\nf = builtins['__import__']", ALL) == [Rule.BUILTINS_SUBSCRIPT]
    assert rules("x = m.__builtins__['__spec__']", ALL) == [
        Rule.BUILTINS_SUBSCRIPT, Rule.BLOCKED_ATTRIBUTE,
    ]
    assert rules("x = m.builtins['__name__']", ALL) == [Rule.BUILTINS_SUBSCRIPT]
    assert lines("x = builtins['obj']", ALL) == ["Line 1: " + ATTR.format("obj")]
    # Keys that are not blocked, and subscripts of anything else, are fine.
    assert_clean("import builtins\nx = builtins['len']\ny = d['__class__x']\nz = builtins[k]", ALL)


# ---- string constants, format strings, concatenation ------------------------------------------


def test_string_constants_equal_to_blocked_names() -> None:
    assert lines("k = '__globals__'") == ["Line 1: " + NAME.format("__globals__")]
    assert lines("k = '__subclasses__'") == ["Line 1: " + ATTR.format("__subclasses__")]
    assert lines("k = '__builtins__'") == ["Line 1: " + NAME.format("__builtins__")]
    assert lines("getattr(f, 'tb_frame')", ALL) == ["Line 1: " + ATTR.format("tb_frame")]
    assert rules("k = '__class__'") == [Rule.STRING_CONSTANT]


def test_string_constants_that_merely_contain_words_are_fine() -> None:
    assert_clean("""
        a = 'object'
        b = 'module'
        c = 'obj'
        d = {'obj': 1, 'class': 2, '__init__': 3}
        e = 'the __globals__ of a function'
        f = b'__globals__'
    """)


@pytest.mark.parametrize(
    ("template", "tokens"),
    [
        ("'{0.__globals__[RUNNER_SECRET]}'.format(print)", ["__globals__"]),
        ("'{0[__builtins__]}'.format(d)", ["__builtins__"]),
        ("'{0.__class__.__mro__}'", ["__class__", "__mro__"]),
        ("'{x.gi_frame.f_back}'", ["gi_frame", "f_back"]),
        ("'{0:{1.__class__}}'.format('x', 1)", ["__class__"]),
        ("'{0:{1:{2.__dict__}}}'", ["__dict__"]),
        ("'{0!r:>{1.__class__}}'", ["__class__"]),
        ("'{0._Secret__token}'", ["_Secret__token"]),
        ("'{0.obj}'", ["obj"]),
        ("'{0.__globals__}{'.format(print)", ["__globals__"]),  # malformed after the field
        ("f'{{0.__globals__}}'.format(print)", ["__globals__"]),  # escaped braces in an f-string
    ],
)
def test_format_string_traversal(template: str, tokens: list[str]) -> None:
    found = check(template, ALL)
    assert [v.rule for v in found] == [Rule.FORMAT_STRING] * len(tokens)
    assert [v.message for v in found] == [PATTERN.format(t) for t in tokens]


def test_f_string_expressions_are_checked_as_code() -> None:
    assert rules("s = f'{x.__class__}'", ALL) == [Rule.BLOCKED_ATTRIBUTE]
    assert rules("s = f'{x:{y.__class__}}'", ALL) == [Rule.BLOCKED_ATTRIBUTE]
    assert rules("s = f'{x!r:>{w}}'", ALL) == []


def test_normal_format_templates_are_fine() -> None:
    assert_clean("""
        a = '{} and {}'.format(1, 2)
        b = '{name}: {0.real} {0[1]} {d[key]}'.format(x, name='n', d={})
        c = '{:>10}'.format(3)
        d = '{name}'.format_map({'name': 1})
        e = f'{a!r} {b:>{10}} {c=}'
        g = '{' + '}'
        h = '{0[}'
        i = '{0..x}'
        j = '{0.}'
        k = '}{'
    """)


def test_format_spec_nesting_is_bounded() -> None:
    deep = "{0:" * 200 + "}" * 200
    assert_clean(f"x = {deep!r}", ALL)
    beyond = "'" + "{0:" * 12 + "{1.__class__}" + "}" * 12 + "'"
    assert rules(beyond, ALL) == []  # str.format itself stops at depth 2


def test_concatenated_literals_are_folded() -> None:
    assert lines("k = '__glob' + 'als__'") == ["Line 1: " + NAME.format("__globals__")]
    assert rules("k = '__' + 'sub' + 'classes__'") == [Rule.STRING_CONSTANT]
    assert rules("k = '__sub' + f'classes__'") == [Rule.STRING_CONSTANT]
    assert rules("k = '{0.__glo' + 'bals__}'") == [Rule.FORMAT_STRING]
    assert rules("k = ('__builtins' + '__') + ''") == [Rule.STRING_CONSTANT]


def test_concatenation_with_non_literals_is_not_folded() -> None:
    assert_clean("k = x + '__glob' + 'als__'")  # (x + '__glob') + 'als__': not a literal
    assert_clean("k = '__glob' + x\nn = 1 + 2\nm = f'{x}' + 'y'\nl = [1] + [2]")
    assert rules("k = '__glob' + 'als__' + x") == [Rule.STRING_CONSTANT]


def test_long_concatenation_is_folded_once(monkeypatch: pytest.MonkeyPatch) -> None:
    # Linear means each maximal literal tree is folded once, at its root; folding every
    # sub-tree again (the quadratic bug) would call _fold once per '+' (899 times).
    # Counted, not timed: speed belongs in the bench.
    calls: list[ast.BinOp] = []
    fold = analyzer_module._Checker._fold

    def counting(root: ast.BinOp) -> str:
        calls.append(root)
        return fold(root)

    monkeypatch.setattr(analyzer_module._Checker, "_fold", staticmethod(counting))
    code = "k = " + " + ".join(["'ab'"] * 900)
    assert analyze(code, DEFAULT) == []
    assert len(calls) == 1
    assert rules("k = '_' + '_' + 'builtins__'") == [Rule.STRING_CONSTANT]
    assert len(calls) == 2


# ---- declarations ------------------------------------------------------------------------------


def test_global_and_nonlocal_declarations() -> None:
    assert lines("global __builtins__") == [
        "Line 1: Global declaration of '__builtins__' is disallowed, because it can be used to "
        "bypass security restrictions."
    ]
    code = "def f():\n    __class__ = 1\n    def g():\n        nonlocal __class__"
    assert rules(code) == [Rule.BLOCKED_NAME, Rule.GLOBAL_DECLARATION]
    assert_clean("def f():\n    x = 1\n    def g():\n        nonlocal x\n    global y")


def test_function_and_class_names() -> None:
    assert lines("def __builtins__(): pass") == [
        "Line 1: Function named '__builtins__' is disallowed, because it can be used to bypass "
        "security restrictions."
    ]
    assert rules("async def __spec__(): pass") == [Rule.FUNCTION_NAME]
    assert lines("class __loader__: pass") == [
        "Line 1: Class named '__loader__' is disallowed, because it can be used to bypass "
        "security restrictions."
    ]


@pytest.mark.parametrize(
    "method",
    ["__getattr__", "__getattribute__", "__setattr__", "__delattr__", "__reduce__",
     "__reduce_ex__", "__init_subclass__", "__prepare__", "__instancecheck__",
     "__subclasscheck__"],
)
def test_methods_named_after_blocked_attributes(method: str) -> None:
    code = f"class A:\n    def {method}(self, *a):\n        return 1"
    assert rules(code) == [Rule.FUNCTION_NAME]
    assert lines(code)[0].startswith(f"Line 2: Function named '{method}'")


def test_class_body_cannot_set_match_args() -> None:
    assert rules("class P:\n    __match_args__ = ('x',)") == [Rule.BLOCKED_NAME]


def test_parameter_names() -> None:
    message = (
        "Line 1: Parameter named '__builtins__' is disallowed, because it can be used to "
        "bypass security restrictions."
    )
    assert lines("def f(__builtins__): pass") == [message]
    assert rules("g = lambda __globals__: 0") == [Rule.PARAMETER_NAME]
    assert rules("def f(*, __class__=1): pass") == [Rule.PARAMETER_NAME]


def test_except_names() -> None:
    assert lines("try:\n    pass\nexcept Exception as __builtins__:\n    pass") == [
        "Line 3: " + NAME.format("__builtins__")
    ]
    assert rules("try:\n    pass\nexcept E as __dict__:\n    pass") == [Rule.BLOCKED_ATTRIBUTE]
    assert_clean("try:\n    pass\nexcept Exception as e:\n    pass\nexcept ValueError:\n    pass")


# ---- match statements --------------------------------------------------------------------------


def test_match_positional_patterns_refused() -> None:
    code = "match v:\n    case Point(a, b):\n        pass"
    assert lines(code) == ["Line 2: Positional match patterns are disallowed for security reasons."]


def test_match_keyword_patterns_with_blocked_attributes() -> None:
    code = "match e:\n    case AttributeError(obj=o):\n        pass\n    case C(__class__=c):\n        pass"
    assert lines(code, ALL) == [
        "Line 2: Match pattern extracting attribute 'obj' is disallowed, because it can be used "
        "to bypass security restrictions.",
        "Line 4: Match pattern extracting attribute '__class__' is disallowed, because it can be "
        "used to bypass security restrictions.",
    ]


def test_match_capture_names_and_value_patterns() -> None:
    code = """
        match v:
            case [*__spec__]:
                pass
            case {**__loader__}:
                pass
            case x.__class__:
                pass
            case {'k': 1} as __builtins__:
                pass
    """
    assert rules(code) == [
        Rule.BLOCKED_NAME, Rule.BLOCKED_NAME, Rule.BLOCKED_ATTRIBUTE, Rule.BLOCKED_NAME,
    ]


def test_ordinary_match_statements_are_fine() -> None:
    assert_clean("""
        match command:
            case {'action': 'go', 'to': where}:
                pass
            case [first, *rest]:
                pass
            case [_, *_]:
                pass
            case Point(x=0, y=yy) | Point(x=1, y=yy):
                pass
            case str() | int():
                pass
            case {**others}:
                pass
            case _:
                pass
    """)


# ---- false positives -----------------------------------------------------------------------------


def test_classes_with_ordinary_dunder_methods_pass() -> None:
    assert_clean("""
        class Foo:
            '''A normal class.'''
            count = 0

            def __init__(self, x):
                super().__init__()
                self.x = x
                self.__hidden = x

            def __str__(self):
                return f'Foo({self.x})'

            def __repr__(self):
                return 'Foo(%r)' % (self.x,)

            def __eq__(self, other):
                return isinstance(other, Foo) and self.x == other.x

            def __len__(self):
                return 1

            def __iter__(self):
                return iter([self.x])

            def __hash__(self):
                return hash(self.x)

            @property
            def double(self):
                return self.x * 2

            @classmethod
            def make(cls):
                return cls(1)

        class Bar(Foo):
            pass

        return [{'json': {'foo': str(Foo(1)), 'n': len(Bar(2))}}]
    """, NOTHING)


def test_typical_code_node_passes() -> None:
    assert_clean("""
        import json
        import datetime
        from collections import Counter
        import re

        out = []
        for item in _items:
            data = item['json']
            parsed = json.loads(data.get('raw', '{}'))
            when = datetime.datetime.strptime(data['date'], '%Y-%m-%d')
            words = Counter(re.findall(r'\\w+', data.get('text', '')))
            label = '{}-{}'.format(data['id'], when.year)
            out.append({'json': {'label': label, 'object': 'module', 'top': words.most_common(1),
                                 'parsed': parsed, 'msg': f"{label!r}: {when:%d.%m}"}})
        print('done', len(out))
        return out
    """)


def test_parse_methods_and_common_words_pass() -> None:
    assert_clean("""
        from urllib import parse
        u = parse.urlparse('http://127.0.0.1/')
        v = parser.parse(text)
        obj = {'object': 'module', 'type': 'class'}
        module = object_ = 'x'
    """, SecurityPolicy(stdlib_allow=("urllib",)))


def test_top_level_return_and_await_parse() -> None:
    assert_clean("return [{'json': {}}]")


# ---- reporting ---------------------------------------------------------------------------------


def test_every_violation_is_reported_with_its_line() -> None:
    code = textwrap.dedent("""\
        import os
        x = 1
        y = print.__globals__
        z = '{0.__class__}'.format(1)

        def f(__builtins__):
            return __spec__
        match z:
            case C(a):
                pass
    """)
    with pytest.raises(SecurityViolation) as info:
        validate(code, DEFAULT)
    assert str(info.value) == "Security violations detected"
    assert [line.split(":")[0] for line in info.value.violations] == [
        "Line 1", "Line 3", "Line 4", "Line 6", "Line 7", "Line 9",
    ]
    assert info.value.violations[1] == "Line 3: " + ATTR.format("__globals__")


def test_same_message_on_one_line_reported_once_but_kept_across_lines() -> None:
    assert lines("a.__class__, b.__class__\nc.__class__", ALL) == [
        "Line 1: " + ATTR.format("__class__"), "Line 2: " + ATTR.format("__class__"),
    ]


def test_validate_passes_clean_code() -> None:
    validate("return _items", DEFAULT)


def test_violation_str_and_fields() -> None:
    violation = Violation(3, 4, Rule.BLOCKED_NAME, "msg")
    assert str(violation) == "Line 3: msg"
    assert violation.rule == "blocked-name"
    with pytest.raises(AttributeError):
        violation.lineno = 1  # type: ignore[misc]


# ---- malformed and hostile input -----------------------------------------------------------------


def test_syntax_errors_propagate() -> None:
    with pytest.raises(SyntaxError) as info:
        validate("x = (", DEFAULT)
    assert info.value.lineno == 1


def test_null_bytes_are_a_syntax_error() -> None:
    with pytest.raises(SyntaxError):
        analyze("x = 1\x00", DEFAULT)


def test_lone_surrogates_are_a_syntax_error() -> None:
    with pytest.raises(SyntaxError, match="UTF-8"):
        analyze("x = '\ud800'", DEFAULT)


def test_value_error_from_the_parser_becomes_a_syntax_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def parse(code: str) -> ast.Module:
        raise ValueError("source code string cannot contain null bytes")

    monkeypatch.setattr(ast, "parse", parse)
    with pytest.raises(SyntaxError, match="null bytes"):
        analyze("x = 1", DEFAULT)


@pytest.mark.parametrize(
    "code",
    [
        "x = " + " + ".join(["1"] * 100_000),  # RecursionError during AST construction
        "x = " + "-" * 100_000 + "1",  # MemoryError from the parser's own stack guard
    ],
)
def test_too_deep_trees_are_refused_not_crashing(code: str) -> None:
    assert [str(v) for v in analyze(code, DEFAULT)] == [
        "Line 1: The code is nested too deeply to be checked; simplify it."
    ]
    assert analyze(code, DEFAULT)[0].rule is Rule.TOO_COMPLEX


def test_deep_but_parsable_trees_do_not_exhaust_the_stack() -> None:
    code = "x = " + " + ".join(["y.__class__"] * 400)
    assert [v.rule for v in analyze(code, ALL)] == [Rule.BLOCKED_ATTRIBUTE]


# ---- cache ---------------------------------------------------------------------------------------


class _Counting:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = analyzer_module._Checker.run

        def run(checker: analyzer_module._Checker, tree: ast.AST) -> list[Violation]:
            self.calls += 1
            return real(checker, tree)

        monkeypatch.setattr(analyzer_module._Checker, "run", run)


def test_results_are_cached_per_code_and_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = _Counting(monkeypatch)
    first = analyze("import os", DEFAULT)
    again = analyze("import os", DEFAULT)
    assert first == again and counter.calls == 1
    again.clear()  # callers get a copy
    assert analyze("import os", DEFAULT) == first
    assert analyze("import os", ALL) == [] and counter.calls == 2
    assert analyze("import os ", DEFAULT) != [] and counter.calls == 3


def test_cache_is_an_lru_of_500(monkeypatch: pytest.MonkeyPatch) -> None:
    counter = _Counting(monkeypatch)
    analyze("x = 0", DEFAULT)
    for i in range(1, 500):
        analyze(f"x = {i}", DEFAULT)
    assert len(analyzer_module._CACHE) == 500
    analyze("x = 0", DEFAULT)  # a hit moves it to the end
    analyze("x = 500", DEFAULT)  # evicts "x = 1", the least recently used
    assert len(analyzer_module._CACHE) == 500
    calls = counter.calls
    analyze("x = 0", DEFAULT)
    assert counter.calls == calls
    analyze("x = 1", DEFAULT)
    assert counter.calls == calls + 1


def test_refusals_of_too_deep_code_are_cached(monkeypatch: pytest.MonkeyPatch) -> None:
    code = "x = " + "-" * 100_000 + "1"
    analyze(code, DEFAULT)
    monkeypatch.setattr(analyzer_module, "_parse", None)  # would fail if called again
    assert analyze(code, DEFAULT)[0].rule is Rule.TOO_COMPLEX
