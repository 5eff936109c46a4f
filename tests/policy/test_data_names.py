"""Which data request a code gets (policy/data_names.py), as n8n's parser decides for JS."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from taskbox.policy.data_names import DATA_NAMES, DataPlan, plan
from taskbox.runner import workflow_data

if TYPE_CHECKING:
    from sandbox import workflow
else:
    from taskbox_sandbox import workflow


def test_names_and_calls_match_the_sandbox() -> None:
    assert DATA_NAMES == workflow.NAMES
    assert (workflow_data.DATA_CALL, workflow_data.EXTRAS_CALL) == \
        (workflow.DATA_CALL, workflow.EXTRAS_CALL)


@pytest.mark.parametrize("code", [
    "return _items",
    "x = '_input'\nreturn [{'s': x}]",          # a string, not a name
    "for _ in range(3):\n    pass\nreturn []",  # ``_`` as a throwaway variable
    "def f(_json):\n    return _json\nreturn [f(1)]",
    "obj._input = 1",                           # an attribute of something else
])
def test_code_without_data_names_gets_no_plan(code: str) -> None:
    assert plan(code) is None


def test_literal_node_names_and_flags() -> None:
    code = ("a = _('Customers').all()\nb = _(\"Orders\").first()\n"
            "c = _('Customers').isExecuted\nreturn [_env, _prevNode.name]")
    assert plan(code) == DataPlan(nodes=("Customers", "Orders"), prev_node=True, env=True)
    assert plan(code).request_params() == {  # type: ignore[union-attr]
        "dataOfNodes": ["Customers", "Orders"], "prevNode": True,
        "input": {"include": False}, "env": True}
    assert plan("return [{'w': _workflow.id}]") == DataPlan((), False, False)


@pytest.mark.parametrize("code", [
    "return [_('Customers').item]",
    "return [_('Customers').pairedItem(0)]",
    "return [_('Customers').item_matching(0), _('Customers').all()]",
])
def test_paired_reads_name_their_node_and_mark_it(code: str) -> None:
    # the runner adds the nodes between Customers and this one (runner/workflow_data.py)
    assert plan(code) == DataPlan(("Customers",), False, False, paired=("Customers",))


@pytest.mark.parametrize("code", [
    "name = 'Cust' + 'omers'\nreturn _(name).all()",
    "c = _('Customers')\nreturn c.all()",        # kept in a variable
    "f = _\nreturn f('X').all()",                # ``_`` passed around
])
def test_computed_or_aliased_reads_ask_for_every_node(code: str) -> None:
    result = plan(code)
    assert result is not None and result.nodes is None
    assert result.request_params()["dataOfNodes"] == "all"


def test_unparsable_code_gets_no_plan() -> None:
    assert plan("_('x'") is None
