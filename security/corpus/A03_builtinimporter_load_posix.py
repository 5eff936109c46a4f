# id: A03
# category: introspection
# title: BuiltinImporter.load_module('posix') from the subclass list (no import statement at all)
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet
# defence: AST; the import hook is never called; OS layer on open
for c in ().__class__.__base__.__subclasses__():
    if c.__name__ == 'BuiltinImporter':
        p = c.load_module('posix')
        PWNED = p.read(p.open('{{CANARY_FILE}}', 0), 64)
        return [{'json': {'pwned': repr(PWNED)}}]
return [{'json': {'pwned': None}}]
