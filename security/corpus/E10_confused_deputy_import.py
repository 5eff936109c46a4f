# id: E10
# category: import
# title: confused deputy: pass the guarded __import__ as a callback into an allowlisted pure-Python package so the import looks package-initiated (n8n PR #33130 review)
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet adapted to the stdlib: importlib.import_module run by a thread pool (pandas is not installed)
# defence: no caller-frame trust for user-initiated imports; OS layer on the file read
import importlib
from concurrent.futures import ThreadPoolExecutor
with ThreadPoolExecutor(1) as pool:
    os_ = pool.submit(importlib.import_module, 'os').result()
PWNED = os_.read(os_.open('{{CANARY_FILE}}', 0), 64)
return [{'json': {'pwned': repr(PWNED)}}]
