# id: N04
# category: misc
# title: class definitions / metaclasses / __init_subclass__ (needs __build_class__)
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet
# defence: classes are allowed in taskbox; methods named after blocked attributes are refused by the AST
class A:
    def __reduce__(self):
        ...

return [{'json': {'defined': repr(A)}}]
