#!/usr/bin/env python3
"""Never replies to `list` (writes its pid and its child's to `config.pid_file`);
with `config.ignore_eof`, does not exit when its stdin closes either."""
import sys
import time
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import proxy  # noqa: E402


def hook(n, req, forward, config):
    if req.get("op") == "list":
        for _ in range(3600):
            time.sleep(1)
    return forward()


config = proxy.run(hook)
if config.get("ignore_eof"):
    for _ in range(3600):
        time.sleep(1)
