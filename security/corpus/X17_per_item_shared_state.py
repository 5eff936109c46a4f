# id: X17
# category: misc
# title: per-item mode: leave state in a shared module for later items, and look for other tasks' items
# expect: refused
# expect-open: contained
# mode: each
# victim: yes
# source: taskbox (runOnceForEachItem; a victim task runs alongside)
# defence: one worker per task: only this task's earlier items can be seen, never another task's
import json
previous = getattr(json, 'taskbox_probe', None)
json.taskbox_probe = dict(_item['json'])
return {'json': {'n': _item['json']['n'], 'previous': previous}}
