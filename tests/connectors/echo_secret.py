#!/usr/bin/env python3
"""Logs every secret it gets or makes on stderr. Tokens are `target_generated`:
it mints them itself (one per idem) and logs each before replying."""
import secrets, sys
sys.dont_write_bytecode = True  # no __pycache__ in the source tree
import proxy  # noqa: E402

minted = {}


def hook(n, req, forward, config):
    op = req.get("op")
    if op == "hello":
        reply = forward()
        if reply["ok"]:
            reply["capabilities"]["secrets"]["token"] = "target_generated"
        return reply
    if op == "set_secret":
        print(f"set_secret: the new {req['kind']} is {req['value']}", file=sys.stderr, flush=True)
    if op == "generate_secret":
        value = minted.setdefault(req["idem"], "tok-" + secrets.token_hex(16))
        print(f"generate_secret: minted {value}", file=sys.stderr, flush=True)
        return {"id": req["id"], "ok": True, "secret": {"kind": req["kind"], "value": value}, "username": None}
    if op == "revoke_secret" and req.get("kind") == "token":
        return {"id": req["id"], "ok": True}
    return forward()


proxy.run(hook)
