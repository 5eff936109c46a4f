# id: M03
# category: channel
# title: monkeypatch modules the runner uses afterwards in the same process (json.dumps, queue.put)
# expect: refused
# expect-open: contained
# mode: all
# source: doc snippet, plus orjson when it can be imported
# defence: fork per task (patches die with the worker); the runner keeps private references
import json
json.dumps = lambda *a, **k: '{"forged": true}'
try:
    import orjson
    orjson.dumps = lambda *a, **k: b'{"forged": true}'
except ImportError:
    pass
return [{'json': {'patched': True}}]
