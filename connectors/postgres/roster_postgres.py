#!/usr/bin/env python3
"""roster connector for PostgreSQL (connector protocol v1).

An API user is a LOGIN role named by its key, a roster group a NOLOGIN role;
roster-managed roles carry a comment `roster:user` / `roster:group`. Set rights
are per schema. Passwords are roster_generated: the connector sends the server
a SCRAM-SHA-256 verifier computed here, never the password. See README.md.

Protocol: JSON Lines on stdin/stdout, one request then one reply. stdout
carries nothing but replies; stderr is the log. Needs psycopg 3
(requirements.txt).
"""

import base64
import hashlib
import hmac
import json
import os
import secrets
import stringprep
import sys
import unicodedata

# Keep the real stdout for protocol replies only; anything else that writes
# to sys.stdout (a library, a stray print) lands in the log instead.
_PROTO_OUT = sys.stdout
sys.stdout = sys.stderr

try:
    import psycopg
    import psycopg.conninfo
    from psycopg import sql

    _PG_ERROR = psycopg.Error
except ImportError as e:  # reported as a fatal reply to the first request that needs it
    psycopg = None
    _IMPORT_ERROR = str(e)
    _PG_ERROR = ()

PROTOCOL_VERSION = 1
LEVELS = ("none", "read", "write", "full")
# Table privileges each level holds (USAGE on the schema comes with any level
# but none).
LEVEL_PRIVS = {
    "none": frozenset(),
    "read": frozenset({"SELECT"}),
    "write": frozenset({"SELECT", "INSERT", "UPDATE"}),
    "full": frozenset({"SELECT", "INSERT", "UPDATE", "DELETE"}),
}
MANAGED_PRIVS = ("SELECT", "INSERT", "UPDATE", "DELETE")
# The level reported for a schema whose grants match no level exactly.
CUSTOM = "custom"
MARK = {"user": "roster:user", "group": "roster:group"}
# Relations "ALL TABLES IN SCHEMA" covers: tables, partitioned tables, views,
# materialized views, foreign tables.
REL_KINDS = ["r", "p", "v", "m", "f"]
NAMEDATALEN = 63
SCRAM_ITERATIONS = 4096
LOG_LEVELS = {"debug": 10, "info": 20, "warning": 30, "error": 40}
CONFIG_KEYS = {"dsn_env", "schema_prefix", "page_size", "log_level"}


class Fail(Exception):
    """A request failed with a protocol error class."""

    def __init__(self, cls, message, retry_after=None):
        super().__init__(message)
        self.cls = cls
        self.message = message
        self.retry_after = retry_after


class Log:
    """stderr log; every known secret is replaced before a line is written."""

    def __init__(self):
        self.level = LOG_LEVELS["info"]
        self.secrets = set()

    def scrub(self, text):
        text = str(text)
        for s in sorted(self.secrets, key=len, reverse=True):
            if s:
                text = text.replace(s, "[redacted]")
        return text

    def write(self, level, msg):
        if LOG_LEVELS[level] >= self.level:
            for line in self.scrub(msg).splitlines() or [""]:
                sys.stderr.write(f"{level}: {line}\n")
            sys.stderr.flush()

    def debug(self, msg):
        self.write("debug", msg)

    def info(self, msg):
        self.write("info", msg)

    def warning(self, msg):
        self.write("warning", msg)


LOG = Log()


# --- SCRAM-SHA-256 (RFC 5802, RFC 7677), as PostgreSQL stores it -----------

def _saslprep(password):
    """SASLprep (RFC 4013) as PostgreSQL applies it: ASCII passes unchanged;
    a password that is not valid after preparation is used as it is."""
    if password.isascii():
        return password
    # Mapping: non-ASCII spaces to space, "commonly mapped to nothing" removed.
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c
        for c in password
        if not stringprep.in_table_b1(c)
    )
    prepared = unicodedata.normalize("NFKC", mapped)
    if not prepared:
        return password
    prohibited = (
        stringprep.in_table_c12,
        stringprep.in_table_c21,
        stringprep.in_table_c22,
        stringprep.in_table_c3,
        stringprep.in_table_c4,
        stringprep.in_table_c5,
        stringprep.in_table_c6,
        stringprep.in_table_c7,
        stringprep.in_table_c8,
        stringprep.in_table_c9,
        stringprep.in_table_a1,
    )
    if any(check(c) for c in prepared for check in prohibited):
        return password
    # Bidirectional check (RFC 3454 section 6).
    if any(stringprep.in_table_d1(c) for c in prepared):
        if any(stringprep.in_table_d2(c) for c in prepared):
            return password
        if not (stringprep.in_table_d1(prepared[0]) and stringprep.in_table_d1(prepared[-1])):
            return password
    return prepared


def scram_verifier(password, salt=None, iterations=SCRAM_ITERATIONS):
    """`SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>` for `password`."""
    if salt is None:
        salt = secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac(
        "sha256", _saslprep(password).encode("utf-8"), salt, iterations
    )
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.new(salted, b"Server Key", hashlib.sha256).digest()
    b64 = lambda b: base64.b64encode(b).decode("ascii")  # noqa: E731
    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


# --- errors ----------------------------------------------------------------

RETRYABLE_SQLSTATE_PREFIXES = ("08", "53", "57P")
RETRYABLE_SQLSTATES = {"40001", "40P01", "55P03"}


def classify(exc):
    """The protocol class for a psycopg error."""
    state = getattr(exc, "sqlstate", None) or ""
    text = str(exc).lower()
    if state in ("28P01", "28000") or "password authentication failed" in text or (
        "authentication" in text and "failed" in text
    ):
        return "auth"
    if state == "42501":
        return "auth"
    if state in RETRYABLE_SQLSTATES or state.startswith(RETRYABLE_SQLSTATE_PREFIXES):
        return "retryable"
    if state in ("42704", "3F000", "3D000"):
        return "not_found"
    if state in ("42710", "2BP01", "23505"):
        return "conflict"
    if state.startswith(("22", "42")):
        return "invalid"
    if isinstance(exc, psycopg.OperationalError):
        # No SQLSTATE: the connection itself failed (refused, reset, timed out).
        return "retryable"
    return "fatal"


def classify_connect(exc):
    """The protocol class for a failed connection (libpq gives no SQLSTATE)."""
    text = str(exc).lower()
    if "password authentication failed" in text or "no pg_hba.conf entry" in text or (
        "role" in text and "does not exist" in text
    ) or "authentication" in text:
        return "auth"
    if "does not exist" in text or "invalid" in text:
        return "invalid"
    return classify(exc) if getattr(exc, "sqlstate", None) else "retryable"


# --- request validation ----------------------------------------------------

def need_str(req, field, where=None):
    v = req.get(field)
    if not isinstance(v, str) or v == "":
        raise Fail("invalid", f"{where or field}: expected a non-empty string, got {json.dumps(v)[:80]}")
    return v


def role_name(value, where):
    if not isinstance(value, str) or value == "":
        raise Fail("invalid", f"{where}: expected a non-empty role name, got {json.dumps(value)[:80]}")
    if "\x00" in value:
        raise Fail("invalid", f"{where}: a role name cannot hold a NUL character")
    if len(value.encode("utf-8")) > NAMEDATALEN:
        raise Fail(
            "invalid",
            f"{where}: {value[:20]!r}… is {len(value.encode('utf-8'))} bytes; "
            f"PostgreSQL names hold at most {NAMEDATALEN}",
        )
    if value.startswith("pg_"):
        raise Fail("invalid", f"{where}: {value!r}: names starting with pg_ are reserved by PostgreSQL")
    return value


def as_bool(value, where):
    if value is None:
        return True
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise Fail("invalid", f"{where}: expected a boolean, got {json.dumps(value)[:80]}")


def opt_text(value, where):
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Fail("invalid", f"{where}: expected a string, got {json.dumps(value)[:80]}")
    return value


# --- the connector ---------------------------------------------------------

class Connector:
    def __init__(self):
        self.config = None
        self.dsn = None
        self.dsn_env = None
        self.conn = None
        self.prefix = ""
        self.page_size = 100
        # Roles whose sessions to end once the current transaction commits.
        self.after_commit = []

    # hello ---------------------------------------------------------------

    def op_hello(self, req):
        if psycopg is None:
            raise Fail("fatal", f"psycopg is not installed ({_IMPORT_ERROR}); pip install -r requirements.txt")
        versions = req.get("versions")
        if not isinstance(versions, list) or PROTOCOL_VERSION not in versions:
            raise Fail(
                "unsupported",
                f"this connector speaks protocol version {PROTOCOL_VERSION}; roster offered {json.dumps(versions)[:80]}",
            )
        config = req.get("config") or {}
        if not isinstance(config, dict):
            raise Fail("invalid", "config: expected an object")
        unknown = sorted(set(config) - CONFIG_KEYS)
        if unknown:
            raise Fail(
                "invalid",
                f"config: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(CONFIG_KEYS))})",
            )
        dsn_env = config.get("dsn_env")
        if not isinstance(dsn_env, str) or not dsn_env:
            raise Fail("invalid", "config.dsn_env: expected the name of the environment variable holding the DSN")
        dsn = os.environ.get(dsn_env)
        if not dsn:
            raise Fail(
                "invalid",
                f"config.dsn_env: the environment variable {dsn_env} is not set or empty "
                f"(list it in the target's `env:` so roster passes it on)",
            )
        prefix = config.get("schema_prefix", "")
        if prefix is None:
            prefix = ""
        if not isinstance(prefix, str):
            raise Fail("invalid", "config.schema_prefix: expected a string")
        page_size = config.get("page_size", 100)
        if not isinstance(page_size, int) or isinstance(page_size, bool) or not 1 <= page_size <= 10000:
            raise Fail("invalid", "config.page_size: expected an integer from 1 to 10000")
        log_level = config.get("log_level", "info")
        if log_level not in LOG_LEVELS:
            raise Fail("invalid", f"config.log_level: expected one of {', '.join(LOG_LEVELS)}")
        LOG.level = LOG_LEVELS[log_level]
        # The DSN's password (and the DSN itself) never reach the log.
        LOG.secrets.add(dsn)
        try:
            parts = psycopg.conninfo.conninfo_to_dict(dsn)
        except psycopg.ProgrammingError:
            raise Fail("invalid", f"config.dsn_env: the value of {dsn_env} is not a valid PostgreSQL connection string")
        if parts.get("password"):
            LOG.secrets.add(str(parts["password"]))
        self.dsn, self.dsn_env, self.prefix, self.page_size = dsn, dsn_env, prefix, page_size
        self.config = config
        LOG.info(
            f"hello: target {req.get('target')!r}, server from ${dsn_env} "
            f"(host {parts.get('host') or parts.get('hostaddr') or 'default'}, "
            f"database {parts.get('dbname') or 'default'}), schema_prefix {prefix!r}"
        )
        return {
            "version": PROTOCOL_VERSION,
            "capabilities": {
                "kinds": ["user", "group"],
                "paging": True,
                "membership": "on_user",
                "secrets": {"password": "roster_generated"},
            },
        }

    # database ------------------------------------------------------------

    def db(self):
        if self.config is None:
            raise Fail("invalid", "hello must come first")
        if psycopg is None:
            raise Fail("fatal", f"psycopg is not installed ({_IMPORT_ERROR}); pip install -r requirements.txt")
        if self.conn is not None and not self.conn.closed and not self.conn.broken:
            return self.conn
        try:
            self.conn = psycopg.connect(
                self.dsn, autocommit=False, application_name="roster-postgres", connect_timeout=10
            )
        except psycopg.Error as e:
            cls = classify_connect(e)
            raise Fail(
                cls,
                f"connecting to the server in ${self.dsn_env} failed: {LOG.scrub(str(e).strip())}",
                retry_after=2 if cls == "retryable" else None,
            )
        self.conn.add_notice_handler(lambda d: LOG.debug(f"server notice: {d.severity}: {d.message_primary}"))
        LOG.debug("connected")
        return self.conn

    def exec(self, cur, query, params=None, show=None):
        text = show if show is not None else query.as_string(cur) if isinstance(query, sql.Composable) else query
        LOG.debug(f"sql: {text}")
        cur.execute(query, params)

    # roles ---------------------------------------------------------------

    def role_by_name(self, cur, name):
        self.exec(
            cur,
            "SELECT r.oid, r.rolname, r.rolsuper, r.rolcanlogin,"
            " coalesce(r.rolvaliduntil <= now(), false),"
            " shobj_description(r.oid, 'pg_authid'),"
            " r.rolname = current_user OR r.rolname = session_user"
            " FROM pg_roles r WHERE r.rolname = %s",
            (name,),
        )
        row = cur.fetchone()
        if row is None:
            return None
        oid, rolname, superuser, canlogin, expired, comment, is_self = row
        return {
            "oid": oid,
            "name": rolname,
            "super": superuser,
            "canlogin": canlogin,
            "expired": expired,
            "comment": comment,
            "self": is_self,
        }

    def guard(self, role, where):
        """Roles the connector never changes."""
        if role["super"]:
            raise Fail("invalid", f"{where}: {role['name']!r} is a superuser; roster does not manage superusers")
        if role["self"]:
            raise Fail("invalid", f"{where}: {role['name']!r} is the role the connector connects as")
        if role["name"].startswith("pg_"):
            raise Fail("invalid", f"{where}: {role['name']!r} is a PostgreSQL system role")

    @staticmethod
    def marked_kind(comment):
        if comment is None:
            return None
        for kind, mark in MARK.items():
            if comment == mark or comment.startswith(mark + " "):
                return kind
        return None

    @staticmethod
    def comment_text(comment):
        kind = Connector.marked_kind(comment)
        if kind is None:
            return ""
        return comment[len(MARK[kind]) + 1:]

    def managed_groups(self, cur):
        """Group roles roster manages: name -> oid."""
        self.exec(
            cur,
            "SELECT r.oid, r.rolname, shobj_description(r.oid, 'pg_authid') FROM pg_roles r"
            " WHERE NOT r.rolsuper AND r.rolname !~ '^pg_'",
        )
        return {name: oid for oid, name, comment in cur.fetchall() if self.marked_kind(comment) == "group"}

    # set rights ----------------------------------------------------------

    def schemas(self, cur):
        """Schemas under the prefix: area -> (oid, schema name, owner name)."""
        self.exec(
            cur,
            "SELECT n.oid, n.nspname, pg_get_userbyid(n.nspowner) FROM pg_namespace n"
            " WHERE n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'"
            " AND starts_with(n.nspname, %s) AND length(n.nspname) > length(%s)",
            (self.prefix, self.prefix),
        )
        return {name[len(self.prefix):]: (oid, name, owner) for oid, name, owner in cur.fetchall()}

    def rights_of(self, cur, oids):
        """oid -> {area: level} from the privileges granted to each role directly
        (not through PUBLIC or membership), for every schema under the prefix."""
        out = {oid: {} for oid in oids}
        if not oids:
            return out
        schemas = self.schemas(cur)
        by_nsp = {oid: area for area, (oid, _, _) in schemas.items()}
        if not by_nsp:
            return out
        nsp_oids = list(by_nsp)
        self.exec(
            cur,
            "SELECT n.oid, a.grantee FROM pg_namespace n, aclexplode(n.nspacl) a"
            " WHERE n.oid = ANY(%s) AND a.privilege_type = 'USAGE' AND a.grantee = ANY(%s)",
            (nsp_oids, oids),
        )
        usage = set(cur.fetchall())
        self.exec(
            cur,
            "SELECT c.relnamespace, count(*) FROM pg_class c"
            " WHERE c.relnamespace = ANY(%s) AND c.relkind::text = ANY(%s) GROUP BY 1",
            (nsp_oids, REL_KINDS),
        )
        table_count = dict(cur.fetchall())
        self.exec(
            cur,
            "SELECT c.relnamespace, a.grantee, a.privilege_type, count(DISTINCT c.oid)"
            " FROM pg_class c, aclexplode(c.relacl) a"
            " WHERE c.relnamespace = ANY(%s) AND c.relkind::text = ANY(%s)"
            " AND a.grantee = ANY(%s) AND a.privilege_type = ANY(%s) GROUP BY 1, 2, 3",
            (nsp_oids, REL_KINDS, oids, list(MANAGED_PRIVS)),
        )
        granted = {(nsp, grantee, priv): n for nsp, grantee, priv, n in cur.fetchall()}
        # Default privileges for tables the schema's owner creates later.
        self.exec(
            cur,
            "SELECT d.defaclnamespace, a.grantee, a.privilege_type"
            " FROM pg_default_acl d JOIN pg_namespace n ON n.oid = d.defaclnamespace"
            " AND d.defaclrole = n.nspowner, aclexplode(d.defaclacl) a"
            " WHERE d.defaclobjtype = 'r' AND d.defaclnamespace = ANY(%s)"
            " AND a.grantee = ANY(%s) AND a.privilege_type = ANY(%s)",
            (nsp_oids, oids, list(MANAGED_PRIVS)),
        )
        defaults = set(cur.fetchall())
        for oid in oids:
            for nsp, area in by_nsp.items():
                has_usage = (nsp, oid) in usage
                total = table_count.get(nsp, 0)
                privs, mixed = set(), False
                for p in MANAGED_PRIVS:
                    n = granted.get((nsp, oid, p), 0)
                    d = (nsp, oid, p) in defaults
                    if n == total and d:
                        privs.add(p)
                    elif n != 0 or d:
                        mixed = True
                if not has_usage and not privs and not mixed:
                    continue
                level = CUSTOM
                if has_usage and not mixed:
                    for name, want in LEVEL_PRIVS.items():
                        if name != "none" and privs == want:
                            level = name
                out[oid][area] = level
        return out

    def apply_rights(self, cur, role, want, have):
        """Grant and revoke so that `role` holds `want` ({area: level})."""
        schemas = None
        changed = False
        for area in sorted(set(want) | set(have)):
            level = want.get(area, "none")
            current = have.get(area, "none")
            if level == current:
                continue
            if schemas is None:
                schemas = self.schemas(cur)
            if area not in schemas:
                if level == "none":
                    continue
                raise Fail(
                    "invalid",
                    f"attrs.set_rights.{area}: there is no schema {self.prefix + area!r} in this database",
                )
            _, schema, owner = schemas[area]
            s, r, o = sql.Identifier(schema), sql.Identifier(role), sql.Identifier(owner)
            keep = LEVEL_PRIVS[level]
            drop = [p for p in MANAGED_PRIVS if p not in keep]
            grant = [p for p in MANAGED_PRIVS if p in keep]
            privs = lambda ps: sql.SQL(", ").join(sql.SQL(p) for p in ps)  # noqa: E731
            if drop:
                self.exec(cur, sql.SQL("REVOKE {} ON ALL TABLES IN SCHEMA {} FROM {}").format(privs(drop), s, r))
                self.exec(
                    cur,
                    sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} REVOKE {} ON TABLES FROM {}").format(
                        o, s, privs(drop), r
                    ),
                )
            if grant:
                self.exec(cur, sql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(s, r))
                self.exec(cur, sql.SQL("GRANT {} ON ALL TABLES IN SCHEMA {} TO {}").format(privs(grant), s, r))
                self.exec(
                    cur,
                    sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} IN SCHEMA {} GRANT {} ON TABLES TO {}").format(
                        o, s, privs(grant), r
                    ),
                )
            else:
                self.exec(cur, sql.SQL("REVOKE USAGE ON SCHEMA {} FROM {}").format(s, r))
            changed = True
        return changed

    # attributes as held -------------------------------------------------

    def read_attrs(self, cur, kind, roles):
        """[(role row, attrs)] for `roles` (rows with oid, name, canlogin,
        expired, comment)."""
        oids = [r["oid"] for r in roles]
        if kind == "group":
            return [(r, {"description": self.comment_text(r["comment"])} if self.comment_text(r["comment"]) else {})
                    for r in roles]
        groups = {oid: [] for oid in oids}
        if oids:
            self.exec(
                cur,
                "SELECT m.member, g.rolname, shobj_description(g.oid, 'pg_authid')"
                " FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid"
                " WHERE m.member = ANY(%s) AND NOT g.rolsuper",
                (oids,),
            )
            for member, gname, comment in cur.fetchall():
                if self.marked_kind(comment) == "group":
                    groups[member].append(gname)
        rights = self.rights_of(cur, oids)
        out = []
        for r in roles:
            attrs = {
                "active": bool(r["canlogin"]) and not r["expired"],
                "groups": sorted(groups[r["oid"]]),
                "set_rights": rights[r["oid"]],
            }
            display = self.comment_text(r["comment"])
            if display:
                attrs["display_name"] = display
            out.append((r, attrs))
        return out

    # list ----------------------------------------------------------------

    def op_list(self, req):
        kind = req.get("kind")
        if kind not in ("user", "group"):
            raise Fail("invalid", f"kind: expected user or group, got {json.dumps(kind)[:40]}")
        cursor = req.get("cursor")
        after = None
        if cursor is not None:
            try:
                if not isinstance(cursor, str):
                    raise ValueError
                after = base64.urlsafe_b64decode(cursor.encode("ascii")).decode("utf-8")
            except (ValueError, UnicodeError):
                raise Fail("invalid", "cursor: not a cursor this connector returned")
        conn = self.db()
        with conn.transaction(), conn.cursor() as cur:
            # Marked roles are what their mark says; others: LOGIN = user, NOLOGIN = group.
            self.exec(
                cur,
                "SELECT r.oid, r.rolname, r.rolcanlogin, coalesce(r.rolvaliduntil <= now(), false),"
                " c.comment FROM pg_roles r,"
                " LATERAL (SELECT shobj_description(r.oid, 'pg_authid') AS comment) c"
                " WHERE NOT r.rolsuper AND r.rolname !~ '^pg_'"
                " AND r.rolname <> current_user AND r.rolname <> session_user"
                " AND (%s::text IS NULL OR r.rolname::text COLLATE \"C\" > %s::text COLLATE \"C\")"
                " AND CASE WHEN c.comment = 'roster:user' OR starts_with(c.comment, 'roster:user ') THEN 'user'"
                "  WHEN c.comment = 'roster:group' OR starts_with(c.comment, 'roster:group ') THEN 'group'"
                "  WHEN r.rolcanlogin THEN 'user' ELSE 'group' END = %s"
                " ORDER BY r.rolname::text COLLATE \"C\" LIMIT %s",
                (after, after, kind, self.page_size + 1),
            )
            rows = cur.fetchall()
            more = len(rows) > self.page_size
            rows = rows[: self.page_size]
            roles = [
                {"oid": oid, "name": name, "canlogin": canlogin, "expired": expired, "comment": comment}
                for oid, name, canlogin, expired, comment in rows
            ]
            items = [
                {"key": r["name"], "ref": str(r["oid"]), "attrs": attrs}
                for r, attrs in self.read_attrs(cur, kind, roles)
            ]
        nxt = None
        if more and roles:
            nxt = base64.urlsafe_b64encode(roles[-1]["name"].encode("utf-8")).decode("ascii")
        LOG.debug(f"list {kind}: {len(items)} item(s), more: {more}")
        return {"items": items, "next": nxt}

    # ensure --------------------------------------------------------------

    def op_ensure(self, req):
        kind = req.get("kind")
        if kind not in ("user", "group"):
            raise Fail("invalid", f"kind: expected user or group, got {json.dumps(kind)[:40]}")
        key = role_name(req.get("key"), "key")
        previous = req.get("previous_key")
        if previous is not None:
            previous = role_name(previous, "previous_key")
        attrs = req.get("attrs") or {}
        if not isinstance(attrs, dict):
            raise Fail("invalid", "attrs: expected an object")
        want = self.wanted(kind, attrs)
        conn = self.db()
        with conn.transaction(), conn.cursor() as cur:
            changed = False
            role = self.role_by_name(cur, key)
            if previous is not None and previous != key:
                old = self.role_by_name(cur, previous)
                if old is not None and role is not None:
                    raise Fail(
                        "conflict",
                        f"rename {previous!r} to {key!r}: both roles exist; drop or rename one by hand",
                    )
                if old is not None:
                    self.guard(old, "previous_key")
                    self.check_mark(old, kind, "previous_key")
                    self.exec(cur, sql.SQL("ALTER ROLE {} RENAME TO {}").format(
                        sql.Identifier(previous), sql.Identifier(key)))
                    role = self.role_by_name(cur, key)
                    changed = True
            if role is None:
                login = sql.SQL("LOGIN") if kind == "user" and want["active"] else sql.SQL("NOLOGIN")
                self.exec(cur, sql.SQL("CREATE ROLE {} {}").format(
                    sql.Identifier(key), login))
                if kind == "user" and not want["active"]:
                    self.exec(cur, sql.SQL("ALTER ROLE {} VALID UNTIL '-infinity'").format(sql.Identifier(key)))
                role = self.role_by_name(cur, key)
                changed = True
            else:
                self.guard(role, "key")
                if req.get("ref") is None and previous is None:
                    # A create: adopt only a role roster made (a lost reply),
                    # never someone else's role of the same name.
                    if self.marked_kind(role["comment"]) != kind:
                        raise Fail(
                            "conflict",
                            f"a role {key!r} exists and is not a roster-managed {kind} "
                            f"(its comment is not {MARK[kind]!r}); import it or rename it",
                        )
                else:
                    self.check_mark(role, kind, "key")
            changed |= self.converge(cur, kind, role, want)
            role = self.role_by_name(cur, key)
            (_, held), = self.read_attrs(cur, kind, [role])
        self.end_sessions()
        LOG.info(f"ensure {kind} {key!r}: {'changed' if changed else 'unchanged'}")
        return {"ref": str(role["oid"]), "changed": changed, "attrs": held}

    def check_mark(self, role, kind, where):
        marked = self.marked_kind(role["comment"])
        if marked is not None and marked != kind:
            raise Fail("conflict", f"{where}: role {role['name']!r} is a roster-managed {marked}, not a {kind}")

    def wanted(self, kind, attrs):
        if kind == "group":
            return {"comment": opt_text(attrs.get("description"), "attrs.description")}
        active = as_bool(attrs.get("active"), "attrs.active")
        groups = attrs.get("groups") or []
        if not isinstance(groups, list):
            raise Fail("invalid", "attrs.groups: expected a list of group names")
        names = set()
        for i, g in enumerate(groups):
            names.add(role_name(g, f"attrs.groups[{i}]"))
        rights = attrs.get("set_rights") or {}
        if not isinstance(rights, dict):
            raise Fail("invalid", "attrs.set_rights: expected an object {AREA: none|read|write|full}")
        levels = {}
        for area, level in rights.items():
            if not isinstance(level, str) or level not in LEVELS:
                raise Fail(
                    "invalid",
                    f"attrs.set_rights.{area}: {json.dumps(level)[:40]} is not one of {', '.join(LEVELS)}",
                )
            if area == "" or len((self.prefix + area).encode("utf-8")) > NAMEDATALEN or "\x00" in area:
                raise Fail("invalid", f"attrs.set_rights: {area!r} is not a possible schema name")
            if level != "none":
                levels[area] = level
        return {
            "comment": opt_text(attrs.get("display_name"), "attrs.display_name"),
            "active": active,
            "groups": names,
            "set_rights": levels,
        }

    def converge(self, cur, kind, role, want):
        changed = False
        r = sql.Identifier(role["name"])
        comment = MARK[kind] + (" " + want["comment"] if want["comment"] else "")
        if role["comment"] != comment:
            self.exec(cur, sql.SQL("COMMENT ON ROLE {} IS {}").format(r, sql.Literal(comment)))
            changed = True
        if kind == "group":
            if role["canlogin"]:
                self.exec(cur, sql.SQL("ALTER ROLE {} NOLOGIN").format(r))
                changed = True
            return changed
        # active: LOGIN with an unexpired password validity; inactive: NOLOGIN
        # and VALID UNTIL '-infinity', so a LOGIN granted by hand alone does
        # not bring password logins back.
        expired = role["expired"]
        if want["active"]:
            if not role["canlogin"]:
                self.exec(cur, sql.SQL("ALTER ROLE {} LOGIN").format(r))
                changed = True
            if expired:
                self.exec(cur, sql.SQL("ALTER ROLE {} VALID UNTIL 'infinity'").format(r))
                changed = True
        else:
            if role["canlogin"]:
                self.exec(cur, sql.SQL("ALTER ROLE {} NOLOGIN").format(r))
                changed = True
            if not expired:
                self.exec(cur, sql.SQL("ALTER ROLE {} VALID UNTIL '-infinity'").format(r))
                changed = True
            if changed:
                # After the commit: a session ended before it could log in again.
                self.after_commit.append(role["name"])
        # Membership, among the groups roster manages only.
        managed = self.managed_groups(cur)
        missing = sorted(want["groups"] - set(managed))
        if missing:
            raise Fail(
                "invalid",
                f"attrs.groups: {', '.join(repr(g) for g in missing)} is not a roster-managed group on this "
                f"server (a NOLOGIN role with the comment {MARK['group']!r}); ensure the group first",
            )
        (_, held), = self.read_attrs(cur, "user", [role])
        have_groups = set(held["groups"])
        for g in sorted(want["groups"] - have_groups):
            self.exec(cur, sql.SQL("GRANT {} TO {}").format(sql.Identifier(g), r))
            changed = True
        for g in sorted(have_groups - want["groups"]):
            self.exec(cur, sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(g), r))
            changed = True
        changed |= self.apply_rights(cur, role["name"], want["set_rights"], held["set_rights"])
        return changed

    def end_sessions(self):
        """End the open sessions of the roles deactivated or dropped by the
        transaction just committed."""
        names, self.after_commit = self.after_commit, []
        if not names:
            return
        conn = self.db()
        with conn.transaction(), conn.cursor() as cur:
            for name in names:
                self.terminate_sessions(cur, name)

    def terminate_sessions(self, cur, name):
        """End the role's open sessions (NOLOGIN stops new logins only), where
        the connecting role may (a superuser, or a member of pg_signal_backend)."""
        self.exec(
            cur,
            "SELECT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user)"
            " OR pg_has_role(current_user, 'pg_signal_backend', 'USAGE')",
        )
        if not cur.fetchone()[0]:
            LOG.warning(
                f"{name!r}: its open sessions, if any, stay open (the connecting role may not "
                f"end them: grant it pg_signal_backend)"
            )
            return
        self.exec(
            cur,
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE usename = %s AND pid <> pg_backend_pid()",
            (name,),
        )
        ended = cur.fetchone()[0]
        if ended:
            LOG.info(f"{name!r}: ended {ended} open session(s)")

    # delete --------------------------------------------------------------

    def op_delete(self, req):
        kind = req.get("kind")
        if kind not in ("user", "group"):
            raise Fail("invalid", f"kind: expected user or group, got {json.dumps(kind)[:40]}")
        key = role_name(req.get("key"), "key")
        conn = self.db()
        with conn.transaction(), conn.cursor() as cur:
            role = self.role_by_name(cur, key)
            if role is None:
                LOG.info(f"delete {kind} {key!r}: already absent")
                return {}
            self.guard(role, "key")
            marked = self.marked_kind(role["comment"])
            if marked != kind:
                raise Fail(
                    "conflict",
                    f"delete {kind} {key!r}: the role is not a roster-managed {kind} "
                    f"(its comment is not {MARK[kind]!r}); roster drops only roles it manages",
                )
            if kind == "user":
                (_, held), = self.read_attrs(cur, "user", [role])
                # Revoke the rights roster granted (default privileges would
                # otherwise keep the role from being dropped).
                self.apply_rights(cur, key, {}, held["set_rights"])
            self.exec(cur, sql.SQL("DROP ROLE {}").format(sql.Identifier(key)))
            if kind == "user":
                self.after_commit.append(key)
        self.end_sessions()
        LOG.info(f"delete {kind} {key!r}: dropped")
        return {}

    # secrets -------------------------------------------------------------

    def secret_target(self, cur, req):
        key = role_name(req.get("key"), "key")
        kind = req.get("kind")
        if kind != "password":
            raise Fail("unsupported", f"kind: this connector holds passwords only, not {json.dumps(kind)[:40]}")
        role = self.role_by_name(cur, key)
        return key, role

    def op_set_secret(self, req):
        value = req.get("value")
        if isinstance(value, str) and value:
            LOG.secrets.add(value)
        conn = self.db()
        with conn.transaction(), conn.cursor() as cur:
            key, role = self.secret_target(cur, req)
            if not isinstance(value, str) or value == "":
                raise Fail("invalid", "value: expected a non-empty string")
            if "\x00" in value:
                raise Fail("invalid", "value: a PostgreSQL password cannot hold a NUL character")
            if role is None:
                raise Fail("not_found", f"set_secret: no role {key!r}")
            self.guard(role, "key")
            if self.marked_kind(role["comment"]) != "user":
                raise Fail("conflict", f"set_secret: role {key!r} is not a roster-managed user")
            verifier = scram_verifier(value)
            LOG.secrets.add(verifier)
            self.exec(
                cur,
                sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(key), sql.Literal(verifier)),
                show=f"ALTER ROLE {sql.Identifier(key).as_string(cur)} PASSWORD [SCRAM-SHA-256 verifier]",
            )
        LOG.info(f"set_secret {key!r}: password set (SCRAM-SHA-256 verifier)")
        return {}

    def op_revoke_secret(self, req):
        conn = self.db()
        with conn.transaction(), conn.cursor() as cur:
            key, role = self.secret_target(cur, req)
            if role is None:
                LOG.info(f"revoke_secret {key!r}: no such role, nothing to revoke")
                return {}
            self.guard(role, "key")
            if self.marked_kind(role["comment"]) != "user":
                raise Fail("conflict", f"revoke_secret: role {key!r} is not a roster-managed user")
            self.exec(cur, sql.SQL("ALTER ROLE {} PASSWORD NULL").format(sql.Identifier(key)))
        LOG.info(f"revoke_secret {key!r}: password removed")
        return {}

    def op_generate_secret(self, req):
        raise Fail(
            "unsupported",
            "generate_secret: PostgreSQL does not generate passwords; this connector's passwords are roster_generated",
        )

    # dispatch ------------------------------------------------------------

    OPS = {
        "hello": op_hello,
        "list": op_list,
        "ensure": op_ensure,
        "delete": op_delete,
        "set_secret": op_set_secret,
        "revoke_secret": op_revoke_secret,
        "generate_secret": op_generate_secret,
    }

    def handle(self, line):
        try:
            req = json.loads(line)
        except ValueError:
            return {"id": None, "ok": False, "error": {"class": "invalid", "message": "request is not JSON"}}
        if not isinstance(req, dict):
            return {"id": None, "ok": False, "error": {"class": "invalid", "message": "request is not a JSON object"}}
        rid = req.get("id")
        op = req.get("op")
        safe = {k: ("[redacted]" if k == "value" else v) for k, v in req.items()}
        LOG.debug(f"request: {json.dumps(safe, sort_keys=True)}")
        fn = self.OPS.get(op)
        self.after_commit = []
        try:
            if fn is None:
                raise Fail("unsupported", f"op {json.dumps(op)[:40]} is not supported by this connector")
            if not isinstance(rid, int) or isinstance(rid, bool):
                raise Fail("invalid", "id: expected an integer")
            body = fn(self, req)
            reply = {"id": rid, "ok": True}
            reply.update(body)
            return reply
        except Fail as f:
            err = {"class": f.cls, "message": LOG.scrub(f.message)}
            if f.retry_after is not None:
                err["retry_after"] = f.retry_after
            LOG.write("warning" if f.cls != "fatal" else "error", f"{op}: {f.cls}: {f.message}")
            return {"id": rid, "ok": False, "error": err}
        except _PG_ERROR as e:
            cls = classify(e)
            message = LOG.scrub(str(e).strip())
            state = getattr(e, "sqlstate", None)
            if state:
                message = f"{message} (SQLSTATE {state})"
            LOG.write("warning", f"{op}: {cls}: {message}")
            err = {"class": cls, "message": f"{op}: {message}"}
            if cls == "retryable":
                err["retry_after"] = 1
            return {"id": rid, "ok": False, "error": err}
        except Exception as e:  # a bug: reported, never a traceback with secrets
            LOG.write("error", f"{op}: internal error: {type(e).__name__}: {e}")
            return {
                "id": rid,
                "ok": False,
                "error": {"class": "fatal", "message": LOG.scrub(f"{op}: internal error: {type(e).__name__}: {e}")},
            }

    def close(self):
        if self.conn is not None:
            try:
                self.conn.close()
            except Exception:
                pass


def main():
    connector = Connector()
    stdin = sys.stdin.buffer
    try:
        while True:
            raw = stdin.readline()
            if not raw:
                break
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                reply = {"id": None, "ok": False, "error": {"class": "invalid", "message": "request is not UTF-8"}}
            else:
                if not line.strip():
                    continue
                reply = connector.handle(line)
            _PROTO_OUT.write(json.dumps(reply, separators=(",", ":"), default=str) + "\n")
            _PROTO_OUT.flush()
    finally:
        connector.close()


if __name__ == "__main__":
    main()
