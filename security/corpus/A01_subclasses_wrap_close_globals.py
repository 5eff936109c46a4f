# id: A01
# category: introspection
# title: object.__subclasses__() walk to os._wrap_close, then its __init__.__globals__
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet (CANARY -> the canary file)
# defence: AST (__subclasses__/__globals__/__base__); OS layer (Landlock, uid) on the final open
for c in ().__class__.__base__.__subclasses__():
    if c.__name__ == '_wrap_close':
        B = c.__init__.__globals__['__builtins__']
        B = B if isinstance(B, dict) else B.__dict__
        PWNED = B['open']('{{CANARY_FILE}}').read()
        return [{'json': {'pwned': PWNED}}]
return [{'json': {'pwned': None}}]
