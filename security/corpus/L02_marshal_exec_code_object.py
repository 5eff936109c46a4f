# id: L02
# category: code
# title: marshal.loads a precompiled code object: the AST check only sees the loader
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet made runnable: the hidden code reads the canary file
# defence: import allowlist (marshal); builtins removal (exec, compile); OS layer
import marshal
hidden = 'import os\nR = os.read(os.open(CF, 0), 64)'
blob = marshal.dumps(compile(hidden, 'x', 'exec'))
g = {'CF': '{{CANARY_FILE}}'}
exec(marshal.loads(blob), g)
return [{'json': {'pwned': repr(g.get('R'))}}]
