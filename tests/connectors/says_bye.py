#!/usr/bin/env python3
"""Works, but prints `bye` on stdout when its stdin closes (after its last reply)."""
import sys
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import proxy  # noqa: E402

proxy.run(lambda n, req, forward, config: forward())
print("bye", flush=True)
