#!/usr/bin/env python3
"""Answers the first attempt of every `ensure` (per idem) with a `retryable`
error (`retry_after: 0`), then works; with `config.always`, every attempt."""
import sys
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import proxy  # noqa: E402

seen = set()


def hook(n, req, forward, config):
    if req.get("op") == "ensure" and (config.get("always") or req["idem"] not in seen):
        seen.add(req["idem"])
        return {"id": req["id"], "ok": False,
                "error": {"class": "retryable", "message": "busy, try again", "retry_after": 0}}
    return forward()


proxy.run(hook)
