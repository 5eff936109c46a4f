# id: B08
# category: frames
# title: f_code.co_consts of runner frames leaks literals compiled into runner code
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet (walks every frame)
# defence: AST (f_code); never embed secrets as literals
def g():
    yield gen.gi_frame.f_back
gen = g()
f = next(gen)
consts = []
while f is not None:
    consts.append(repr(f.f_code.co_consts)[:2000])
    f = f.f_back
return [{'json': {'consts': consts}}]
