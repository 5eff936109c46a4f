"""The queue-mode workflow and the answer it must give, in one place.

Webhook (POST /webhook/<path>, answered by the Respond node)
  -> Python   Code node v2 (pythonNative), all items: computes from the request body
  -> Respond  all incoming items, HTTP 200

The body is ``{"n": i, "xs": [...], "word": "...", ["hold": s]}``; the answer must be
``[{"n": i, "sum_sq": sum(x * x), "rev": word[::-1], "words": len(xs)}]``, so a
response from another request, a stale cache or a half-run workflow cannot pass.
"""

from __future__ import annotations

from typing import Any

WORKFLOW_ID = "tb16queue0000001"
WEBHOOK_PATH = "tb16-queue"

PYTHON_CODE = """\
import time
body = _items[0]['json']['body']
if body.get('hold'):
    time.sleep(body['hold'])
xs = body['xs']
return [{'n': body['n'], 'sum_sq': sum(x * x for x in xs), 'rev': body['word'][::-1],
         'words': len(xs)}]
"""


def request_body(i: int, hold: float = 0.0) -> dict[str, Any]:
    """Request ``i``: distinct per request, cheap to check. ``hold`` > 0 keeps the task
    that long in the runner (the fault phase, so that a kill finds tasks in flight)."""
    body: dict[str, Any] = {"n": i, "xs": [i + k for k in range(12)],
                            "word": f"req-{i:06d}-taskbox"}
    if hold:
        body["hold"] = hold
    return body


def expected(i: int) -> list[dict[str, Any]]:
    body = request_body(i)
    xs: list[int] = body["xs"]
    return [{"n": i, "sum_sq": sum(x * x for x in xs), "rev": body["word"][::-1],
             "words": len(xs)}]


def workflow() -> dict[str, Any]:
    """n8n's export format; ``active: true`` + ``import:workflow --activeState=fromJson``
    (allowed in queue mode only) publishes it on import."""
    return {
        "id": WORKFLOW_ID,
        "name": "taskbox queue-mode e2e",
        "active": True,
        "settings": {"executionOrder": "v1"},
        "nodes": [
            {
                "id": "6b1f7c7e-0a51-4d1e-9a77-16e2e0000001",
                "name": "Webhook",
                "type": "n8n-nodes-base.webhook",
                "typeVersion": 2.1,
                "position": [0, 0],
                "parameters": {"httpMethod": "POST", "path": WEBHOOK_PATH,
                               "responseMode": "responseNode", "options": {}},
                "webhookId": "6b1f7c7e-0a51-4d1e-9a77-16e2e0000002",
            },
            {
                "id": "6b1f7c7e-0a51-4d1e-9a77-16e2e0000003",
                "name": "Python",
                "type": "n8n-nodes-base.code",
                "typeVersion": 2,
                "position": [220, 0],
                "parameters": {"mode": "runOnceForAllItems", "language": "pythonNative",
                               "pythonCode": PYTHON_CODE},
            },
            {
                "id": "6b1f7c7e-0a51-4d1e-9a77-16e2e0000004",
                "name": "Respond",
                "type": "n8n-nodes-base.respondToWebhook",
                "typeVersion": 1.5,
                "position": [440, 0],
                "parameters": {"respondWith": "allIncomingItems",
                               "options": {"responseCode": 200}},
            },
        ],
        "connections": {
            "Webhook": {"main": [[{"node": "Python", "type": "main", "index": 0}]]},
            "Python": {"main": [[{"node": "Respond", "type": "main", "index": 0}]]},
        },
        "pinData": {},
    }
