"""In-memory fakes: the runner core and the broker core joined by a fake link.

``CorePair`` drives ``RunnerProtocol`` against ``BrokerProtocol`` without asyncio or
sockets (h11's ``ConnectionPair``): every message is serialized and parsed again on the
way, as on the wire, and recorded in ``wire``; time is a ``FakeClock`` the test moves.
"""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass, field
from typing import Any, Literal

from taskbox.protocol import messages as m
from taskbox.protocol.broker import BrokerEvent, BrokerProtocol
from taskbox.protocol.offers import OfferBook, OfferConfig
from taskbox.protocol.runner import RunnerEvent, RunnerProtocol
from taskbox.protocol.serde import parse_broker, parse_runner, serialize

__all__ = ["CorePair", "FakeClock", "Hop"]


@dataclass
class FakeClock:
    """Monotonic seconds that move only when the test says so."""

    now: float = 0.0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


@dataclass(frozen=True, slots=True)
class Hop:
    """One message on the fake link."""

    direction: Literal["to_broker", "to_runner"]
    message: m.RunnerMessage | m.BrokerMessage


def _counter(prefix: str) -> Any:
    numbers = itertools.count(1)
    return lambda *_: f"{prefix}{next(numbers)}"


@dataclass
class CorePair:
    """One runner core registered with one broker core.

    Args:
        slots: the runner's max concurrency.
        runner_id: the broker's id for the runner.
        broker_options: passed to ``BrokerProtocol`` (timeouts).
    """

    slots: int = 2
    runner_id: str = "r1"
    broker_options: dict[str, Any] = field(default_factory=dict)
    clock: FakeClock = field(default_factory=FakeClock)
    wire: list[Hop] = field(default_factory=list)
    runner_events: list[RunnerEvent] = field(default_factory=list)
    broker_events: list[BrokerEvent] = field(default_factory=list)

    def __post_init__(self) -> None:
        # Offers valid exactly 5 s (no jitter) and counted ids: transcripts are exact.
        book = OfferBook(self.slots, OfferConfig(jitter_ms=0), rng=random.Random(0),
                         id_factory=_counter("o"))
        self.runner = RunnerProtocol("taskbox", self.slots, offers=book,
                                     id_factory=_counter("c"))
        options: dict[str, Any] = {"accept_timeout": 2.0, "task_timeout": 60.0,
                                   "request_timeout": 60.0, "id_factory": _counter("t")}
        options.update(self.broker_options)
        self.broker = BrokerProtocol(**options)

    # -- driving -----------------------------------------------------------------------

    def connect(self) -> None:
        """The broker shell's inforequest, then everything that follows from it."""
        self._to_runner(m.InfoRequest())
        self.pump()

    def pump(self) -> None:
        """Deliver messages both ways until neither core has anything left to send."""
        while True:
            out_runner = self.runner.messages_to_send()
            self.runner_events.extend(self.runner.events_received())
            out_broker = self.broker.messages_to_send()
            self.broker_events.extend(self.broker.events_received())
            if not out_runner and not out_broker:
                return
            for msg in out_runner:
                self._to_broker(msg)
            for runner_id, bmsg in out_broker:
                assert runner_id == self.runner_id
                self._to_runner(bmsg)

    def tick(self, seconds: float = 0.0) -> None:
        """Move the clock, let both cores fire their timers, and pump."""
        now = self.clock.advance(seconds)
        self.runner.tick(now)
        self.broker.tick(now)
        self.pump()

    def submit(self, request_id: str, settings: dict[str, Any], **kwargs: Any) -> None:
        self.broker.submit(request_id, "python", settings, self.clock.now, **kwargs)
        self.pump()

    def finish(self, task_id: str, **outcome: Any) -> bool:
        sent = self.runner.finish_task(task_id, self.clock.now, **outcome)
        self.pump()
        return sent

    # -- reading -----------------------------------------------------------------------

    def take_wire(self) -> list[Hop]:
        hops, self.wire = self.wire, []
        return hops

    def take_runner_events(self) -> list[RunnerEvent]:
        events, self.runner_events = self.runner_events, []
        return events

    def take_broker_events(self) -> list[BrokerEvent]:
        events, self.broker_events = self.broker_events, []
        return events

    # -- the link ----------------------------------------------------------------------

    def _to_broker(self, msg: m.RunnerMessage) -> None:
        parsed = parse_runner(serialize(msg))
        assert parsed == msg, (parsed, msg)  # the wire keeps every field
        self.wire.append(Hop("to_broker", parsed))
        if isinstance(parsed, m.RunnerInfo):
            self.broker.add_runner(self.runner_id, parsed.name, parsed.types, self.clock.now)
        else:
            self.broker.receive_message(self.runner_id, parsed, self.clock.now)

    def _to_runner(self, msg: m.BrokerMessage) -> None:
        parsed = parse_broker(serialize(msg))
        assert parsed == msg, (parsed, msg)
        self.wire.append(Hop("to_runner", parsed))
        self.runner.receive_message(parsed, self.clock.now)
