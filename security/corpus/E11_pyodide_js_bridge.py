# id: E11
# category: import
# title: Pyodide runtimes: import js; js.process / pyodide_js._api (CVE-2025-68668 'N8scape' class)
# expect: refused
# expect-open: contained
# mode: all
# source: doc snippet
# defence: no WASM runtime in a privileged host; process isolation
import js
PWNED = js.process.mainModule.require('child_process').execSync('id')
return [{'json': {'pwned': repr(PWNED)}}]
