"""Prometheus metrics for /metrics on the health server (issue 7).

A private registry, so several runners in one process (tests) never collide. Counters
are bumped where things happen (outgoing frames through ``on_sent``, task ends through
``observe_task``); the pool and layer gauges are read from the executor at scrape time.
"""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from taskbox.protocol import messages as m

__all__ = ["Metrics"]


class Metrics:
    """Everything the runner counts; cheap enough for the hot path."""

    def __init__(self, *, ready_workers: Callable[[], int] | None = None,
                 layers: Callable[[], dict[str, bool]] | None = None) -> None:
        """Args:
        ready_workers: read at scrape time for ``taskbox_ready_workers``.
        layers: read at scrape time for ``taskbox_sandbox_layer_active``.
        """
        r = self.registry = CollectorRegistry()
        self.tasks = Counter("taskbox_tasks_total", "Finished tasks by outcome", ["outcome"],
                             registry=r)
        self.duration = Histogram(
            "taskbox_task_duration_seconds", "Settings to result, seconds", registry=r,
            buckets=(0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30,
                     60, 300))
        self.offers_sent = Counter("taskbox_offers_sent_total", "runner:taskoffer sent",
                                   registry=r)
        self.offers_accepted = Counter("taskbox_offers_accepted_total", "Tasks accepted",
                                       registry=r)
        self.offers_rejected = Counter("taskbox_offers_rejected_total", "Accepts rejected",
                                       ["reason"], registry=r)
        self.rpc_calls = Counter("taskbox_rpc_calls_total",
                                 "runner:rpc calls sent for tasks (prints included), by method",
                                 ["name"], registry=r)
        self.reconnects = Counter("taskbox_reconnects_total", "Reconnects to the broker",
                                  registry=r)
        self.malformed_frames = Counter("taskbox_malformed_frames_total",
                                        "Broker frames skipped as malformed", registry=r)
        self.worker_kills = Counter("taskbox_worker_kills_total",
                                    "Workers killed or crashed before a result, by cause",
                                    ["cause"], registry=r)
        self.layers = Gauge("taskbox_sandbox_layer_active", "1 if a sandbox layer is active",
                            ["layer"], registry=r)
        self.ready_workers = Gauge("taskbox_ready_workers", "Pre-forked workers ready",
                                   registry=r)
        if ready_workers is not None:
            self.ready_workers.set_function(ready_workers)
        self._layers = layers

    _KILL_KINDS = frozenset({"timeout", "memory", "cpu", "signal", "cancelled", "payload"})

    def observe_task(self, kind: str, seconds: float) -> None:
        """One finished task: its outcome kind (``TaskOutcome.kind``) and duration."""
        self.tasks.labels(outcome=kind).inc()
        self.duration.observe(seconds)
        if kind in self._KILL_KINDS:
            self.worker_kills.labels(cause=kind).inc()

    def on_sent(self, msg: m.RunnerMessage) -> None:
        """Called by the connection for every frame it wrote."""
        if isinstance(msg, m.TaskOffer):
            self.offers_sent.inc()
        elif isinstance(msg, m.TaskRejected):
            self.offers_rejected.labels(reason=msg.reason).inc()
        elif isinstance(msg, m.RpcCall):
            self.rpc_calls.labels(name=msg.name).inc()

    def set_layers(self, layers: dict[str, bool]) -> None:
        for name, active in layers.items():
            self.layers.labels(layer=name).set(1 if active else 0)

    def render(self) -> tuple[str, bytes]:
        """The /metrics response: (content type, Prometheus text format)."""
        if self._layers is not None:
            self.set_layers(self._layers())
        return CONTENT_TYPE_LATEST, generate_latest(self.registry)
