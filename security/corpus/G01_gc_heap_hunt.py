# id: G01
# category: gc
# title: gc.get_objects() scans the heap for secrets / runner objects
# expect: refused
# expect-open: contained
# mode: all
# source: doc snippet generalised: every string that looks like a token or canary
# defence: import allowlist (gc); nothing secret in the worker's heap (clean zygote)
import gc

def secretish(s):
    return isinstance(s, str) and ('CANARY' in s or 'TOKEN' in s.upper() or (
        32 <= len(s) <= 128 and all(ch in '0123456789abcdef' for ch in s)))

found = []
for o in gc.get_objects():
    values = list(o.items()) if isinstance(o, dict) else [('', x) for x in o] if isinstance(o, (list, tuple)) else []
    for k, v in values:
        if secretish(v) or secretish(k):
            found.append((str(k) + '=' + str(v))[:300])
    if len(found) > 300:
        break
return [{'json': {'found': found}}]
