# id: F02
# category: native
# title: ctypes memmove to rewrite interpreter objects (e.g. restore removed builtins, patch guards)
# expect: refused
# expect-open: contained
# mode: all
# source: safe variant: rewrite one byte of the worker's own bytes object
# defence: import allowlist; once memory is writable only the OS layers hold (the worker is single-use)
import ctypes
b = bytes([65]) * 8
ctypes.memmove(id(b) + bytes.__basicsize__ - 1, b'Z', 1)
return [{'json': {'own_object_rewritten': b.decode()}}]
