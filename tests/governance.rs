//! Governance end to end, through the real binary: policies that hold
//! (`tests/policy-pass/*/config` must validate, saying `expected.txt`; the
//! violating ones are golden cases under `tests/invalid/policy-*`; `BLESS=1`
//! rewrites both), policy errors in every output
//! format and at plan time, and `roster explain`.

#[path = "common/cli.rs"]
mod cli;
use cli::{code, copy_example, roster, stderr, stdout};

use std::fs;
use std::path::{Path, PathBuf};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn pass_cases() -> Vec<PathBuf> {
    let dir = root().join("tests/policy-pass");
    let mut out: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("entry").path())
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

#[test]
fn configs_that_keep_their_policies_validate() {
    let cases = pass_cases();
    assert!(cases.len() >= 4, "{cases:?}");
    for case in cases {
        let out = roster(&case, &["validate", "config"]);
        assert_eq!(
            code(&out),
            0,
            "{}: {}{}",
            case.display(),
            stdout(&out),
            stderr(&out)
        );
        assert!(stdout(&out).starts_with("valid: "), "{}", stdout(&out));
        // Golden: what validate says (BLESS=1 rewrites it).
        let expected = case.join("expected.txt");
        if std::env::var_os("BLESS").is_some_and(|v| v == "1") {
            fs::write(&expected, stdout(&out)).expect("write expected.txt");
        } else {
            let want = fs::read_to_string(&expected)
                .unwrap_or_else(|e| panic!("{}: {e} (BLESS=1 creates it)", expected.display()));
            assert_eq!(stdout(&out), want, "{}", case.display());
        }
    }
}

fn violating_case() -> PathBuf {
    root().join("tests/invalid/policy-several-violations-at-once")
}

#[test]
fn policy_violations_are_github_annotations() {
    let out = roster(
        &violating_case(),
        &["validate", "config", "--format", "github"],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].starts_with(
            "::error file=config/users.yaml,line=2,col=3,title=roster policy.payroll-sod::user payroll-bureau holds payroll.write"
        ),
        "{text}"
    );
    assert!(
        text.contains("title=roster policy.contractors-expire::user contractor has no expires_at"),
        "{text}"
    );
    assert!(
        text.contains("title=roster policy.no-payroll-write::"),
        "{text}"
    );
}

#[test]
fn policy_violations_are_gitlab_code_quality_issues() {
    let out = roster(
        &violating_case(),
        &["validate", "config", "--format", "gitlab"],
    );
    assert_eq!(code(&out), 1, "{}", stderr(&out));
    let issues: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let names: Vec<&str> = issues
        .as_array()
        .expect("an array")
        .iter()
        .map(|i| i["check_name"].as_str().expect("check_name"))
        .collect();
    assert_eq!(
        names,
        [
            "policy.payroll-sod",
            "policy.contractors-expire",
            "policy.no-payroll-write"
        ]
    );
    assert_eq!(issues[0]["location"]["path"], "config/users.yaml");
    assert_eq!(issues[0]["location"]["lines"]["begin"], 2);
}

#[test]
fn plan_refuses_a_config_that_breaks_a_policy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let case = violating_case();
    cli::copy_dir(&case.join("config"), &dir.path().join("config"));
    let out = roster(
        dir.path(),
        &["plan", "config", "--store", "file:state.json"],
    );
    assert_eq!(code(&out), 1, "{}", stdout(&out));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains("error[policy.payroll-sod]"), "{err}");
    assert!(err.contains("3 errors in 1 file"), "{err}");
    assert!(!dir.path().join("state.json").exists());
}

#[test]
fn bundled_examples_carry_policies_and_keep_them() {
    for (name, policy) in [
        ("avanti", "payroll-sod"),
        ("iris-hr", "survey-tools-read-only"),
        ("avaamo", "settings-limited"),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        copy_example(name, dir.path());
        let text = fs::read_to_string(dir.path().join("policies.yaml"))
            .unwrap_or_else(|e| panic!("{name}: policies.yaml: {e}"));
        assert!(text.contains(&format!("name: {policy}")), "{name}: {text}");
        let out = roster(dir.path(), &["validate", "."]);
        assert_eq!(code(&out), 0, "{name}: {}", stderr(&out));
    }
}

#[test]
fn explain_shows_the_chain_of_every_permission_and_set_right() {
    let dir = tempfile::tempdir().expect("tempdir");
    fs::write(
        dir.path().join("c.yaml"),
        "roles:\n  payroll-admin:\n    permissions: [payroll.read, payroll.write]\n  bank-admin:\n    permissions: [bank.write]\n\
groups:\n  payroll-team:\n    roles: [payroll-admin]\n    companies: [ACME]\n\
templates:\n  bureau:\n    groups: [payroll-team]\n    set_rights: { salary: write }\n    expires_at: 2027-01-31\n\
users:\n  payroll-bureau:\n    display_name: Payroll bureau\n    extends: bureau\n    set_rights: { payslips: full }\n\
role_assignments:\n  - role: bank-admin\n    user: payroll-bureau\n    positions: [TREASURER]\n\
policies:\n  - name: payroll-sod\n    description: pay or bank, not both\n    exclusive:\n      - permission: payroll.write\n      - permission: bank.write\n",
    )
    .expect("write");
    // The config breaks its policy: validate fails, explain shows why.
    assert_eq!(code(&roster(dir.path(), &["validate", "c.yaml"])), 1);
    let out = roster(dir.path(), &["explain", "payroll-bureau", "c.yaml"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "user payroll-bureau (Payroll bureau): active\n\
extends: bureau\n\
expires_at: 2027-01-31 (c.yaml:14:17)\n\
\n\
permission bank.write\n  user payroll-bureau → role assignment bank-admin@user.payroll-bureau (positions TREASURER) → role bank-admin → permission bank.write\n\
\n\
permission payroll.read\n  user payroll-bureau → template bureau → group payroll-team (companies ACME) → role payroll-admin → permission payroll.read\n\
\n\
permission payroll.write\n  user payroll-bureau → template bureau → group payroll-team (companies ACME) → role payroll-admin → permission payroll.write\n\
\n\
set right payslips: full (GET, POST, PUT, PATCH, DELETE)\n  user payroll-bureau → set right payslips: full\n\
\n\
set right salary: write (GET, POST, PUT, PATCH)\n  user payroll-bureau → template bureau → set right salary: write\n\
\n\
breaks:\n  policy.payroll-sod: user payroll-bureau holds payroll.write (via template bureau → group payroll-team (companies ACME) → role payroll-admin) and bank.write (via role assignment bank-admin@user.payroll-bureau (positions TREASURER) → role bank-admin) (separation of duties \"payroll-sod\")\n"
    );
    let out = roster(
        dir.path(),
        &[
            "explain",
            "payroll-bureau",
            "c.yaml",
            "--permission",
            "payroll.*",
            "--format",
            "json",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("JSON");
    let names: Vec<&str> = v["holds"]
        .as_array()
        .expect("holds")
        .iter()
        .map(|h| h["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["payroll.read", "payroll.write"]);
    assert_eq!(v["holds"][1]["paths"][0]["source"]["kind"], "group");
    assert_eq!(v["holds"][1]["paths"][0]["source"]["template"], "bureau");
    assert_eq!(v["expires_at"]["text"], "2027-01-31");

    let out = roster(
        dir.path(),
        &[
            "explain",
            "payroll-bureau",
            "c.yaml",
            "--permission",
            "salary",
        ],
    );
    assert!(
        stdout(&out).contains("set right salary: write"),
        "{}",
        stdout(&out)
    );
    assert!(!stdout(&out).contains("payslips"), "{}", stdout(&out));
    let out = roster(
        dir.path(),
        &[
            "explain",
            "payroll-bureau",
            "c.yaml",
            "--permission",
            "nothing.*",
        ],
    );
    assert!(
        stdout(&out).contains("holds nothing matching `nothing.*`"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn explain_an_unknown_user_is_an_error_with_a_suggestion() {
    let out = roster(
        &root().join("examples/iris-hr"),
        &["explain", "payroll-buro"],
    );
    assert_eq!(code(&out), 1);
    assert!(stdout(&out).is_empty());
    assert!(
        stderr(&out)
            .contains("no user `payroll-buro` in the config; did you mean `payroll-bureau`?"),
        "{}",
        stderr(&out)
    );
}

const DAY: i64 = 86_400;

fn rfc3339(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .expect("a time")
        .format(&time::format_description::well_known::Rfc3339)
        .expect("formats")
}

fn unix(text: &str) -> i64 {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .expect("RFC 3339")
        .unix_timestamp()
}

/// A year of weekly plans and applies with a fixed `--now`: expiry ends the
/// contractor's access by itself (reason `expired`, secrets revoked), secrets
/// are rotated exactly when they pass their age limit (reason `age`; the
/// user's own `max_age_days` over the settings'), and every plan lists what
/// expires or falls due within the warning window — and nothing else.
#[test]
fn a_year_of_plans_expires_access_and_rotates_old_secrets_on_schedule() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    fs::write(
        d.join("c.yaml"),
        r#"settings:
  max_secret_age_days: 90
  expiry_warning_days: 14
  max_removal_fraction: 1.0
  argon2: { memory_kib: 8192, iterations: 1, parallelism: 1 }
users:
  contractor:
    display_name: Contractor
    expires_at: 2026-06-30
    credentials: { password: true }
  svc:
    display_name: Service (token, 30 days)
    credentials: { token: true, max_age_days: 30 }
  plain:
    display_name: Plain (password, 90 days)
    credentials: { password: true }
  nosecret:
    display_name: No secrets
"#,
    )
    .expect("write config");
    let start = unix("2026-01-01T08:00:00Z");
    let expiry = unix("2026-06-30T00:00:00Z");
    let max_age = |u: &str| if u == "svc" { 30 } else { 90 } * DAY;
    // When each user's current secrets were generated (as the test saw it).
    let mut generated: std::collections::BTreeMap<String, i64> = Default::default();
    let mut rotations: std::collections::BTreeMap<String, usize> = Default::default();
    let mut expired_on = None;
    for week in 0..53 {
        let now = start + week * 7 * DAY;
        let at = rfc3339(now);
        let out = roster(
            d,
            &[
                "plan",
                "c.yaml",
                "--store",
                "file:state.json",
                "--now",
                &at,
                "--format",
                "json",
            ],
        );
        assert_eq!(code(&out), 0, "{at}: {}", stderr(&out));
        let plan: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("plan JSON");
        assert_eq!(plan["schedule"]["now"], at.as_str());
        let steps = plan["steps"].as_array().expect("steps").clone();
        let step = |u: &str| steps.iter().find(|s| s["name"] == u).cloned();
        // Expiry.
        let expiring: Vec<&str> = plan["schedule"]["expiring"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|e| e["user"].as_str().expect("user"))
                    .collect()
            })
            .unwrap_or_default();
        let soon = now < expiry && expiry - now <= 14 * DAY;
        assert_eq!(
            expiring == ["contractor"],
            soon,
            "{at}: expiring {expiring:?}"
        );
        if now >= expiry && expired_on.is_none() {
            let s = step("contractor").unwrap_or_else(|| panic!("{at}: no step for contractor"));
            assert_eq!(s["action"], "deactivate", "{at}: {s}");
            assert_eq!(s["reason"], "expired", "{at}: {s}");
            assert_eq!(s["revoke"], serde_json::json!(["password"]), "{at}: {s}");
            expired_on = Some(now);
        } else if week > 0 && (expired_on.is_some() || now < expiry) {
            // Secret age, for the active users with secrets.
            for u in ["contractor", "svc", "plain"] {
                if u == "contractor" && expired_on.is_some() {
                    assert!(step(u).is_none(), "{at}: {u} after expiry");
                    continue;
                }
                let age = now - generated[u];
                let s = step(u);
                if age >= max_age(u) {
                    let s = s.unwrap_or_else(|| panic!("{at}: {u} is {age}s old, no rotation"));
                    assert_eq!(s["action"], "rotate", "{at}: {s}");
                    assert_eq!(s["reason"], "age", "{at}: {s}");
                } else {
                    assert!(s.is_none(), "{at}: {u} rotated at age {} days", age / DAY);
                }
                let due = plan["schedule"]["secrets_due"]
                    .as_array()
                    .is_some_and(|a| a.iter().any(|x| x["user"] == u));
                let left = generated[u] + max_age(u) - now;
                assert_eq!(
                    due,
                    left > 0 && left <= 14 * DAY,
                    "{at}: {u} due in {left}s"
                );
            }
        }
        assert!(step("nosecret").is_none() || week == 0, "{at}");
        if steps.is_empty() {
            continue;
        }
        for s in &steps {
            let name = s["name"].as_str().expect("name").to_string();
            if s["generate"].as_array().is_some_and(|g| !g.is_empty()) {
                if generated.contains_key(&name) {
                    *rotations.entry(name.clone()).or_default() += 1;
                }
                generated.insert(name, now);
            }
        }
        let secrets = d.join(format!("secrets-{week}.json"));
        let out = roster(
            d,
            &[
                "apply",
                "c.yaml",
                "--store",
                "file:state.json",
                "--now",
                &at,
                "--yes",
                "--secrets-out",
                secrets.to_str().expect("utf-8"),
            ],
        );
        assert_eq!(code(&out), 0, "{at}: {}", stderr(&out));
    }
    assert_eq!(expired_on, Some(unix("2026-07-02T08:00:00Z")));
    // Checked weekly: svc (30 days) rotates every 5 weeks, plain (90 days)
    // every 13 weeks; the contractor once (week 13) before its access ends (week 26).
    assert_eq!(rotations.get("svc"), Some(&10), "{rotations:?}");
    assert_eq!(rotations.get("plain"), Some(&4), "{rotations:?}");
    assert_eq!(rotations.get("contractor"), Some(&1), "{rotations:?}");
    // The contractor's secret is gone from the state; nobody's hash shows up in a plan.
    let state = fs::read_to_string(d.join("state.json")).expect("state");
    let v: serde_json::Value = serde_json::from_str(&state).expect("state JSON");
    let record = &v["users"]["contractor"];
    assert_eq!(record["spec"]["active"], false, "{record}");
    assert!(record["meta"]["deactivated_at"].is_string(), "{record}");
    assert!(record["meta"]["secrets"]["password"].is_null(), "{record}");
    // The others' hashes are there, generated at the --now of their last rotation.
    assert!(v["users"]["plain"]["meta"]["secrets"]["password"].is_string());
    assert_eq!(
        v["users"]["svc"]["meta"]["secrets"]["generated_at"],
        rfc3339(generated["svc"]).as_str()
    );
    let out = roster(
        d,
        &[
            "plan",
            "c.yaml",
            "--store",
            "file:state.json",
            "--now",
            "2027-01-01",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(!stdout(&out).contains("$argon2"), "{}", stdout(&out));
}

#[test]
fn validate_warns_about_a_past_expiry_and_plans_say_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    fs::write(
        d.join("c.yaml"),
        r#"templates:
  contract:
    expires_at: 2026-03-01T17:00:00Z
users:
  old-survey:
    display_name: Previous survey tool
    expires_at: 2026-01-31
    credentials: { password: true }
  audit:
    display_name: Audit firm
    extends: contract
"#,
    )
    .expect("write");
    let out = roster(d, &["validate", "c.yaml", "--now", "2026-02-20"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert_eq!(
        stderr(&out),
        "c.yaml:7:17: warning[user.expired]: user old-survey: expires_at 2026-01-31 is in the past; the next plan deactivates it and revokes its secrets\n"
    );
    let out = roster(
        d,
        &[
            "validate",
            "c.yaml",
            "--now",
            "2026-02-20",
            "--format",
            "github",
        ],
    );
    assert_eq!(
        stdout(&out),
        "::warning file=c.yaml,line=7,col=17,title=roster user.expired::user old-survey: expires_at 2026-01-31 is in the past; the next plan deactivates it and revokes its secrets\n"
    );
    let out = roster(d, &["validate", "c.yaml", "--now", "2026-01-30"]);
    assert_eq!(stderr(&out), "");

    // Applied in January, planned in late February.
    let s = d.join("s.json");
    let out = roster(
        d,
        &[
            "apply",
            "c.yaml",
            "--store",
            "file:state.json",
            "--now",
            "2026-01-10",
            "--yes",
            "--secrets-out",
            s.to_str().expect("utf-8"),
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let out = roster(
        d,
        &[
            "plan",
            "c.yaml",
            "--store",
            "file:state.json",
            "--now",
            "2026-02-20T12:00:00Z",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("- user.old-survey (deactivate; reason: expired; revoke password)"),
        "{text}"
    );
    assert!(
        text.contains("Access expiring within 14 days (as of 2026-02-20T12:00:00Z):\n  user.audit: expires_at 2026-03-01T17:00:00Z (in 9 days)\n"),
        "{text}"
    );
    let out = roster(
        d,
        &[
            "plan",
            "c.yaml",
            "--store",
            "file:state.json",
            "--now",
            "2026-02-20T12:00:00Z",
            "--format",
            "markdown",
        ],
    );
    assert!(
        stdout(&out).contains("> - `user.audit`: expires_at 2026-03-01T17:00:00Z (in 9 days)"),
        "{}",
        stdout(&out)
    );
    let out = roster(
        d,
        &[
            "plan",
            "c.yaml",
            "--store",
            "file:state.json",
            "--now",
            "not-a-date",
        ],
    );
    assert_eq!(code(&out), 2, "{}", stderr(&out));
    assert!(stderr(&out).contains("not-a-date"), "{}", stderr(&out));
}

/// Regression: recording each user's template for every config cost 13% more
/// memory loading 50k users. A config without policies keeps only what plans
/// need (expiry, secret age); `explain` and the report load the provenance.
#[test]
fn template_provenance_is_kept_only_where_it_is_used() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("c.yaml");
    let config = "templates:\n  base:\n    set_rights: { personal: read }\nusers:\n  a:\n    display_name: A\n    extends: base\n  b:\n    display_name: B\n    extends: base\n    expires_at: 2027-01-01\n";
    fs::write(&path, config).expect("write");
    let d = roster::load::load(std::slice::from_ref(&path)).expect("valid");
    assert!(!d.governance.contains_key("a"), "{:?}", d.governance);
    assert_eq!(d.governance["b"].extends, None);
    assert!(d.governance["b"].expires_at.is_some());
    let d = roster::load::load_without_policy_check(std::slice::from_ref(&path)).expect("valid");
    assert_eq!(d.governance["a"].extends.as_deref(), Some("base"));
    fs::write(
        &path,
        format!("{config}policies:\n  - name: e\n    description: email\n    require: {{ fields: [email] }}\n    when: {{ templates: [base] }}\n"),
    )
    .expect("write");
    let err = roster::load::load(std::slice::from_ref(&path)).expect_err("both lack an email");
    let codes: Vec<&str> = err.items.iter().map(|i| i.code).collect();
    assert_eq!(codes, ["policy.e", "policy.e"]);
}

/// An expired user that is `protected` is left active (protected resources
/// are never deactivated), and every plan and validate says so instead of
/// the expiry passing silently; validate's JSON carries the warning.
#[test]
fn an_expired_protected_user_is_left_active_and_said_so() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    fs::write(
        d.join("c.yaml"),
        "users:\n  break-glass:\n    display_name: Break glass\n    protected: true\n    expires_at: 2026-01-31\n  lms:\n    display_name: LMS\n",
    )
    .expect("write");
    let store = ["--store", "file:state.json"];
    let apply = roster(
        d,
        &[
            &["apply", "c.yaml", "--now", "2026-01-10", "--yes"][..],
            &store[..],
        ]
        .concat(),
    );
    assert_eq!(code(&apply), 0, "{}", stderr(&apply));
    let plan = roster(
        d,
        &[&["plan", "c.yaml", "--now", "2026-02-20"][..], &store[..]].concat(),
    );
    assert_eq!(code(&plan), 0, "{}", stderr(&plan));
    assert!(
        stdout(&plan).contains(
            "Protected, left as they are (the config would deactivate or remove them): user.break-glass"
        ),
        "{}",
        stdout(&plan)
    );
    assert!(
        stderr(&plan).contains("warning: protected, left as it is: user.break-glass"),
        "{}",
        stderr(&plan)
    );
    let out = roster(
        d,
        &[
            "validate",
            "c.yaml",
            "--now",
            "2026-02-20",
            "--format",
            "json",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let v: serde_json::Value = serde_json::from_str(&stdout(&out)).expect("json");
    assert_eq!(v["warnings"][0]["code"], "user.expired", "{v}");
    assert_eq!(v["warnings"][0]["location"], "c.yaml:5:17", "{v}");
    assert!(
        v["warnings"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("it is protected")),
        "{v}"
    );
}

/// `explain` and the Markdown access report print config free text (a
/// display name) escaped: no terminal escape reaches the screen, no HTML or
/// table cell break reaches a rendered Markdown report.
#[test]
fn explain_and_report_escape_hostile_display_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    fs::write(
        d.join("c.yaml"),
        "roles:\n  reader:\n    permissions: [payroll.read]\nusers:\n  evil:\n    display_name: \"x\\e[2J | <b>bold</b> [l](http://x)\"\n    roles: [reader]\n",
    )
    .expect("write");
    let out = roster(d, &["explain", "evil", "c.yaml"]);
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let text = stdout(&out);
    assert!(!text.contains('\u{1b}'), "{text:?}");
    assert!(text.contains("x\\u{1b}[2J"), "{text}");
    let out = roster(
        d,
        &[
            "report",
            "access",
            "c.yaml",
            "--store",
            "file:state.json",
            "--format",
            "markdown",
            "--now",
            "2026-02-20",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    let md = stdout(&out);
    assert!(!md.contains('\u{1b}'), "{md:?}");
    let html = {
        let mut h = String::new();
        pulldown_cmark::html::push_html(&mut h, pulldown_cmark::Parser::new(&md));
        h
    };
    assert!(!html.contains("<b>"), "{html}");
    assert!(!html.contains("<a "), "{html}");
    // The row with the display name stays one row of the same width as the header.
    let header = md
        .lines()
        .find(|l| l.starts_with("| user"))
        .expect("table header");
    let row = md
        .lines()
        .find(|l| l.starts_with("| evil |"))
        .expect("the user's row");
    let cells = |l: &str| l.matches(" | ").count();
    assert_eq!(cells(row), cells(header), "{row}");
}
