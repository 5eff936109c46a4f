"""A small ``make load`` (issue 7): 500 mixed tasks on 2 runners, same invariants.

Kept well under a minute on 2 cores (about 20 s): two timeout tasks (2 s each) and
eight memory-limit tasks among the 500, after 200 warm-up tasks. No timing is
asserted, only correctness and leaks. It found the zygote's "died before use"
backoff race (fixed in 8825fde): ordinary tasks then timed out waiting for a worker.
"""

from __future__ import annotations

from taskbox.executor.pool import IDLE_WORKERS
from tests.load.load import KINDS, Options, render, run_load


async def test_small_load_run_keeps_every_invariant() -> None:
    opts = Options(tasks=500, concurrency=16, runners=2, runner_concurrency=8, warmup=200,
                   deadline=240.0)
    report = await run_load(opts)
    print(render(report))
    assert report.failures == []
    assert report.lost == 0
    assert report.duplicated == 0
    assert len(report.records) == opts.tasks
    assert {r.kind for r in report.records} == set(KINDS)
    assert all(r.problem is None for r in report.records)
    for rid, end in report.end.items():
        assert end.workers == IDLE_WORKERS, rid  # back to the idle pool
        assert end.fds <= report.start[rid].fds + 4, rid
