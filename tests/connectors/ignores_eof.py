#!/usr/bin/env python3
"""Works, but does not exit when its stdin closes."""
import sys
import time
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import proxy  # noqa: E402

proxy.run(lambda n, req, forward, config: forward())
for _ in range(3600):
    time.sleep(1)
