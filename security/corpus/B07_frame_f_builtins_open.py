# id: B07
# category: frames
# title: f_builtins of any frame is the real builtins dict
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet
# defence: AST (f_builtins); OS layer on the open
def g():
    yield gen.gi_frame.f_back
gen = g()
B = next(gen).f_builtins
B = B if isinstance(B, dict) else B.__dict__
PWNED = B['open']('{{CANARY_FILE}}').read()
return [{'json': {'pwned': PWNED}}]
