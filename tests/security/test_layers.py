"""Fewer layers (issue 11): what the runner does when one is missing.

Layers are switched off with ``Limits.disable_layers`` (TASKBOX_TEST_DISABLE_LAYERS),
the "test build" of the issue: the zygote then reports them missing exactly as on
a host that lacks them.
"""

from __future__ import annotations

import logging
import os
import resource
from typing import TYPE_CHECKING

import pytest

from taskbox.errors import SandboxUnavailable
from taskbox.executor import Executor, Limits, TaskSpec

if TYPE_CHECKING:
    from sandbox import confine
else:
    from taskbox_sandbox import confine



async def _start(limits: Limits, caplog: pytest.LogCaptureFixture) -> dict[str, bool]:
    caplog.set_level(logging.INFO, logger="test.layers")
    async with Executor(limits, 1, logging.getLogger("test.layers")) as ex:
        outcome = await ex.run(TaskSpec("t", "return [1]", "runOnceForAllItems", False,
                                        b"[]", 0), lambda a: None, _no_rpc)
        assert outcome.result == [1]
        return dict(ex.layers)


async def _no_rpc(name: str, params: list[object]) -> tuple[bool, object]:
    return False, None


@pytest.mark.parametrize("layer", ["rlimits", "prctl", "setuid", "landlock", "seccomp"])
async def test_probe_reports_a_disabled_layer_missing_and_the_rest_active(layer, caplog):
    limits = Limits(disable_layers=(layer,), allow_no_landlock=True)
    layers = await _start(limits, caplog)
    assert layers[layer] is False
    # Landlock and seccomp need no_new_privs first: without prctl neither applies.
    others = {"rlimits", "prctl", "landlock", "seccomp"} - {layer} - (
        {"landlock", "seccomp"} if layer == "prctl" else set())
    assert all(layers[name] for name in others), layers
    assert f"missing: {layer}" in caplog.text or f", {layer}" in caplog.text.split(
        "missing:")[1]
    assert "TASKBOX_TEST_DISABLE_LAYERS" in caplog.text


async def test_required_layer_that_is_missing_still_refuses_to_start():
    limits = Limits(disable_layers=("seccomp",), require_layers=("seccomp",))
    with pytest.raises(SandboxUnavailable, match="required sandbox layers are missing: seccomp"):
        await Executor(limits, 1).start()


async def test_missing_uid_drop_is_a_warning(caplog):
    await _start(Limits(disable_layers=("setuid",)), caplog)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert any("not root, so no uid drop" in r.getMessage() for r in warnings), caplog.text


async def test_non_root_without_landlock_refuses_unless_the_operator_opts_out(caplog):
    # No uid drop and no Landlock: what a non-root runner on an old kernel gets.
    with pytest.raises(SandboxUnavailable, match="TASKBOX_ALLOW_NO_LANDLOCK=true"):
        await Executor(Limits(disable_layers=("setuid", "landlock")), 1).start()
    await _start(Limits(disable_layers=("setuid", "landlock"), allow_no_landlock=True), caplog)
    assert "starting without Landlock as non-root; user code can read every file" in \
        caplog.text


def test_process_limit_is_the_uids_tasks_plus_a_budget_per_slot() -> None:
    uid = os.getuid()
    before = confine._tasks_of(uid)
    assert before >= 1  # at least this process
    limit = confine._process_limit(uid, 6, shares_uid=False)
    assert before + 6 * confine._THREADS_PER_WORKER - 8 <= limit <= \
        confine._tasks_of(uid) + 6 * confine._THREADS_PER_WORKER + 8


def test_process_limit_keeps_a_reserve_below_a_shared_uids_own_limit() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - a child with a finite RLIMIT_NPROC
        try:
            os.close(read_end)
            resource.setrlimit(resource.RLIMIT_NPROC, (4000, 4000))
            limit = confine._process_limit(os.getuid(), 100, shares_uid=True)
            os.write(write_end, str(limit).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as handle:
        limit = int(handle.read())
    os.waitpid(pid, 0)
    assert limit == 4000 - confine._NPROC_RESERVE
