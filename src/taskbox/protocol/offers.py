"""Offer book: how many task slots we advertise, and which offers are still valid.

Constants follow n8n's runners (protocol.md §7): refresh every 250 ms, ``validFor`` =
5000 ms + 0..500 ms jitter, honoured locally 100 ms longer than the broker believes.
Time is passed in (seconds, monotonic); this module never reads the clock.
"""

from __future__ import annotations

import random
import secrets
import string
from collections.abc import Callable
from dataclasses import dataclass

from taskbox.protocol.messages import TaskOffer

__all__ = ["OFFER_INTERVAL", "OfferBook", "OfferConfig", "new_id"]

OFFER_INTERVAL = 0.25
_ALPHABET = string.ascii_letters + string.digits


# Bytes below this map uniformly onto _ALPHABET (248 = 4 * 62); the rest are skipped.
_UNBIASED = 256 - 256 % len(_ALPHABET)


def new_id(length: int = 22) -> str:
    """A random nanoid-style id, as n8n's Python runner makes them.

    One ``token_bytes`` call per id instead of one ``secrets.choice`` per character:
    an offer id is minted for every task, and 22 ``choice`` calls cost more than the
    rest of the offer (issue 3 profile). Rejection sampling keeps it uniform.
    """
    chars: list[str] = []
    while len(chars) < length:
        chars.extend(_ALPHABET[b % len(_ALPHABET)] for b in secrets.token_bytes(length + 8)
                     if b < _UNBIASED)
    return "".join(chars[:length])


@dataclass(frozen=True, slots=True)
class OfferConfig:
    validity_ms: int = 5000
    jitter_ms: int = 500
    local_grace_s: float = 0.1
    task_type: str = "python"


class OfferBook:
    """Keeps ``open offers + running tasks == max concurrency``."""

    def __init__(self, max_concurrency: int, config: OfferConfig | None = None,
                 rng: random.Random | None = None,
                 id_factory: Callable[[], str] = new_id) -> None:
        self.max_concurrency = max_concurrency
        self.config = config or OfferConfig()
        self._rng = rng or random.Random()
        self._new_id = id_factory
        self._open: dict[str, float] = {}  # offer id -> local deadline

    @property
    def open_count(self) -> int:
        return len(self._open)

    def expire(self, now: float) -> None:
        """Drop every offer whose local deadline has passed."""
        for offer_id in [o for o, deadline in self._open.items() if deadline <= now]:
            del self._open[offer_id]

    def top_up(self, now: float, busy: int) -> list[TaskOffer]:
        """Expire, then create offers for every free slot.

        Args:
            now: monotonic seconds.
            busy: accepted tasks that still hold a slot.
        """
        self.expire(now)
        missing = self.max_concurrency - (len(self._open) + busy)
        offers = []
        for _ in range(max(missing, 0)):
            valid_for = self.config.validity_ms + self._rng.randint(0, self.config.jitter_ms)
            offer = TaskOffer(self._new_id(), self.config.task_type, valid_for)
            self._open[offer.offer_id] = now + valid_for / 1000 + self.config.local_grace_s
            offers.append(offer)
        return offers

    def take(self, offer_id: str, now: float) -> bool:
        """Consume an offer; False if unknown or expired (and then it is gone)."""
        deadline = self._open.pop(offer_id, None)
        return deadline is not None and deadline > now

    def clear(self) -> None:
        self._open.clear()
