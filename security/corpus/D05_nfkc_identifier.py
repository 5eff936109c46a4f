# id: D05
# category: attr
# title: Unicode NFKC identifiers (print.__ｇｌｏｂａｌｓ__) defeat text/regex filters; the AST sees the normalized name
# expect: refused
# expect-open: refused
# mode: all
# source: doc snippet (dumps the whole globals dict)
# defence: AST-based checks see the NFKC-normalized name
PWNED = print.__ｇｌｏｂａｌｓ__
return [{'json': {'pwned': repr(PWNED)[:20000]}}]
