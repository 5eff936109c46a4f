# id: I02
# category: resource
# title: memory bomb: touched bytes
# expect: limit
# expect-open: limit
# mode: all
# source: doc snippet
# defence: RLIMIT_AS / cgroup; RSS polling as a backstop
x = b'x' * (6 * 1024**3)
return [{'json': {'len': len(x)}}]
