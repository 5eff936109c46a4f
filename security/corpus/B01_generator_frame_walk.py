# id: B01
# category: frames
# title: generator gi_frame.f_back walks into the runner's frames (locals + globals)
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet (returns every local and global on the stack)
# defence: AST (gi_frame, f_back, f_locals, f_globals); no secrets in the worker's stack or heap
def g():
    yield gen.gi_frame.f_back
gen = g()
FRAME = next(gen)

found = []
f = FRAME
while f is not None:
    for scope in (f.f_locals, f.f_globals):
        for k, v in list(scope.items()):
            found.append((str(k) + '=' + repr(v))[:300])
    f = f.f_back
return [{'json': {'found': found[:500]}}]
