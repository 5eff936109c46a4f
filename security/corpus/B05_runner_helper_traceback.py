# id: B05
# category: frames
# title: exception raised inside a runner helper: tb_next.tb_frame is a runner frame
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet, made concrete: the injected print formats a hostile object
# defence: AST (tb_next/tb_frame); helpers hold nothing secret
class Hostile:
    def __repr__(self):
        raise ValueError('make the runner helper raise')
    __str__ = __repr__
try:
    print(Hostile())
except Exception as e:
    runner_frame = e.__traceback__.tb_next.tb_frame
    secrets = runner_frame.f_globals
    return [{'json': {'globals': [(str(k) + '=' + repr(v))[:300] for k, v in list(secrets.items())][:300]}}]
return [{'json': {'printed': True}}]
