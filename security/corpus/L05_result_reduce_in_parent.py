# id: L05
# category: code
# title: child-to-parent unpickling: a result object with __reduce__ executes in the PARENT when a multiprocessing Queue/Pipe is used
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet: the hostile object is returned as the result
# defence: JSON over a pipe with size limits, never pickle; AST (method named __reduce__)
import os

class X:
    def __reduce__(self):
        return (os.system, ('true',))

return [{'json': {'x': X()}}]
