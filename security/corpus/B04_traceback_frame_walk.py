# id: B04
# category: frames
# title: traceback tb_frame.f_back from any caught exception
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet (returns every local and global on the stack)
# defence: AST (__traceback__, tb_frame); secrets out of the worker
try:
    1 / 0
except Exception as e:
    FRAME = e.__traceback__.tb_frame

found = []
f = FRAME
while f is not None:
    for scope in (f.f_locals, f.f_globals):
        for k, v in list(scope.items()):
            found.append((str(k) + '=' + repr(v))[:300])
    f = f.f_back
return [{'json': {'found': found[:500]}}]
