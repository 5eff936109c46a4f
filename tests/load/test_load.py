"""A small ``make load`` (issue 7): 500 mixed tasks on 2 runners, same invariants.

Kept well under a minute on 2 cores: two timeout tasks (2 s each) and eight
memory-limit tasks among the 500. No timing is asserted, only correctness and leaks.
"""

from __future__ import annotations

from tests.load.load import KINDS, Options, render, run_load


async def test_small_load_run_keeps_every_invariant() -> None:
    opts = Options(tasks=500, concurrency=16, runners=2, runner_concurrency=8, warmup=60,
                   deadline=240.0)
    report = await run_load(opts)
    print(render(report))
    assert report.failures == []
    assert len(report.records) == opts.tasks
    assert report.lost == 0
    assert report.duplicated == 0
    kinds = {r.kind for r in report.records}
    assert kinds == set(KINDS)
    assert all(r.problem is None for r in report.records)
    for rid, end in report.end.items():
        assert end.workers == opts.runner_concurrency + 1, rid
        assert end.fds <= report.start[rid].fds + 4, rid
