# id: N01
# category: misc
# title: mutate shared injected objects (_items reused across per-item runs)
# expect: contained
# expect-open: contained
# mode: all
# source: doc snippet
# defence: each execution gets its own copy; fork per task
_items.append({'json': {'forged': True}})
_items[0]['json']['mutated'] = True
return _items
