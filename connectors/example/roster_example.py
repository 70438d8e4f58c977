#!/usr/bin/env python3
"""A roster connector (protocol v1): users and groups in the JSON file named by `config.path`."""
import hashlib, json, os, sys, tempfile, uuid

PAGE = 50  # objects per `list` page
CAPS = {"kinds": ["user", "group"], "paging": True, "membership": "on_user",
        "secrets": {"password": "roster_generated", "token": "roster_generated"}}
Fail = type("Fail", (Exception,), {})  # raise Fail(error_class, message)
cfg = {}  # the target's `config` from hello
def load():  # the whole file, read afresh for every request
    return json.load(open(cfg["path"])) if os.path.exists(cfg["path"]) else {"user": {}, "group": {}}
def save(data):  # atomic: a temporary file beside it, fsync, rename over the old one
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(cfg["path"])), prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=1, sort_keys=True); f.flush(); os.fsync(f.fileno())
    os.replace(tmp, cfg["path"])
def handle(req, op):
    if op == "hello":
        if 1 not in req["versions"]:
            raise Fail("unsupported", "this connector speaks protocol version 1 only")
        cfg.update(req["config"])
        return {"version": 1, "capabilities": CAPS}
    if op not in ("list", "ensure", "delete", "set_secret", "revoke_secret"):
        raise Fail("unsupported", f"unknown op {op!r}")
    objs = (data := load())["user" if op.endswith("_secret") else req["kind"]]
    if op == "list":  # paging: the cursor is the index of the next page's first key
        keys, at = sorted(objs), int(req.get("cursor") or 0)
        page = [{"key": k, "ref": objs[k]["ref"], "attrs": objs[k]["attrs"]} for k in keys[at:at + PAGE]]
        return {"items": page, "next": str(at + PAGE) if at + PAGE < len(keys) else None}
    key, prev = req["key"], req.get("previous_key")
    if op == "ensure":  # declarative: the same attrs again change nothing
        renamed = prev in objs and prev != key
        old = objs.pop(prev if renamed else key, None)
        objs[key] = new = {"ref": old["ref"] if old else uuid.uuid4().hex,
                           "attrs": dict(req["attrs"]), "secrets": old["secrets"] if old else {}}
        changed = renamed or old != new
    elif op == "delete":  # deleting an absent object succeeds
        changed = objs.pop(key, None) is not None
    elif key not in objs or req["kind"] not in CAPS["secrets"]:
        raise Fail("not_found" if key not in objs else "invalid", f"no user {key!r} or bad kind")
    else:  # set_secret / revoke_secret: only a salted PBKDF2-SHA256 hash is ever stored
        salt, held = os.urandom(16), objs[key]["secrets"]
        changed = held.pop(req["kind"], None) is not None or op == "set_secret"
        if op == "set_secret":
            digest = hashlib.pbkdf2_hmac("sha256", req["value"].encode(), salt, 100_000).hex()
            held[req["kind"]] = f"pbkdf2_sha256$100000${salt.hex()}${digest}"
    if changed:
        save(data)
    print(f"{op} {key}: {'changed' if changed else 'no change'}", file=sys.stderr, flush=True)
    return {"ref": new["ref"], "changed": changed, "attrs": new["attrs"]} if op == "ensure" else {}

for line in sys.stdin:  # one request per line; exactly one reply line each, nothing else on stdout
    req = {}
    try:
        req = dict(json.loads(line))  # not an object: TypeError/ValueError, id null
        reply = {"id": req["id"], "ok": True, **handle(req, req["op"])}
    except (Fail, KeyError, TypeError, ValueError, AttributeError) as e:
        cls, msg = e.args if isinstance(e, Fail) else ("invalid", f"bad request: {type(e).__name__} {e}")
        reply = {"id": req.get("id"), "ok": False, "error": {"class": cls, "message": msg}}
    print(json.dumps(reply), flush=True)
