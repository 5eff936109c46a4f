# id: L01
# category: code
# title: pickle.loads calls arbitrary callables
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet (os.system('true')) and the probe's dotted re-export
# defence: import allowlist (pickle); seccomp for what the callable does
_esc = lambda what: '-'.join(['TASKBOX', 'ESCAPED', what])  # built at run time: never in the source

import pickle
pid = pickle.loads(b'\x80\x04\x8c\x06random\x8c\x0a_os.getpid\x93)R.')
rc = pickle.loads(b"cos\nsystem\n(S'true'\ntR.")
return [{'json': {'getpid': pid, 'system_rc': rc,
                  'escape': _esc('pickle-ran-os-system') if rc == 0 else None}}]
