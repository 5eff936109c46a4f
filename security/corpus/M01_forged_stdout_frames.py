# id: M01
# category: channel
# title: write fake protocol messages straight to fd 1/2 (if the runner parses stdout)
# expect: refused
# expect-open: contained
# mode: all
# source: doc snippet (fd 1) plus a forged runner message on fd 2
# defence: results on a dedicated channel, never stdout; child output is untrusted bytes
import os
os.write(1, b'{"result": [{"json": {"forged": true}}]}\n')
os.write(2, b'{"type":"runner:taskdone","taskId":"x","data":{"result":[]}}\n')
return [{'json': {'wrote': True}}]
