"""SecurityPolicy, parse_allowlist and check_import: n8n's allowlist semantics (§6.3)."""

from __future__ import annotations

import pytest

from taskbox.errors import ConfigError
from taskbox.executor.limits import Limits
from taskbox.policy import SecurityPolicy, parse_allowlist
from taskbox.policy.policy import BLOCKED_ATTRIBUTES, BLOCKED_NAMES

STDLIB = "N8N_RUNNERS_STDLIB_ALLOW"
EXTERNAL = "N8N_RUNNERS_EXTERNAL_ALLOW"


# ---- parse_allowlist: the shared n8n contract (allowlist-parsing.json) ---------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("", ()),
        ("   ", ()),
        ("re", ("re",)),
        ("re,json", ("re", "json")),
        ("re, json ,math", ("re", "json", "math")),
        ("re,,json,", ("re", "json")),
        ("re,re,json", ("re", "json")),
        ("RE", ("RE",)),
        ("os.path", ("os.path",)),
        ("*", ("*",)),
        (" * ", ("*",)),
        ("*,*", ("*",)),
        ("json,re,json,math,re", ("json", "re", "math")),
    ],
)
def test_parse_allowlist(value: str, expected: tuple[str, ...]) -> None:
    assert parse_allowlist(value, STDLIB) == expected


@pytest.mark.parametrize("value", ["*,re", " re , * ", "json,*"])
@pytest.mark.parametrize("var", [STDLIB, EXTERNAL])
def test_wildcard_not_alone_is_a_config_error_naming_the_variable(value: str, var: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_allowlist(value, var)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"{var}: ")
    assert "'*'" in info.value.problems[0]


def test_policy_rejects_wildcard_with_other_entries_in_both_lists() -> None:
    with pytest.raises(ConfigError) as info:
        SecurityPolicy(stdlib_allow=("*", "os"), external_allow=("numpy", "*"))
    assert [p.split(":")[0] for p in info.value.problems] == [STDLIB, EXTERNAL]


# ---- N8N_RUNNERS_STDLIB_ALLOW ----------------------------------------------------------


def test_stdlib_default_allows_nothing() -> None:
    policy = SecurityPolicy()
    assert policy.check_import("json") == (
        "Import of standard library module 'json' is disallowed. "
        "Allowed stdlib modules: none. Set N8N_RUNNERS_STDLIB_ALLOW to allow it."
    )


def test_stdlib_listed_module_and_its_submodules_are_allowed() -> None:
    policy = SecurityPolicy(stdlib_allow=("math", "json"))
    assert policy.check_import("json") is None
    assert policy.check_import("json.decoder") is None
    assert policy.check_import("math") is None


def test_stdlib_refusal_lists_the_allowed_modules_sorted() -> None:
    policy = SecurityPolicy(stdlib_allow=("math", "json"))
    assert policy.check_import("os") == (
        "Import of standard library module 'os' is disallowed. "
        "Allowed stdlib modules: json, math. Set N8N_RUNNERS_STDLIB_ALLOW to allow it."
    )


def test_stdlib_wildcard_allows_every_stdlib_module_but_no_external_one() -> None:
    policy = SecurityPolicy(stdlib_allow=("*",))
    for module in ("os", "subprocess", "ctypes", "os.path", "_strptime"):
        assert policy.check_import(module) is None
    assert policy.check_import("numpy") is not None


def test_stdlib_entries_are_case_sensitive() -> None:
    policy = SecurityPolicy(stdlib_allow=("JSON",))
    assert policy.check_import("json") is not None


def test_stdlib_entry_does_not_match_a_longer_name() -> None:
    policy = SecurityPolicy(stdlib_allow=("json",))
    assert policy.check_import("jsonschema") is not None  # external, and not listed


# ---- N8N_RUNNERS_EXTERNAL_ALLOW ----------------------------------------------------------


def test_external_default_allows_nothing() -> None:
    assert SecurityPolicy().check_import("numpy") == (
        "Import of external package 'numpy' is disallowed. "
        "Allowed external packages: none. Set N8N_RUNNERS_EXTERNAL_ALLOW to allow it."
    )


def test_external_listed_package_and_submodules_are_allowed() -> None:
    policy = SecurityPolicy(external_allow=("pandas",))
    assert policy.check_import("pandas") is None
    assert policy.check_import("pandas.io.json") is None
    assert policy.check_import("numpy") == (
        "Import of external package 'numpy' is disallowed. "
        "Allowed external packages: pandas. Set N8N_RUNNERS_EXTERNAL_ALLOW to allow it."
    )


def test_external_wildcard_allows_every_external_package_but_no_stdlib_module() -> None:
    policy = SecurityPolicy(external_allow=("*",))
    assert policy.check_import("numpy") is None
    assert policy.check_import("anything.at.all") is None
    assert policy.check_import("os") is not None


def test_external_list_does_not_allow_stdlib_modules_of_the_same_name() -> None:
    policy = SecurityPolicy(external_allow=("os",))
    assert policy.check_import("os") is not None


# ---- dotted entries (n8n bug fixed: they work, and do not allow the parent) ----------------


def test_dotted_entry_allows_the_submodule_and_below() -> None:
    policy = SecurityPolicy(stdlib_allow=("os.path",))
    assert policy.check_import("os.path") is None
    assert policy.check_import("os.path.sub") is None


def test_dotted_entry_does_not_allow_the_parent_or_siblings() -> None:
    policy = SecurityPolicy(stdlib_allow=("os.path",))
    assert policy.check_import("os") is not None
    assert policy.check_import("os.pathlib") is not None
    assert policy.check_import("os.system") is not None


def test_dotted_external_entry() -> None:
    policy = SecurityPolicy(external_allow=("google.cloud",))
    assert policy.check_import("google.cloud.storage") is None
    assert policy.check_import("google") is not None


# ---- relative and empty imports ------------------------------------------------------------


@pytest.mark.parametrize("module", [".", ".x", "..x.y"])
def test_relative_imports_are_refused(module: str) -> None:
    policy = SecurityPolicy(stdlib_allow=("*",), external_allow=("*",))
    assert policy.check_import(module) == "Relative imports are disallowed."


def test_empty_module_name_is_refused() -> None:
    policy = SecurityPolicy(stdlib_allow=("*",), external_allow=("*",))
    assert policy.check_import("") == "Import of an empty module name is disallowed."


# ---- construction and helpers ---------------------------------------------------------------


def test_from_limits_copies_the_python_level_policy() -> None:
    limits = Limits(
        stdlib_allow=("json",), external_allow=("*",), builtins_deny=("eval",),
        allow_transitive_imports=True,
    )
    policy = SecurityPolicy.from_limits(limits)
    assert policy == SecurityPolicy(
        stdlib_allow=("json",), external_allow=("*",), builtins_deny=("eval",),
        allow_transitive_imports=True,
    )
    assert policy.blocked_names == BLOCKED_NAMES
    assert policy.blocked_attributes == BLOCKED_ATTRIBUTES


def test_policy_is_hashable_and_frozen() -> None:
    a = SecurityPolicy(stdlib_allow=("json",))
    b = SecurityPolicy(stdlib_allow=("json",))
    assert hash(a) == hash(b)
    with pytest.raises(AttributeError):
        a.stdlib_allow = ("os",)  # type: ignore[misc]


def test_allows_all_imports_needs_both_wildcards() -> None:
    assert SecurityPolicy(stdlib_allow=("*",), external_allow=("*",)).allows_all_imports
    assert not SecurityPolicy(stdlib_allow=("*",)).allows_all_imports
    assert not SecurityPolicy(external_allow=("*",)).allows_all_imports


def test_sensitive_names() -> None:
    policy = SecurityPolicy()
    assert policy.is_sensitive_name("__builtins__")
    assert policy.is_sensitive_name("__class__")
    assert policy.is_sensitive_name("tb_frame")
    # An everyday word, harmless as a variable name or a key.
    assert not policy.is_sensitive_name("obj")
    assert not policy.is_sensitive_name("object")
    assert not policy.is_sensitive_name("__init__")


def test_blocked_lists_cover_n8n_and_frame_walking() -> None:
    n8n_names = {"__loader__", "__builtins__", "__globals__", "__spec__", "__name__"}
    assert n8n_names <= BLOCKED_NAMES
    required = {
        "gi_frame", "f_back", "tb_frame", "f_builtins", "cr_frame", "ag_frame",
        "__subclasses__", "__globals__", "__class__", "__mro__", "__dict__", "__code__",
        "__objclass__", "obj", "__reduce__", "__reduce_ex__", "__prepare__",
        "__instancecheck__", "__subclasscheck__", "__match_args__", "__self__",
        "__closure__", "__getattribute__", "__init_subclass__",
    }
    assert required <= BLOCKED_ATTRIBUTES
    # Ordinary dunder methods stay usable in user classes.
    assert not {"__init__", "__str__", "__repr__", "__eq__", "__len__", "__iter__"} & (
        BLOCKED_ATTRIBUTES
    )
