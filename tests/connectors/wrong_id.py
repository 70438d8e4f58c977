#!/usr/bin/env python3
"""Replies to `ensure` with another request's id."""
import sys
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import proxy  # noqa: E402


def hook(n, req, forward, config):
    reply = forward()
    if req.get("op") == "ensure":
        reply["id"] = req["id"] + 1
    return reply


proxy.run(hook)
