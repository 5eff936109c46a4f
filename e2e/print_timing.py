#!/usr/bin/env python3
"""Do prints sent right before ``runner:taskdone`` reach the browser console? (manual runs)

Measurement for issue 12, run as the harness's runner command so a real n8n is up::

    N8N_E2E_CASES_DIR=../shared/n8n-e2e/cases:e2e/cases N8N_E2E_CASES="05 65 67 89" \\
        ../shared/n8n-e2e/run.sh .venv/bin/python e2e/print_timing.py --task-timeout 8

It starts ``taskbox connect`` (the runner under test) with the harness's environment,
then plays the editor: sets up the owner, creates a Manual Trigger -> Python workflow
whose code prints ``--prints`` times and returns, opens the push connection a browser
tab holds (``/rest/push?pushRef=...``), runs the workflow manually ``--runs`` times
and counts the ``sendConsoleMessage`` pushes per run, checking order. One line per
run and a summary go to ``$N8N_E2E_WORK/print_timing.txt`` and stderr; then the runner
keeps serving the harness's cases (production runs) until the harness stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import websockets

BROWSER_ID = "tb12-print-timing"


def _base_url(work: Path, timeout: float = 60.0) -> str:
    deadline = time.monotonic() + timeout
    log = work / "n8n.log"
    while time.monotonic() < deadline:
        text = log.read_text(errors="replace") if log.exists() else ""
        match = re.search(r"Editor is now accessible via:\s*(http://[0-9.:]+)", text)
        if match and "Registered runner" in text:
            return match.group(1)
        time.sleep(0.25)
    raise SystemExit("n8n did not come up with a registered runner")


class Rest:
    """n8n's REST API with the auth cookie and browser id an editor session sends.

    The auth cookie is marked Secure, which a cookie jar would not send over the
    harness's plain http: it is kept by hand.
    """

    def __init__(self, base: str) -> None:
        self.base = base
        self.cookies: dict[str, str] = {}

    def call(self, method: str, path: str, body: Any = None,
             headers: dict[str, str] | None = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method, headers={
            "Content-Type": "application/json", "browser-id": BROWSER_ID,
            "Cookie": self.cookie(), **(headers or {})})
        with urllib.request.urlopen(request, timeout=30) as response:
            for header in response.headers.get_all("Set-Cookie") or []:
                name, _, rest = header.partition("=")
                self.cookies[name.strip()] = rest.split(";", 1)[0]
            return json.loads(response.read() or b"null")

    def cookie(self) -> str:
        return "; ".join(f"{k}={v}" for k, v in self.cookies.items())


def _workflow(prints: int) -> dict[str, Any]:
    code = (f"for i in range({prints}):\n    print('line', i)\n"
            "return [{'json': {'done': True}}]")
    return {
        "name": "tb12 print timing", "settings": {"executionOrder": "v1"},
        "nodes": [
            {"id": "a1", "name": "Manual", "type": "n8n-nodes-base.manualTrigger",
             "typeVersion": 1, "position": [0, 0], "parameters": {}},
            {"id": "a2", "name": "Python", "type": "n8n-nodes-base.code", "typeVersion": 2,
             "position": [220, 0],
             "parameters": {"language": "pythonNative", "pythonCode": code}},
        ],
        "connections": {"Manual": {"main": [[{"node": "Python", "type": "main", "index": 0}]]}},
    }


async def _one_run(rest: Rest, ws: Any, workflow_id: str, push_ref: str,
                   prints: int) -> tuple[int, bool, float]:
    started = time.monotonic()
    await asyncio.to_thread(rest.call, "POST", f"/rest/workflows/{workflow_id}/run",
                            {"triggerToStartFrom": {"name": "Manual"}}, {"push-ref": push_ref})
    seen: list[int] = []
    while True:
        raw = await asyncio.wait_for(ws.recv(), 30)
        message = json.loads(raw)
        if message.get("type") == "sendConsoleMessage":
            args = message["data"]["messages"]
            seen.append(int(args[1]))
        elif message.get("type") == "executionFinished":
            break
    return len(seen), seen == list(range(prints)), time.monotonic() - started


async def measure(base: str, runs: int, prints: int) -> list[tuple[int, bool, float]]:
    rest = Rest(base)
    rest.call("POST", "/rest/owner/setup", {"email": "tb12@example.com", "firstName": "T",
                                             "lastName": "B", "password": "Tb12-print-timing"})
    workflow = rest.call("POST", "/rest/workflows", _workflow(prints))["data"]
    push_ref = "tb12push"
    url = base.replace("http://", "ws://") + f"/rest/push?pushRef={push_ref}"
    async with websockets.connect(url, additional_headers={
            "Origin": base, "Cookie": rest.cookie(), "browser-id": BROWSER_ID}) as ws:
        return [await _one_run(rest, ws, workflow["id"], push_ref, prints)
                for _ in range(runs)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--prints", type=int, default=100)
    args, connect_args = parser.parse_known_args()  # the rest goes to `taskbox connect`
    work = Path(os.environ["N8N_E2E_WORK"])
    taskbox = Path(sys.executable).with_name("taskbox")
    runner = subprocess.Popen([str(taskbox), "connect", *connect_args],
                              stdin=subprocess.DEVNULL)
    out = work / "print_timing.txt"
    try:
        results = asyncio.run(measure(_base_url(work), args.runs, args.prints))
        lines = [f"run {i}: {n}/{args.prints} prints in order={ok} ({t * 1000:.0f} ms)"
                 for i, (n, ok, t) in enumerate(results)]
        kept = all(n == args.prints and ok for n, ok, _ in results)
        lines.append(f"manual mode: {'all' if kept else 'NOT all'} prints reached the "
                     f"browser console in {len(results)} runs")
        out.write_text("\n".join(lines) + "\n")
        print("\n".join(lines), file=sys.stderr)
    except BaseException:
        runner.terminate()
        raise
    # Keep serving the harness's cases (production runs) until it stops the group.
    return runner.wait()


if __name__ == "__main__":
    sys.exit(main())
