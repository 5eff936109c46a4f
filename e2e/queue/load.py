"""A bounded HTTP load client: C threads, one keep-alive connection each, every answer checked.

Bounded in count (``limit`` requests at most), in time (``deadline``) and per request
(``timeout``); ``stop`` ends it early. Stdlib only.
"""

from __future__ import annotations

import http.client
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Result:
    index: int
    start: float  # time.time(), to compare with n8n's timestamps
    end: float
    status: int  # 0 = no HTTP answer (connection error or timeout)
    ok: bool
    detail: str

    @property
    def seconds(self) -> float:
        return self.end - self.start


class Load:
    def __init__(self, port: int, path: str, body: Callable[[int], Any],
                 expected: Callable[[int], Any], *, timeout: float = 90.0) -> None:
        self.port, self.path, self.body, self.expected = port, path, body, expected
        self.timeout = timeout
        self.results: list[Result] = []
        self._lock = threading.Lock()
        self._next = 0

    def run(self, first: int, limit: int, concurrency: int, deadline: float,
            stop: threading.Event | None = None) -> list[Result]:
        """Fires requests ``first .. first+limit-1`` (fewer if stopped or out of time)."""
        stop = stop or threading.Event()
        self._next = first
        end = first + limit
        mine: list[Result] = []

        def worker() -> None:
            conn: http.client.HTTPConnection | None = None
            while not stop.is_set() and time.monotonic() < deadline:
                with self._lock:
                    if self._next >= end:
                        break
                    i = self._next
                    self._next += 1
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port,
                                                      timeout=self.timeout)
                result, keep = self._one(conn, i)
                with self._lock:
                    mine.append(result)
                    self.results.append(result)
                if not keep:
                    conn.close()
                    conn = None
            if conn is not None:
                conn.close()

        threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()) + self.timeout + 5)
        return sorted(mine, key=lambda r: r.index)

    def _one(self, conn: http.client.HTTPConnection, i: int) -> tuple[Result, bool]:
        payload = json.dumps(self.body(i)).encode()
        start = time.time()
        try:
            conn.request("POST", f"/webhook/{self.path}", body=payload,
                         headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            raw = response.read()
            keep = not response.will_close
        except (OSError, http.client.HTTPException) as exc:
            return Result(i, start, time.time(), 0, False, f"{type(exc).__name__}: {exc}"), False
        end = time.time()
        status = response.status
        try:
            got = json.loads(raw)
        except ValueError:
            got = raw[:200].decode(errors="replace")
        if status == 200 and got == self.expected(i):
            return Result(i, start, end, status, True, ""), keep
        return Result(i, start, end, status, False, json.dumps(got)[:300]), keep


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]
