//! Governance end to end, through the real binary: policies that hold
//! (`tests/policy-pass/*/config` must validate; the violating ones are golden
//! cases under `tests/invalid/policy-*`), policy errors in every output
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
