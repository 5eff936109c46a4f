"""Metrics for /metrics on the health server (issue 7), in Prometheus' text format.

The hot path only bumps plain integers; ``prometheus_client`` is imported and the
metric families are built when /metrics is scraped. Importing it at start-up cost
about 10 ms of the runner's cold start, which n8n's launcher pays on every idle cycle.
Counters are bumped where things happen (outgoing frames through ``on_sent``, task
ends through ``observe_task``); pool, slot and layer gauges are read at scrape time.

What operators alert on: ``taskbox_busy_slots`` against ``taskbox_slots`` (saturation),
``taskbox_broker_connected`` (0 = n8n cannot reach this runner), increases of
``taskbox_zygote_restarts_total`` and ``taskbox_worker_kills_total``. Labelled counters
start with every known label at 0, so ``rate()`` and absence alerts work from the first
scrape. ``taskbox_build_info`` and the standard ``process_*`` collectors are included.
"""

from __future__ import annotations

import bisect
import platform
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from taskbox import __version__
from taskbox.protocol import messages as m

__all__ = ["Metrics"]

_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            60.0, 300.0)
_KILL_KINDS = frozenset({"timeout", "memory", "cpu", "signal", "cancelled", "payload"})
#: Every ``TaskOutcome.kind`` (executor/task.py), shown at 0 before the first of each.
_OUTCOMES = ("ok", "error", "security", *sorted(_KILL_KINDS))
_REJECT_REASONS = (m.REJECT_OFFER_EXPIRED, m.REJECT_AT_CAPACITY, m.REJECT_DUPLICATE,
                   m.REJECT_SHUTTING_DOWN)


class Counter:
    """A counter with an optional label; ``inc()`` or ``inc("value")``."""

    __slots__ = ("help", "label", "name", "values")

    def __init__(self, name: str, help_text: str, label: str | None = None,
                 known: Iterable[str] = ()) -> None:
        self.name, self.help, self.label = name, help_text, label
        self.values: dict[str, int] = dict.fromkeys(known if label else ("",), 0)

    def inc(self, value: str = "") -> None:
        self.values[value] = self.values.get(value, 0) + 1


class Metrics:
    """Everything the runner counts; a dict increment per event."""

    def __init__(self, *, ready_workers: Callable[[], int] | None = None,
                 layers: Callable[[], dict[str, bool]] | None = None,
                 slots: int = 0, busy_slots: Callable[[], int] | None = None,
                 zygote_restarts: Callable[[], int] | None = None) -> None:
        """Args:
        ready_workers: read at scrape time for ``taskbox_ready_workers``.
        layers: read at scrape time for ``taskbox_sandbox_layer_active``.
        slots: ``taskbox_slots``, the task capacity (N8N_RUNNERS_MAX_CONCURRENCY).
        busy_slots: read at scrape time for ``taskbox_busy_slots``.
        zygote_restarts: read at scrape time for ``taskbox_zygote_restarts_total``.
        """
        self.tasks = Counter("taskbox_tasks", "Finished tasks by outcome", "outcome", _OUTCOMES)
        self.offers_sent = Counter("taskbox_offers_sent", "runner:taskoffer sent")
        self.offers_accepted = Counter("taskbox_offers_accepted", "Tasks accepted")
        self.offers_rejected = Counter("taskbox_offers_rejected", "Accepts rejected", "reason",
                                       _REJECT_REASONS)
        self.rpc_calls = Counter("taskbox_rpc_calls",
                                 "runner:rpc calls sent for tasks (prints included), by method",
                                 "name", ("logNodeOutput",))
        self.reconnects = Counter("taskbox_reconnects", "Reconnects to the broker")
        self.malformed_frames = Counter("taskbox_malformed_frames",
                                        "Broker frames skipped as malformed")
        self.worker_kills = Counter("taskbox_worker_kills",
                                    "Workers killed or crashed before a result, by cause", "cause",
                                    sorted(_KILL_KINDS))
        self._counters = (self.tasks, self.offers_sent, self.offers_accepted,
                          self.offers_rejected, self.rpc_calls, self.reconnects,
                          self.malformed_frames, self.worker_kills)
        self._bucket_counts = [0] * (len(_BUCKETS) + 1)  # the last one is +Inf
        self._duration_sum = 0.0
        self._ready_workers = ready_workers
        self._layers_source = layers
        self._layers: dict[str, bool] = {}
        self._slots = slots
        self._busy_slots = busy_slots
        self._zygote_restarts = zygote_restarts
        #: 1 while registered with the broker (set by the runner), for the gauge and
        #: for readiness.
        self.broker_connected = False

    def observe_task(self, kind: str, seconds: float) -> None:
        """One finished task: its outcome kind (``TaskOutcome.kind``) and duration."""
        self.tasks.inc(kind)
        self._bucket_counts[bisect.bisect_left(_BUCKETS, seconds)] += 1
        self._duration_sum += seconds
        if kind in _KILL_KINDS:
            self.worker_kills.inc(kind)

    def on_sent(self, msg: m.RunnerMessage) -> None:
        """Called by the connection for every frame it wrote."""
        if isinstance(msg, m.TaskOffer):
            self.offers_sent.inc()
        elif isinstance(msg, m.TaskRejected):
            self.offers_rejected.inc(msg.reason)
        elif isinstance(msg, m.RpcCall):
            self.rpc_calls.inc(msg.name)

    def _families(self) -> Iterator[Any]:
        from prometheus_client.core import (
            CounterMetricFamily,
            GaugeMetricFamily,
            HistogramMetricFamily,
            InfoMetricFamily,
        )

        for counter in self._counters:
            labels = [counter.label] if counter.label else []
            family = CounterMetricFamily(counter.name, counter.help, labels=labels)
            for value, count in sorted(counter.values.items()):
                family.add_metric([value] if counter.label else [], count)
            yield family
        cumulative, buckets = 0, []
        for bound, count in zip((*_BUCKETS, float("inf")), self._bucket_counts, strict=True):
            cumulative += count
            buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
        yield HistogramMetricFamily("taskbox_task_duration_seconds",
                                    "Settings to result, seconds", buckets=buckets,
                                    sum_value=self._duration_sum)
        if self._layers_source is not None:
            self._layers = dict(self._layers_source())
        layers = GaugeMetricFamily("taskbox_sandbox_layer_active",
                                   "1 if a sandbox layer is active", labels=["layer"])
        for name, active in sorted(self._layers.items()):
            layers.add_metric([name], 1 if active else 0)
        yield layers
        ready = GaugeMetricFamily("taskbox_ready_workers", "Pre-forked workers ready")
        ready.add_metric([], self._ready_workers() if self._ready_workers is not None else 0)
        yield ready
        yield GaugeMetricFamily("taskbox_slots", "Task slots (N8N_RUNNERS_MAX_CONCURRENCY)",
                                value=self._slots)
        yield GaugeMetricFamily("taskbox_busy_slots", "Task slots running a task now",
                                value=self._busy_slots() if self._busy_slots else 0)
        yield GaugeMetricFamily("taskbox_broker_connected",
                                "1 while registered with the task broker",
                                value=1 if self.broker_connected else 0)
        yield CounterMetricFamily("taskbox_zygote_restarts",
                                  "Sandbox zygotes replaced after dying",
                                  value=self._zygote_restarts() if self._zygote_restarts else 0)
        info = InfoMetricFamily("taskbox_build", "taskbox and Python versions")
        info.add_metric([], {"version": __version__, "python": platform.python_version()})
        yield info

    def render(self) -> tuple[str, bytes]:
        """The /metrics response: (content type, Prometheus text format)."""
        from prometheus_client import (
            CollectorRegistry,
            PlatformCollector,
            ProcessCollector,
            generate_latest,
        )
        from prometheus_client.exposition import CONTENT_TYPE_LATEST

        registry = CollectorRegistry(auto_describe=False)
        registry.register(_Collector(self))
        ProcessCollector(registry=registry)  # process_cpu_seconds_total, _resident_memory...
        PlatformCollector(registry=registry)  # python_info
        return CONTENT_TYPE_LATEST, generate_latest(registry)

    def sample(self, name: str, **labels: str) -> float:
        """One sample as /metrics shows it (0 when absent); for tests and debugging."""
        from prometheus_client.parser import text_string_to_metric_families

        for family in text_string_to_metric_families(self.render()[1].decode()):
            for sample in family.samples:
                if sample.name == name and sample.labels == labels:
                    return float(sample.value)
        return 0.0


class _Collector:
    """Adapter: prometheus_client calls ``collect()`` at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Any]:
        return self._metrics._families()
