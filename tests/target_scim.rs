//! roster's SCIM *target* (`src/target/scim`) through the `Target` trait,
//! against a real `scim2-server` on 127.0.0.1 (harness in
//! `tests/common/scim.rs`). One shared suite runs on a server with the core
//! schemas only (the main case: what real providers offer) and on one with
//! roster's extension registered. Passwords are checked in the server's own
//! dump (`--dump-resources`), the only place a write-only password shows.
//! Request counts are exact (`Target::requests`, and the fault proxy's log).

#[allow(dead_code)]
#[path = "common/scim.rs"]
mod harness;

#[allow(dead_code)]
#[path = "common/fault_proxy.rs"]
mod fault_proxy;

use std::collections::{BTreeMap, BTreeSet};

use harness::{ScimServer, ServerConfig, TOKEN_ENV, bulk_users, direct};
use roster::secret::{Secret, SecretKind};
use roster::target::compare;
use roster::target::scim::ScimTarget;
use roster::target::{
    Attrs, EnsureRequest, Ensured, ErrorClass, Membership, ObjKind, RemoteObject, SecretMode,
    Target,
};
use serde_json::{Value, json};

fn attrs(v: Value) -> Attrs {
    serde_json::from_value(v).expect("an object")
}

fn core_only() -> ServerConfig {
    ServerConfig::default()
}

fn with_extension() -> ServerConfig {
    ServerConfig {
        extension: true,
        ..ServerConfig::default()
    }
}

/// `ensure` with the usual defaults.
struct Req<'a> {
    kind: ObjKind,
    key: &'a str,
    remote_ref: Option<&'a str>,
    attrs: Attrs,
    current: Option<Attrs>,
    renamed_from: Option<&'a str>,
    user_refs: BTreeMap<String, String>,
    password: Option<Secret>,
}

impl<'a> Req<'a> {
    fn user(key: &'a str, attrs: Attrs) -> Self {
        Req {
            kind: ObjKind::User,
            key,
            remote_ref: None,
            attrs,
            current: None,
            renamed_from: None,
            user_refs: BTreeMap::new(),
            password: None,
        }
    }
    fn group(key: &'a str, attrs: Attrs, user_refs: BTreeMap<String, String>) -> Self {
        Req {
            kind: ObjKind::Group,
            user_refs,
            ..Req::user(key, attrs)
        }
    }
    fn at(mut self, remote_ref: &'a str, current: &Attrs) -> Self {
        self.remote_ref = Some(remote_ref);
        self.current = Some(current.clone());
        self
    }
    fn run(&self, t: &dyn Target) -> Result<Ensured, roster::target::TargetError> {
        t.ensure(&EnsureRequest {
            kind: self.kind,
            key: self.key,
            remote_ref: self.remote_ref,
            attrs: &self.attrs,
            current: self.current.as_ref(),
            renamed_from: self.renamed_from,
            user_refs: &self.user_refs,
            password: self.password.as_ref(),
            idem: "test/step",
        })
    }
}

/// Whether every attribute of `want` that the target holds came back equal.
fn assert_kept(t: &ScimTarget, kind: ObjKind, want: &Attrs, have: &Attrs) {
    let held = match kind {
        ObjKind::User => &t.options().expect("opened").user_attrs,
        ObjKind::Group => &t.options().expect("opened").group_attrs,
    };
    let ignore: BTreeSet<String> = want
        .keys()
        .filter(|k| !held.contains(*k))
        .cloned()
        .collect();
    let diff = compare::differing(want, have, &ignore);
    assert!(
        diff.is_empty(),
        "{diff:?} differ: wanted {want:?}, have {have:?}"
    );
}

fn find<'a>(list: &'a [RemoteObject], key: &str) -> Option<&'a RemoteObject> {
    list.iter().find(|o| o.key == key)
}

fn dump_user<'a>(dump: &'a Value, name: &str) -> &'a Value {
    dump.as_array()
        .and_then(|a| a.iter().find(|r| r["userName"] == name))
        .unwrap_or_else(|| panic!("user {name} not in the server's dump"))
}

fn user_attrs_full() -> Attrs {
    attrs(json!({
        "display_name": "Survey Sync", "first_name": "Survey", "last_name": "Sync",
        "email": "survey-sync@example.com", "active": true,
        "roles": ["reader", "writer"], "set_rights": {"hr": "read", "payroll": "full"},
        "class": "service", "authentication": "local", "credentials": ["password"],
        "permissions": ["hr.read"], "title": "bot"
    }))
}

/// The shared suite: the whole lifecycle through the trait.
fn suite(extension: bool) {
    let mut server = ScimServer::start(if extension {
        with_extension()
    } else {
        core_only()
    });
    let t = server.target_with(|c| {
        c.max_patch_operations = Some(2);
        c.roles = roster::model::ScimProjection::Attribute;
        c.rights = roster::model::ScimProjection::Attribute;
    });

    // open: two discovery requests, capabilities from what is advertised.
    let caps = t.open().expect("open");
    assert_eq!(t.requests(), 2, "ServiceProviderConfig + Schemas");
    assert_eq!(caps.membership, Membership::OnGroup);
    assert_eq!(caps.kinds, BTreeSet::from([ObjKind::User, ObjKind::Group]));
    assert_eq!(
        caps.secrets.get(&SecretKind::Password),
        Some(&SecretMode::RosterGenerated)
    );
    assert_eq!(caps.concurrency, 8);
    let ua = caps.user_attrs.clone().expect("user attrs");
    for a in [
        "display_name",
        "first_name",
        "last_name",
        "email",
        "active",
        "roles",
        "set_rights",
    ] {
        assert!(ua.contains(a), "{a} held: {ua:?}");
    }
    let ga = caps.group_attrs.clone().expect("group attrs");
    assert!(ga.contains("members"));
    for a in ["class", "authentication", "credentials", "permissions"] {
        assert_eq!(ua.contains(a), extension, "{a}: {ua:?}");
    }
    assert_eq!(ga.contains("description"), extension, "{ga:?}");
    let limits = caps.limitations.join("\n");
    if extension {
        assert!(!limits.contains("class"), "{limits}");
    } else {
        assert!(limits.contains("no roster extension"), "{limits}");
        assert!(limits.contains("class, authentication"), "{limits}");
        assert!(limits.contains("group description"), "{limits}");
    }
    assert_eq!(t.open().expect("open again"), caps, "open is learnt once");
    assert_eq!(t.requests(), 2);

    // Create with a password, read back.
    let want = user_attrs_full();
    let mut req = Req::user("survey-sync", want.clone());
    req.password = Some(Secret::new("create-Pw-9a".into()));
    let before = t.requests();
    let made = req.run(&t).expect("create");
    assert!(made.changed && made.password_set);
    assert_eq!(
        t.requests() - before,
        1,
        "one POST, read back from its answer"
    );
    assert_kept(&t, ObjKind::User, &want, &made.attrs);
    let id = made.remote_ref.clone();
    let (_, raw) = direct(
        "GET",
        &format!("{}/Users/{id}", server.http_base(None)),
        None,
    );
    assert_eq!(raw["externalId"], "roster:user:survey-sync");
    assert_eq!(raw["emails"][0]["primary"], true);
    assert_eq!(
        raw["entitlements"].as_array().map(Vec::len),
        Some(2),
        "{raw}"
    );
    if !extension {
        assert!(raw.get(roster::target::scim::USER_EXT).is_none(), "{raw}");
    }

    // A second user and an unmanaged one (made on the server by hand).
    let other = Req::user(
        "ops-bot",
        attrs(json!({"display_name": "Ops", "active": true})),
    )
    .run(&t)
    .expect("create ops-bot");
    let (s, hand) = direct(
        "POST",
        &format!("{}/Users", server.http_base(None)),
        Some(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "hand-made", "displayName": "By Hand"}),
        ),
    );
    assert_eq!(s, 201, "{hand}");

    // list: a round trip of what was written, unmanaged users included.
    let users = t.list(ObjKind::User).expect("list users");
    let listed = find(&users, "survey-sync").expect("listed");
    assert_eq!(listed.remote_ref, id);
    assert_kept(&t, ObjKind::User, &want, &listed.attrs);
    assert_eq!(listed.attrs, made.attrs, "list maps like the read-back");
    assert!(find(&users, "hand-made").is_some());

    // Update: only what differs is sent, in one PATCH.
    let mut want2 = want.clone();
    want2.insert("display_name".into(), json!("Survey Sync 2"));
    want2.insert("email".into(), json!("sync2@example.com"));
    want2.insert("roles".into(), json!(["reader"]));
    let before = t.requests();
    let upd = Req::user("survey-sync", want2.clone())
        .at(&id, &listed.attrs)
        .run(&t)
        .expect("update");
    assert!(upd.changed && !upd.password_set);
    // Three attributes differ: ⌈3/2⌉ PATCHes, and one GET to read back
    // (scim2-server answers a PATCH with 204, as RFC 7644 allows).
    assert_eq!(t.requests() - before, 3, "two PATCHes and one GET");
    assert_eq!(upd.remote_ref, id);
    assert_kept(&t, ObjKind::User, &want2, &upd.attrs);

    // Nothing differs: nothing is sent.
    let before = t.requests();
    let same = Req::user("survey-sync", want2.clone())
        .at(&id, &upd.attrs)
        .run(&t)
        .expect("no-op");
    assert!(!same.changed);
    assert_eq!(t.requests(), before, "a converged object costs no request");

    // Deactivate, then reactivate with a new password.
    let mut off = want2.clone();
    off.insert("active".into(), json!(false));
    let deact = Req::user("survey-sync", off)
        .at(&id, &same.attrs)
        .run(&t)
        .expect("deactivate");
    assert_eq!(deact.attrs.get("active"), Some(&json!(false)));
    let mut on = Req::user("survey-sync", want2.clone()).at(&id, &deact.attrs);
    on.password = Some(Secret::new("react-Pw-7b".into()));
    let react = on.run(&t).expect("reactivate");
    assert_eq!(react.attrs.get("active"), Some(&json!(true)));
    assert!(react.password_set);

    // Rename: userName changes, the id stays.
    let mut ren = Req::user("survey-sync-v2", want2.clone()).at(&id, &react.attrs);
    ren.renamed_from = Some("survey-sync");
    let renamed = ren.run(&t).expect("rename");
    assert_eq!(renamed.remote_ref, id, "the id stays");
    let (_, raw) = direct(
        "GET",
        &format!("{}/Users/{id}", server.http_base(None)),
        None,
    );
    assert_eq!(raw["userName"], "survey-sync-v2");
    assert_eq!(raw["externalId"], "roster:user:survey-sync-v2");

    // Groups: create with members, then add 4 and remove 1 in chunks of 2.
    let mut refs: BTreeMap<String, String> = BTreeMap::new();
    refs.insert("survey-sync-v2".into(), id.clone());
    refs.insert("ops-bot".into(), other.remote_ref.clone());
    let extra: Vec<(String, String)> = (0..4)
        .map(|i| {
            let key = format!("member-{i}");
            let e = Req::user(&key, attrs(json!({"active": true})))
                .run(&t)
                .expect("member");
            (key, e.remote_ref)
        })
        .collect();
    refs.extend(extra.iter().cloned());
    let mut gwant =
        attrs(json!({"members": ["survey-sync-v2", "ops-bot"], "description": "Payroll readers"}));
    let g = Req::group("payroll", gwant.clone(), refs.clone())
        .run(&t)
        .expect("create group");
    assert_kept(&t, ObjKind::Group, &gwant, &g.attrs);
    let gid = g.remote_ref.clone();
    // A member roster cannot name (a nested group, added on the server by
    // hand) is left out of `members` and never removed.
    let (s, nested) = direct(
        "POST",
        &format!("{}/Groups", server.http_base(None)),
        Some(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "nested"}),
        ),
    );
    assert_eq!(s, 201, "{nested}");
    let (s, _) = direct(
        "PATCH",
        &format!("{}/Groups/{gid}", server.http_base(None)),
        Some(
            json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "add", "path": "members", "value": [{"value": nested["id"]}]}]}),
        ),
    );
    assert!(matches!(s, 200 | 204), "{s}");
    let fresh = server.target();
    fresh.open().expect("open");
    let groups = fresh
        .list(ObjKind::Group)
        .expect("list groups before users");
    let listed_g = find(&groups, "payroll").expect("group listed");
    assert!(
        !listed_g.attrs.contains_key("members"),
        "members whose ids are not known are left out: {:?}",
        listed_g.attrs
    );
    let _ = t.list(ObjKind::User).expect("users first");
    let groups = t.list(ObjKind::Group).expect("list groups");
    let current = find(&groups, "payroll").expect("group").attrs.clone();
    assert_eq!(
        current.get("members"),
        Some(&json!(["ops-bot", "survey-sync-v2"]))
    );
    let mut members: Vec<Value> = vec![json!("ops-bot")];
    members.extend(extra.iter().map(|(k, _)| json!(k)));
    gwant.insert("members".into(), Value::Array(members));
    let before = t.requests();
    let g2 = Req::group("payroll", gwant.clone(), refs.clone())
        .at(&gid, &current)
        .run(&t)
        .expect("membership");
    // add member-0..3 (4 units) + remove survey-sync-v2 (1 unit) = 5 units
    // in chunks of 2 = 3 PATCHes, then one GET to read back.
    assert_eq!(
        t.requests() - before,
        4,
        "5 membership changes, 2 per PATCH"
    );
    assert_kept(&t, ObjKind::Group, &gwant, &g2.attrs);
    let (_, raw_g) = direct(
        "GET",
        &format!("{}/Groups/{gid}", server.http_base(None)),
        None,
    );
    let ids: BTreeSet<String> = raw_g["members"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|m| m["value"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    assert!(
        ids.contains(nested["id"].as_str().unwrap_or("?")),
        "the nested group stays: {raw_g}"
    );
    assert!(!ids.contains(&id), "survey-sync-v2 was removed: {raw_g}");
    assert_eq!(ids.len(), 6, "{raw_g}");

    // Without a known id for a wanted member, nothing is sent.
    let mut bad = gwant.clone();
    bad.insert("members".into(), json!(["nobody-here"]));
    let before = t.requests();
    let err = Req::group("payroll", bad, BTreeMap::new())
        .at(&gid, &g2.attrs)
        .run(&t)
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Invalid, "{err}");
    assert!(err.message.contains("nobody-here"), "{err}");
    assert_eq!(t.requests(), before);

    // set_secret and revoke_secret: the dump shows the passwords.
    t.set_secret(
        "ops-bot",
        &other.remote_ref,
        SecretKind::Password,
        &Secret::new("rotated-Pw-3c".into()),
        "i",
    )
    .expect("set_secret");
    t.revoke_secret("member-0", &extra[0].1, SecretKind::Password, "i")
        .expect("revoke");
    let tok = t
        .set_secret(
            "ops-bot",
            &other.remote_ref,
            SecretKind::Token,
            &Secret::new("x".into()),
            "i",
        )
        .unwrap_err();
    assert_eq!(tok.class, ErrorClass::Unsupported);
    let gen_err = t
        .generate_secret("ops-bot", &other.remote_ref, SecretKind::Password, "i")
        .unwrap_err();
    assert_eq!(gen_err.class, ErrorClass::Unsupported);
    // member-1 gets a known password, then a revocation replaces it.
    t.set_secret(
        "member-1",
        &extra[1].1,
        SecretKind::Password,
        &Secret::new("issued-Pw-4d".into()),
        "i",
    )
    .expect("set");
    t.revoke_secret("member-1", &extra[1].1, SecretKind::Password, "i")
        .expect("revoke");

    // delete: twice (absent = success).
    t.delete(ObjKind::User, "member-3", &extra[3].1, "i")
        .expect("delete");
    t.delete(ObjKind::User, "member-3", &extra[3].1, "i")
        .expect("delete again");
    let users = t.list(ObjKind::User).expect("list");
    assert!(find(&users, "member-3").is_none());
    assert!(
        find(&users, "hand-made").is_some(),
        "an unmanaged user is never touched"
    );

    let dump = server.stop_and_dump();
    assert_eq!(
        dump_user(&dump, "survey-sync-v2")["password"],
        "react-Pw-7b"
    );
    assert_eq!(dump_user(&dump, "ops-bot")["password"], "rotated-Pw-3c");
    let revoked = dump_user(&dump, "member-1")["password"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        revoked.len() >= 16,
        "a random password replaced the issued one"
    );
    assert_ne!(revoked, "issued-Pw-4d");
    assert!(
        dump_user(&dump, "member-0")["password"]
            .as_str()
            .is_some_and(|p| p.len() >= 16)
    );
    assert!(dump_user(&dump, "hand-made")["password"].is_null());
}

#[test]
fn suite_on_a_core_schema_only_server() {
    suite(false);
}

#[test]
fn suite_on_a_server_with_rosters_extension() {
    suite(true);
}

#[test]
fn passwords_false_holds_no_secret_and_sends_none() {
    let mut server = ScimServer::start(core_only());
    let t = server.target_with(|c| c.passwords = false);
    let caps = t.open().expect("open");
    assert!(caps.secrets.is_empty(), "{:?}", caps.secrets);
    let mut req = Req::user("nopw", attrs(json!({"active": true})));
    req.password = Some(Secret::new("never-sent-Pw".into()));
    let made = req.run(&t).expect("create");
    assert!(!made.password_set);
    let err = t
        .set_secret(
            "nopw",
            &made.remote_ref,
            SecretKind::Password,
            &Secret::new("x".into()),
            "i",
        )
        .unwrap_err();
    assert_eq!(err.class, ErrorClass::Unsupported);
    let dump = server.stop_and_dump();
    assert!(dump_user(&dump, "nopw")["password"].is_null());
}

#[test]
fn listing_pages_through_more_objects_than_one_page() {
    let server = ScimServer::start(core_only());
    let names: Vec<String> = (0..25).map(|i| format!("p-{i:03}")).collect();
    bulk_users(&server.http_base(None), &names);
    let t = server.target_with(|c| c.page_size = Some(10));
    t.open().expect("open");
    assert_eq!(t.options().expect("opened").page_size, 10);
    let users = t.list(ObjKind::User).expect("list");
    let keys: BTreeSet<&str> = users.iter().map(|u| u.key.as_str()).collect();
    assert_eq!(keys.len(), 25);
    assert_eq!(t.requests(), 2 + 3, "discovery + ⌈25/10⌉ pages");
}

/// The plan-time cost of a target: over 10,000 users and 3 groups on a
/// core-only server, `list` sends exactly ⌈users/page⌉ + ⌈groups/page⌉
/// requests after the 2 of discovery, at the default page size (the server's
/// `filter.maxResults`, 1,000) and at an explicit 100.
#[test]
fn exact_request_counts_for_listing_ten_thousand_users() {
    let server = ScimServer::start(core_only());
    let names: Vec<String> = (0..10_000).map(|i| format!("u-{i:05}")).collect();
    let started = std::time::Instant::now();
    let ids = bulk_users(&server.http_base(None), &names);
    eprintln!(
        "10,000 users made in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    for g in 0..3 {
        let members: Vec<Value> = ids
            .iter()
            .skip(g)
            .step_by(7)
            .take(50)
            .map(|id| json!({"value": id}))
            .collect();
        let (s, body) = direct(
            "POST",
            &format!("{}/Groups", server.http_base(None)),
            Some(
                json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": format!("g{g}"), "members": members}),
            ),
        );
        assert_eq!(s, 201, "{body}");
    }
    let (_, spc) = direct(
        "GET",
        &format!("{}/ServiceProviderConfig", server.http_base(None)),
        None,
    );
    let max_results = spc["filter"]["maxResults"].as_u64().expect("maxResults") as usize;
    for (page, t) in [
        (max_results, server.target()),
        (100, server.target_with(|c| c.page_size = Some(100))),
    ] {
        t.open().expect("open");
        assert_eq!(t.options().expect("opened").page_size, page);
        let started = std::time::Instant::now();
        let users = t.list(ObjKind::User).expect("users");
        let groups = t.list(ObjKind::Group).expect("groups");
        assert_eq!(users.len(), 10_000);
        assert_eq!(groups.len(), 3);
        let want = 2 + 10_000usize.div_ceil(page) + 3usize.div_ceil(page);
        assert_eq!(t.requests() as usize, want, "page {page}");
        // Members come back as user keys.
        let g0 = find(&groups, "g0").expect("g0");
        assert_eq!(g0.attrs["members"].as_array().map(Vec::len), Some(50));
        eprintln!(
            "page {page}: {} requests for 10,000 users and 3 groups, {:.1} s",
            t.requests(),
            started.elapsed().as_secs_f64()
        );
    }
}

/// A server that offers no PATCH gets PUTs of the whole resource (with
/// If-Match), and a PATCH answered 501 falls back to a PUT as well.
#[test]
fn put_replaces_patch_where_the_server_has_none_or_refuses_it() {
    let spc = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"],
        "patch": {"supported": false}, "bulk": {"supported": false, "maxOperations": 0, "maxPayloadSize": 0},
        "filter": {"supported": true, "maxResults": 200}, "changePassword": {"supported": true},
        "sort": {"supported": false}, "etag": {"supported": true}
    });
    for no_patch in [true, false] {
        let mut server = ScimServer::start(ServerConfig {
            provider_config: no_patch.then(|| spc.to_string()),
            ..core_only()
        });
        let proxy = fault_proxy::start_proxy(server.port, fault_proxy::seed());
        if !no_patch {
            proxy
                .controls
                .refuse_patch
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
        let t = ScimTarget::new("scim", &harness::target_config(&proxy.base())).expect("target");
        t.open().expect("open");
        assert_eq!(t.options().expect("opened").patch, !no_patch);
        let a = Req::user(
            "alice",
            attrs(json!({"display_name": "Alice", "active": true})),
        )
        .run(&t)
        .expect("a");
        let b = Req::user("bob", attrs(json!({"display_name": "Bob", "active": true})))
            .run(&t)
            .expect("b");
        let refs: BTreeMap<String, String> = [
            ("alice".to_string(), a.remote_ref.clone()),
            ("bob".to_string(), b.remote_ref.clone()),
        ]
        .into();
        let g = Req::group("team", attrs(json!({"members": ["alice"]})), refs.clone())
            .run(&t)
            .expect("group");
        proxy.clear_log();
        let mut want =
            attrs(json!({"display_name": "Alice B.", "active": true, "email": "a@x.io"}));
        let mut upd = Req::user("alice", want.clone()).at(&a.remote_ref, &a.attrs);
        upd.password = Some(Secret::new("put-Pw-5e".into()));
        let done = upd.run(&t).expect("update by PUT");
        assert!(done.password_set);
        assert_kept(&t, ObjKind::User, &want, &done.attrs);
        want = attrs(json!({"members": ["bob"]}));
        let g2 = Req::group("team", want.clone(), refs)
            .at(&g.remote_ref, &g.attrs)
            .run(&t)
            .expect("members by PUT");
        assert_kept(&t, ObjKind::Group, &want, &g2.attrs);
        let log = proxy.log();
        assert_eq!(proxy.count("PUT "), 2, "{log:?}");
        assert_eq!(
            proxy.count("PATCH "),
            if no_patch { 0 } else { 2 },
            "{log:?}"
        );
        assert_eq!(
            proxy.count("GET "),
            2,
            "the resource is read before each PUT: {log:?}"
        );
        drop(proxy);
        let dump = server.stop_and_dump();
        assert_eq!(dump_user(&dump, "alice")["password"], "put-Pw-5e");
    }
}

#[test]
fn bad_configs_are_refused_before_any_request() {
    harness::init();
    let base = |url: &str| harness::target_config(url);
    let err = |c: roster::model::ScimTargetConfig| ScimTarget::new("acme", &c).unwrap_err().message;
    let mut c = base("http://127.0.0.1:1/v2");
    c.token_env = Some("ROSTER_TEST_UNSET_TOKEN_VAR".into());
    let e = err(c);
    assert!(
        e.contains("ROSTER_TEST_UNSET_TOKEN_VAR") && e.contains("not set"),
        "{e}"
    );
    let e = err(base("http://scim.example/v2"));
    assert!(e.contains("allow_insecure_http"), "{e}");
    let mut c = base("http://scim.example/v2");
    c.allow_insecure_http = true;
    assert!(ScimTarget::new("acme", &c).is_ok());
    for ok in [
        "http://localhost:9/v2",
        "http://[::1]:9/v2",
        "https://scim.example/v2",
    ] {
        assert!(ScimTarget::new("acme", &base(ok)).is_ok(), "{ok}");
    }
    let e = err(base("https://admin:hunter2@scim.example/v2"));
    assert!(e.contains("credentials") && !e.contains("hunter2"), "{e}");
    let mut c = base("https://scim.example/v2");
    c.ca_file = Some("/nonexistent/ca.pem".into());
    let e = err(c);
    assert!(e.contains("/nonexistent/ca.pem"), "{e}");
    let mut c = base("https://scim.example/v2");
    c.timeout = Some("soon".into());
    assert!(err(c).contains("timeout"));
    assert!(err(base("ftp://scim.example/v2")).contains("ftp"));
    // The token never appears in Debug.
    let t = ScimTarget::new("acme", &base("https://scim.example/v2")).expect("target");
    assert!(!format!("{t:?}").contains(harness::TOKEN));
    assert!(std::env::var(TOKEN_ENV).is_ok());
}

#[test]
fn a_wrong_token_is_an_auth_error_naming_the_variable_not_the_token() {
    let server = ScimServer::start(core_only());
    // SAFETY-free: a second variable with a wrong value would need set_var;
    // instead the token variable names a variable holding a wrong value
    // that every process has: HOME.
    let t = server.target_with(|c| c.token_env = Some("HOME".into()));
    let e = t.open().unwrap_err();
    assert_eq!(e.class, ErrorClass::Auth, "{e}");
    assert!(
        e.message.contains("401") && e.message.contains("HOME"),
        "{e}"
    );
    let home = std::env::var("HOME").unwrap_or_default();
    assert!(home.is_empty() || !e.message.contains(&home), "{e}");
}

#[test]
fn a_create_that_finds_rosters_own_object_takes_it_and_one_of_another_system_is_a_conflict() {
    let server = ScimServer::start(core_only());
    let base = server.http_base(None);
    // What a POST that landed after its apply was killed leaves: roster's
    // externalId, an old password.
    for (name, external) in [
        ("late-create", Some("roster:user:late-create")),
        ("someone-else", None),
    ] {
        let mut body = json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": name, "password": "old-Pw-1"
        });
        if let Some(e) = external {
            body["externalId"] = json!(e);
        }
        let (s, b) = direct("POST", &format!("{base}/Users"), Some(body));
        assert_eq!(s, 201, "{b}");
    }
    let t = server.target();
    t.open().expect("open");
    let mut req = Req::user(
        "late-create",
        attrs(json!({"display_name": "Late", "active": true})),
    );
    req.password = Some(Secret::new("new-Pw-2".into()));
    let made = req
        .run(&t)
        .expect("roster's own object is taken, not refused");
    assert!(
        !made.password_set,
        "the password it holds is not this request's: it must be set again"
    );
    let mut other = Req::user("someone-else", attrs(json!({"active": true})));
    other.password = Some(Secret::new("new-Pw-3".into()));
    let err = other
        .run(&t)
        .expect_err("another system's user is not taken");
    assert_eq!(err.class, ErrorClass::Conflict, "{err}");
    assert!(err.message.contains("409"), "{err}");
}
