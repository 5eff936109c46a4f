# id: X26
# category: python-policy
# title: string.Formatter().get_field and str.format_map attribute paths built at run time, to reach os without importing it
# expect: refused
# expect-open: refused
# mode: all
# source: taskbox (issue 11: get_field returned a real object from an attribute path)
# defence: the runtime format guard (n8n's wording: Security violation detected); the OS layers still hold behind it
import string
path = '.'.join(['0', '_' + '_init_' + '_', '_' + '_globals_' + '_'])
value, _ = string.Formatter().get_field(path, [string.Template], {})
shown = ('{0.' + '_' + '_init_' + '_}').format_map({'0': string.Template})
return [{'json': {'reached': sorted(value)[:3], 'shown': shown}}]
