#!/usr/bin/env python3
"""Tokens are `target_generated`, and every `generate_secret` mints a new
one, even for a replayed idem (the rule it breaks)."""
import sys
import secrets
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import proxy  # noqa: E402


def hook(n, req, forward, config):
    op = req.get("op")
    if op == "hello":
        reply = forward()
        if reply["ok"]:
            reply["capabilities"]["secrets"] = {"token": "target_generated"}
        return reply
    if op == "generate_secret":
        value = "tok-" + secrets.token_hex(16)
        return {"id": req["id"], "ok": True, "secret": {"kind": req["kind"], "value": value}, "username": None}
    if op == "revoke_secret":
        return {"id": req["id"], "ok": True}
    return forward()


proxy.run(hook)
