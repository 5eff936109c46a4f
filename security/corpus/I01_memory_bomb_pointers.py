# id: I01
# category: resource
# title: memory bomb: list of 10**10 pointers
# expect: limit
# expect-open: limit
# mode: all
# source: doc snippet
# defence: RLIMIT_AS/RLIMIT_DATA (MemoryError ends the task) or cgroup memory.max
x = [0] * 10**10
return [{'json': {'len': len(x)}}]
