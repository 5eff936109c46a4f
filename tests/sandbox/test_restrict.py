"""Import allowlist semantics and builtins filtering (in-process, no worker)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sandbox import restrict
else:
    from taskbox_sandbox import restrict


def test_top_level_entry_allows_submodules():
    policy = restrict.ImportPolicy(("os",), ())
    assert policy.check("os.path", None) is None
    assert policy.check("os", None) is None


def test_dotted_entry_allows_that_module_but_not_its_parent():
    policy = restrict.ImportPolicy(("os.path",), ())
    assert policy.check("os.path", None) is None
    assert policy.check("os", ("path",)) is None
    assert policy.check("os", ("system",)) is not None
    assert policy.check("os", None) is not None


def test_import_of_dotted_entry_binds_a_stub_parent():
    guarded = restrict.ImportPolicy(("os.path",), ()).make_import()
    os_stub = guarded("os.path", {}, {}, None, 0)
    assert os_stub.path.join("a", "b") == "a/b"
    assert not hasattr(os_stub, "system")


def test_refusal_names_the_module_and_the_variable():
    guarded = restrict.ImportPolicy(("json", "math"), ()).make_import()
    with pytest.raises(ImportError) as info:
        guarded("os", {}, {}, (), 0)
    assert str(info.value) == (
        "Import of standard library module 'os' is disallowed. Allowed stdlib modules: "
        "json, math. Set N8N_RUNNERS_STDLIB_ALLOW to allow it.")
    with pytest.raises(ImportError, match=r"external module 'orjson'.*none.*"
                                          r"N8N_RUNNERS_EXTERNAL_ALLOW"):
        guarded("orjson", {}, {}, (), 0)


def test_star_allows_everything_of_its_kind_only():
    policy = restrict.ImportPolicy(("*",), ())
    assert policy.check("sqlite3", None) is None
    assert policy.check("orjson", None) is not None
    assert restrict.ImportPolicy((), ("*",)).check("orjson", None) is None


def test_relative_imports_are_refused():
    guarded = restrict.ImportPolicy(("*",), ("*",)).make_import()
    with pytest.raises(ImportError, match="Relative imports"):
        guarded("x", {}, {}, (), 1)


def test_strptime_lazy_import_follows_datetime_or_time():
    assert restrict.ImportPolicy(("datetime",), ()).check("_strptime", None) is None
    assert restrict.ImportPolicy(("time",), ()).check("_strptime", None) is None
    assert restrict.ImportPolicy(("json",), ()).check("_strptime", None) is not None


def test_time_lazy_import_follows_datetime():
    # datetime's C code imports time for strftime, date.today() and timetuple().
    assert restrict.ImportPolicy(("datetime",), ()).check("time", None) is None
    assert restrict.ImportPolicy(("json",), ()).check("time", None) is not None
    assert restrict.ImportPolicy(("datetime",), ()).check("os", None) is not None


def test_builtins_deny_list_keeps_build_class():
    table = restrict.safe_builtins(("eval", "open", "__build_class__"), print)
    assert "eval" not in table
    assert "open" not in table
    assert "__build_class__" in table
    assert table["__import__"] is print
    assert "len" in table


# --- the runtime format guard (issue 11) -------------------------------------------

import string  # noqa: E402

_restrict = restrict


@pytest.mark.parametrize(("method", "receiver", "args"), [
    ("get_field", string.Formatter(), ("0.__init__.__globals__", [string.Template], {})),
    ("get_field", string.Formatter, (string.Formatter(), "0.__class__", [1], {})),
    ("format", "{0.__class__.__base__}", (1,)),
    ("format_map", "{x.__init__}", ({"x": string.Template},)),
    ("format", str, ("{0[__builtins__]}", {})),
    ("vformat", string.Formatter(), ("{0.gi_frame}", [1], {})),
    ("format", string.Formatter(), ("{0:{1.__class__}}", 1, 2)),
])
def test_format_guard_refuses_private_and_introspection_paths(method, receiver, args):
    with pytest.raises(_restrict.SecurityViolation) as caught:
        _restrict.safe_format(method, receiver, *args)
    assert caught.value.description.startswith("String pattern accessing '")
    assert caught.value.description.endswith(
        "' is disallowed, because it can be used to bypass security restrictions.")


def test_format_guard_lets_ordinary_formatting_through():
    assert _restrict.safe_format("format", "{0} {name} {1[k]} {0:>4}", 1, {"k": 2},
                                 name="n") == "1 n 2    1"
    assert _restrict.safe_format("format_map", "{a.real}", {"a": 3}) == "3"
    assert _restrict.safe_format("get_field", string.Formatter(), "0.imag", [5], {}) == (0, 0)
    assert _restrict.safe_format("format", str, "{0}!", "x") == "x!"
