# id: A02
# category: introspection
# title: catch_warnings()._module.__builtins__ -> __import__
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet
# defence: AST; OS layer (Landlock) on the file read
for c in ().__class__.__base__.__subclasses__():
    if c.__name__ == 'catch_warnings':
        B = c()._module.__builtins__
        B = B if isinstance(B, dict) else B.__dict__
        os_ = B['__import__']('os')
        PWNED = os_.read(os_.open('{{CANARY_FILE}}', 0), 64)
        return [{'json': {'pwned': repr(PWNED)}}]
return [{'json': {'pwned': None}}]
