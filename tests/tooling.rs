//! roster in the tools people already use: the CI templates under
//! `examples/ci/` (parsed, and every `roster ...` line in them run with the
//! real binary on a scaffold made by `roster init`), `validate --format
//! github|gitlab`, `init` for each shape, shell completions and man pages,
//! progress output of a long apply, the plan's Markdown rendered to HTML
//! (also at 10,000 changes), and the CI run recorded in the audit trail.
//!
//! Everything runs in temporary directories on the embedded file store; no
//! network.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const CI_VARS: [&str; 9] = [
    "GITHUB_ACTIONS",
    "GITHUB_SERVER_URL",
    "GITHUB_REPOSITORY",
    "GITHUB_RUN_ID",
    "CI_PIPELINE_URL",
    "CI_JOB_URL",
    "BUILD_URL",
    "CIRCLE_BUILD_URL",
    "BUILDKITE_BUILD_URL",
];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Run the binary in `dir` with a clean environment for roster (no store
/// override, no CI variables unless `env` sets them).
fn roster_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_roster"));
    cmd.args(args)
        .current_dir(dir)
        .env("NO_COLOR", "1")
        .env_remove("ROSTER_STORE")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null());
    for k in CI_VARS {
        cmd.env_remove(k);
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the roster binary runs")
}

fn roster(dir: &Path, args: &[&str]) -> Output {
    roster_env(dir, args, &[])
}

fn show(out: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}\n--- stderr\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output, what: &str) {
    assert_eq!(o.status.code(), Some(0), "{what}: {}", show(o));
}

// ---------------------------------------------------------------- CI templates

/// One `roster ...` command line found in a CI file.
#[derive(Debug)]
struct CiCommand {
    line: String,
    args: Vec<String>,
    /// `> FILE`: the command's stdout goes to this file.
    stdout_to: Option<String>,
}

/// Every string in a parsed YAML document, in document order.
fn strings<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
    match v {
        Value::String(s) => out.push(s),
        Value::Array(a) => a.iter().for_each(|x| strings(x, out)),
        Value::Object(m) => m.values().for_each(|x| strings(x, out)),
        _ => {}
    }
}

/// Expand `$NAME` / `${NAME}` from `vars`; an unknown variable fails the test,
/// so a template cannot use a variable this test does not give a value.
fn expand(word: &str, vars: &BTreeMap<&str, String>, line: &str) -> String {
    let mut out = String::new();
    let mut chars = word.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let braced = chars.peek() == Some(&'{');
        if braced {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphanumeric() || n == '_' {
                name.push(n);
                chars.next();
            } else {
                break;
            }
        }
        if braced {
            assert_eq!(chars.next(), Some('}'), "unclosed ${{ in `{line}`");
        }
        let value = vars
            .get(name.as_str())
            .unwrap_or_else(|| panic!("`{line}` uses ${name}, which this test does not set"));
        out.push_str(value);
    }
    out
}

/// Split a shell command line into words (quotes, variables), stopping at
/// the first unquoted `|`, `;`, `&` or `>`; a `> FILE` is returned apart.
fn parse_command(line: &str, vars: &BTreeMap<&str, String>) -> CiCommand {
    assert!(
        !line.contains("${{"),
        "`{line}`: pass GitHub expressions through env:, not into the command line"
    );
    let mut words: Vec<String> = Vec::new();
    let mut cur = String::new();
    let mut in_word = false;
    let mut chars = line.chars().peekable();
    let mut stop = None;
    while let Some(c) = chars.next() {
        match c {
            '"' => {
                in_word = true;
                let mut q = String::new();
                for d in chars.by_ref() {
                    if d == '"' {
                        break;
                    }
                    q.push(d);
                }
                cur.push_str(&expand(&q, vars, line));
            }
            '\'' => {
                in_word = true;
                for d in chars.by_ref() {
                    if d == '\'' {
                        break;
                    }
                    cur.push(d);
                }
            }
            ' ' | '\t' => {
                if in_word {
                    words.push(std::mem::take(&mut cur));
                    in_word = false;
                }
            }
            '|' | ';' | '&' | '>' => {
                stop = Some((c, chars.collect::<String>()));
                break;
            }
            _ => {
                in_word = true;
                let mut w = String::from(c);
                while let Some(&d) = chars.peek() {
                    if matches!(d, ' ' | '\t' | '"' | '\'' | '|' | ';' | '&' | '>') {
                        break;
                    }
                    w.push(d);
                    chars.next();
                }
                cur.push_str(&expand(&w, vars, line));
            }
        }
    }
    if in_word {
        words.push(cur);
    }
    let stdout_to = match stop {
        Some(('>', rest)) => {
            let file = rest.split_whitespace().next().expect("a file after >");
            Some(file.to_string())
        }
        _ => None,
    };
    assert_eq!(words.first().map(String::as_str), Some("roster"), "{line}");
    CiCommand {
        line: line.to_string(),
        args: words[1..].to_vec(),
        stdout_to,
    }
}

/// The `roster ...` lines of a CI file, with continuation lines joined.
fn roster_commands(doc: &Value, vars: &BTreeMap<&str, String>) -> Vec<CiCommand> {
    let mut texts = Vec::new();
    strings(doc, &mut texts);
    let mut out = Vec::new();
    for text in texts {
        let joined = text.replace("\\\n", " ");
        for line in joined.lines() {
            let line = line.trim();
            if line.starts_with("roster ") {
                out.push(parse_command(line, vars));
            }
        }
    }
    out
}

fn parse_yaml(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str::<Value>(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn decrypt_armored(identity: &age::x25519::Identity, armored: &str) -> String {
    use std::io::Read as _;
    let reader = age::armor::ArmoredReader::new(armored.as_bytes());
    let decryptor = age::Decryptor::new(reader).expect("an age header");
    let mut plain = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .expect("decrypts with the test identity");
    let mut text = String::new();
    plain.read_to_string(&mut text).expect("UTF-8 secrets");
    text
}

/// Run every `roster` line of a CI template, in order, in a fresh scaffold
/// (as a merge request's jobs and then the merge's would), and check what
/// they leave: the Markdown plan, the encrypted secrets, clean logs.
fn run_ci_template(file: &str, min_commands: usize) {
    let path = root().join(file);
    let doc = parse_yaml(&path);
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path();
    ok(
        &roster(repo, &["init", ".", "--from", "iris-hr"]),
        "roster init",
    );
    let identity = age::x25519::Identity::generate();
    let recipient = identity.to_public().to_string();
    let vars = BTreeMap::from([
        ("ROSTER_CONFIG", "access".to_string()),
        ("ROSTER_AGE_RECIPIENT", recipient),
    ]);
    let commands = roster_commands(&doc, &vars);
    assert!(
        commands.len() >= min_commands,
        "{file}: expected at least {min_commands} roster command lines, found {commands:#?}"
    );
    for sub in ["validate", "plan", "apply"] {
        assert!(
            commands
                .iter()
                .any(|c| c.args.first().map(String::as_str) == Some(sub)),
            "{file}: no `roster {sub}` line"
        );
    }
    let mut logs = String::new();
    for c in &commands {
        let args: Vec<&str> = c.args.iter().map(String::as_str).collect();
        let out = roster(repo, &args);
        ok(&out, &format!("{file}: `{}`", c.line));
        logs.push_str(&stderr(&out));
        if let Some(to) = &c.stdout_to {
            fs::write(repo.join(to), &out.stdout).expect("write redirected stdout");
        } else {
            logs.push_str(&stdout(&out));
        }
    }
    // The plan posted on the merge request.
    let plan_md = fs::read_to_string(repo.join("plan.md")).expect("plan.md written");
    assert!(plan_md.starts_with("### roster plan"), "{plan_md}");
    assert!(plan_md.contains("user.payroll-bureau"), "{plan_md}");
    // The apply's secrets: only in the encrypted artifact, never in a log.
    let armored = fs::read_to_string(repo.join("secrets.age")).expect("secrets.age written");
    assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    let secrets: Value =
        serde_json::from_str(&decrypt_armored(&identity, &armored)).expect("JSON secrets");
    let list = secrets["secrets"].as_array().expect("a secrets list");
    let mut users: Vec<&str> = list.iter().filter_map(|s| s["user"].as_str()).collect();
    users.sort();
    assert_eq!(users, ["payroll-bureau", "survey-tool"], "{secrets}");
    for s in list {
        let value = s["value"].as_str().expect("a value");
        assert!(value.len() >= 16);
        assert!(!logs.contains(value), "{file}: a secret appears in a log");
    }
    // Applied: a new plan has nothing to do.
    let again = roster(repo, &["plan", "access", "--detailed-exitcode"]);
    ok(&again, "re-plan after the template's apply");
    // The annotation step's converter, on an invalid config.
    fs::write(
        repo.join("access/broken.yaml"),
        "users:\n  broken:\n    display_name: Broken\n    groups: [no-such-group]\n",
    )
    .expect("write");
    let validate = commands
        .iter()
        .find(|c| c.args.first().map(String::as_str) == Some("validate"))
        .expect("a validate line");
    let args: Vec<&str> = validate.args.iter().map(String::as_str).collect();
    let out = roster(repo, &args);
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
}

#[test]
fn github_actions_template_parses_and_its_roster_lines_run() {
    let file = "examples/ci/github-actions/roster.yml";
    let doc = parse_yaml(&root().join(file));
    let jobs = doc["jobs"].as_object().expect("jobs");
    let plan_steps = jobs["plan"]["steps"].as_array().expect("plan steps");
    let script = plan_steps
        .iter()
        .find_map(|s| s["with"]["script"].as_str())
        .expect("a github-script step");
    assert!(script.contains("<!-- roster-plan -->"), "{script}");
    assert!(script.contains("updateComment") && script.contains("createComment"));
    assert!(
        plan_steps
            .iter()
            .filter_map(|s| s["run"].as_str())
            .any(|r| r.contains("--format github")),
        "validate must emit annotations"
    );
    let apply_steps = jobs["apply"]["steps"].as_array().expect("apply steps");
    let upload = apply_steps
        .iter()
        .find(|s| {
            s["uses"]
                .as_str()
                .is_some_and(|u| u.starts_with("actions/upload-artifact"))
        })
        .expect("an upload-artifact step");
    assert_eq!(upload["with"]["path"], "secrets.age");
    assert_eq!(
        jobs["apply"]["env"]["ROSTER_AGE_RECIPIENT"],
        "${{ vars.ROSTER_AGE_RECIPIENT }}"
    );
    run_ci_template(file, 5);
}

#[test]
fn gitlab_template_parses_and_its_roster_lines_run() {
    let file = "examples/ci/gitlab-ci.yml";
    let doc = parse_yaml(&root().join(file));
    assert_eq!(
        doc["roster:validate"]["artifacts"]["reports"]["codequality"],
        "gl-code-quality-report.json"
    );
    let note = doc["roster:plan"]["script"]
        .as_array()
        .expect("plan script")
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(note.contains("<!-- roster-plan -->") && note.contains("merge_requests"));
    assert_eq!(doc["roster:apply"]["artifacts"]["paths"][0], "secrets.age");
    run_ci_template(file, 6);
}

// ------------------------------------------------------- validate annotations

fn broken_repo() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::create_dir(tmp.path().join("access")).expect("mkdir");
    fs::write(
        tmp.path().join("access/a,b.yaml"),
        "roles:\n  reader:\n    permisions: [x.read]\nusers:\n  svc:\n    display_name: Svc\n    roles: [reader]\n    emial: svc@example.com\n",
    )
    .expect("write");
    tmp
}

#[test]
fn validate_github_format_prints_one_annotation_per_error() {
    let tmp = broken_repo();
    let text = roster(tmp.path(), &["validate", "access"]);
    assert_eq!(text.status.code(), Some(1), "{}", show(&text));
    let json = roster(tmp.path(), &["validate", "access", "--format", "json"]);
    let report: Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let errors = report["errors"].as_array().expect("errors");
    assert_eq!(errors.len(), 2, "{report}");

    let gh = roster(tmp.path(), &["validate", "access", "--format", "github"]);
    assert_eq!(gh.status.code(), Some(1), "{}", show(&gh));
    let lines: Vec<String> = stdout(&gh).lines().map(str::to_string).collect();
    let expected: Vec<String> = errors
        .iter()
        .map(|e| {
            let mut msg = e["message"].as_str().expect("message").to_string();
            if let Some(h) = e["help"].as_str() {
                msg.push_str(&format!(" (help: {h})"));
            }
            format!(
                "::error file=access/a%2Cb.yaml,line={},col={},title=roster {}::{}",
                e["line"],
                e["column"],
                e["code"].as_str().expect("code"),
                msg.replace('%', "%25").replace('\n', "%0A")
            )
        })
        .collect();
    assert_eq!(lines, expected);
    assert!(lines.iter().any(|l| l.contains("line=3,")), "{lines:#?}");
    assert!(lines.iter().any(|l| l.contains("line=8,")), "{lines:#?}");
    assert!(gh.stderr.is_empty(), "{}", show(&gh));

    let gl = roster(tmp.path(), &["validate", "access", "--format", "gitlab"]);
    assert_eq!(gl.status.code(), Some(1), "{}", show(&gl));
    let issues: Value = serde_json::from_slice(&gl.stdout).expect("a Code Quality report");
    let issues = issues.as_array().expect("an array");
    assert_eq!(issues.len(), 2);
    for (issue, e) in issues.iter().zip(errors) {
        assert_eq!(issue["location"]["path"], "access/a,b.yaml");
        assert_eq!(issue["location"]["lines"]["begin"], e["line"]);
        assert_eq!(issue["check_name"], e["code"]);
        assert_eq!(issue["fingerprint"].as_str().map(str::len), Some(64));
    }
    assert_ne!(issues[0]["fingerprint"], issues[1]["fingerprint"]);

    // A valid config: no annotations, an empty report.
    fs::remove_file(tmp.path().join("access/a,b.yaml")).expect("rm");
    fs::write(
        tmp.path().join("access/ok.yaml"),
        "users:\n  svc:\n    display_name: Svc\n",
    )
    .expect("write");
    let gh = roster(tmp.path(), &["validate", "access", "--format", "github"]);
    ok(&gh, "valid config, github format");
    assert!(gh.stdout.is_empty(), "{}", show(&gh));
    let gl = roster(tmp.path(), &["validate", "access", "--format", "gitlab"]);
    ok(&gl, "valid config, gitlab format");
    assert_eq!(stdout(&gl).trim(), "[]");
}

// ------------------------------------------------------------------------ init

#[test]
fn init_scaffolds_each_shape_that_validates_and_refuses_to_overwrite() {
    let schema = stdout(&roster(root(), &["schema"]));
    let workflow =
        fs::read_to_string(root().join("examples/ci/github-actions/roster.yml")).expect("read");
    for shape in ["avanti", "iris-hr", "avaamo"] {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("repo");
        let out = roster(tmp.path(), &["init", "repo", "--from", shape]);
        ok(&out, shape);
        let v = roster(&dir, &["validate", "access"]);
        ok(&v, &format!("{shape}: validate"));
        assert!(stdout(&v).starts_with("valid: "), "{}", show(&v));
        // Loading the whole repository finds only the config (hidden dirs are skipped).
        ok(
            &roster(&dir, &["validate", "."]),
            &format!("{shape}: validate ."),
        );
        let mut configs: Vec<PathBuf> = fs::read_dir(dir.join("access"))
            .expect("access/")
            .map(|e| e.expect("entry").path())
            .collect();
        configs.sort();
        assert!(configs.len() >= 2, "{shape}: {configs:?}");
        for c in &configs {
            let text = fs::read_to_string(c).expect("read");
            assert!(
                text.starts_with("# yaml-language-server: $schema=../schemas/roster.schema.json\n"),
                "{}",
                c.display()
            );
        }
        assert_eq!(
            fs::read_to_string(dir.join("schemas/roster.schema.json")).expect("schema"),
            schema
        );
        assert_eq!(
            fs::read_to_string(dir.join(".github/workflows/roster.yml")).expect("workflow"),
            workflow
        );
        let gitignore = fs::read_to_string(dir.join(".gitignore")).expect(".gitignore");
        assert!(gitignore.lines().any(|l| l == ".roster/"), "{gitignore}");
        // The scaffold plans against an empty store.
        let plan = roster(&dir, &["plan", "access", "--detailed-exitcode"]);
        assert_eq!(plan.status.code(), Some(2), "{}", show(&plan));

        // Again: refused, and nothing is written, not even a removed file.
        fs::remove_file(dir.join("schemas/roster.schema.json")).expect("rm");
        let before = fs::read_to_string(dir.join("access/users.yaml")).expect("read");
        fs::write(dir.join("access/users.yaml"), "# mine\n").expect("write");
        let again = roster(tmp.path(), &["init", "repo", "--from", shape]);
        assert_eq!(again.status.code(), Some(1), "{}", show(&again));
        assert!(
            stderr(&again).contains("refusing to overwrite"),
            "{}",
            show(&again)
        );
        assert!(stderr(&again).contains("users.yaml"), "{}", show(&again));
        assert!(!dir.join("schemas/roster.schema.json").exists());
        assert_eq!(
            fs::read_to_string(dir.join("access/users.yaml")).expect("read"),
            "# mine\n"
        );
        assert!(!before.is_empty());
    }
}

#[test]
fn init_appends_to_an_existing_gitignore() {
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::write(tmp.path().join(".gitignore"), "target/").expect("write");
    ok(
        &roster(tmp.path(), &["init", "--from", "avaamo"]),
        "init in .",
    );
    let text = fs::read_to_string(tmp.path().join(".gitignore")).expect("read");
    assert!(text.starts_with("target/\n"), "{text}");
    assert!(text.lines().any(|l| l == ".roster/"), "{text}");
    // A second run (after moving the config away) adds nothing twice.
    fs::rename(tmp.path().join("access"), tmp.path().join("old")).expect("mv");
    fs::remove_dir_all(tmp.path().join("schemas")).expect("rm");
    fs::remove_dir_all(tmp.path().join(".github")).expect("rm");
    ok(
        &roster(tmp.path(), &["init", "--from", "avaamo"]),
        "init again",
    );
    let again = fs::read_to_string(tmp.path().join(".gitignore")).expect("read");
    assert_eq!(again, text);
}

// ------------------------------------------------------ completions and man

#[test]
fn completions_name_every_subcommand_and_the_man_page_renders() {
    let dir = root();
    for shell in ["bash", "zsh", "fish"] {
        let out = roster(dir, &["completions", shell]);
        ok(&out, shell);
        let text = stdout(&out);
        for sub in [
            "validate",
            "plan",
            "apply",
            "show",
            "export",
            "history",
            "schema",
            "init",
            "completions",
        ] {
            assert!(text.contains(sub), "{shell} completions lack {sub}");
        }
    }
    let bad = roster(dir, &["completions", "tcsh"]);
    assert_eq!(bad.status.code(), Some(2), "{}", show(&bad));

    let man = roster(dir, &["man"]);
    ok(&man, "man");
    let page = stdout(&man);
    assert!(page.contains(".TH roster 1"), "{page}");
    assert!(page.contains("validate"), "{page}");

    let tmp = tempfile::tempdir().expect("tempdir");
    let out = roster(tmp.path(), &["man", "--out", "man"]);
    ok(&out, "man --out");
    for page in [
        "roster.1",
        "roster-apply.1",
        "roster-init.1",
        "roster-plan.1",
    ] {
        let text = fs::read_to_string(tmp.path().join("man").join(page)).expect(page);
        assert!(text.contains(".TH"), "{page}");
    }
}

// -------------------------------------------------------------------- progress

fn many_token_users(n: usize) -> String {
    let mut s = String::from(
        "settings:\n  argon2: { memory_kib: 8192, iterations: 1, parallelism: 1 }\nusers:\n",
    );
    for i in 0..n {
        s.push_str(&format!(
            "  svc-{i:05}:\n    display_name: Service {i}\n    credentials: {{ token: true }}\n"
        ));
    }
    s
}

fn progress_lines(err: &str) -> Vec<&str> {
    err.lines().filter(|l| l.starts_with("roster: ")).collect()
}

#[test]
fn a_long_apply_prints_bounded_progress_lines_and_quiet_silences_them() {
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::create_dir(tmp.path().join("access")).expect("mkdir");
    fs::write(tmp.path().join("access/users.yaml"), many_token_users(150)).expect("write");
    let started = std::time::Instant::now();
    let out = roster(
        tmp.path(),
        &["apply", "access", "--yes", "--secrets-out", "s1.json"],
    );
    let secs = started.elapsed().as_secs() as usize;
    ok(&out, "apply 150 users");
    let err = stderr(&out);
    let lines = progress_lines(&err);
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("roster: hashing secrets 150/150 (100%")),
        "{err}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("roster: committing 150/150")),
        "{err}"
    );
    // One line per tenth per stage, plus at most one per 5 s of run time.
    assert!(
        lines.len() <= 2 * 11 + secs / 5 + 1,
        "{} progress lines: {err}",
        lines.len()
    );
    let secrets = fs::read_to_string(tmp.path().join("s1.json")).expect("secrets");
    let secrets: Value = serde_json::from_str(&secrets).expect("JSON");
    for s in secrets["secrets"].as_array().expect("list") {
        assert!(!err.contains(s["value"].as_str().expect("value")));
    }

    // Rotate everything, quietly: no progress at all.
    let rotated = many_token_users(150).replace("{ token: true }", "{ token: true, rotation: 1 }");
    fs::write(tmp.path().join("access/users.yaml"), rotated).expect("write");
    let out = roster(
        tmp.path(),
        &["apply", "access", "--yes", "--secrets-out", "s2.json", "-q"],
    );
    ok(&out, "quiet apply");
    assert!(progress_lines(&stderr(&out)).is_empty(), "{}", show(&out));
}

// -------------------------------------------------------------------- Markdown

fn html_of(markdown: &str) -> String {
    use pulldown_cmark::{Options, Parser, html};
    let mut out = String::new();
    html::push_html(
        &mut out,
        Parser::new_ext(markdown, Options::ENABLE_TABLES | Options::ENABLE_GFM),
    );
    out
}

#[test]
fn plan_markdown_renders_its_table_details_and_diff() {
    let tmp = tempfile::tempdir().expect("tempdir");
    ok(
        &roster(tmp.path(), &["init", "--from", "avanti"]),
        "init avanti",
    );
    ok(
        &roster(
            tmp.path(),
            &["apply", "access", "--yes", "--secrets-out", "s.json"],
        ),
        "first apply",
    );
    let users = tmp.path().join("access/users.yaml");
    let text = fs::read_to_string(&users).expect("read");
    fs::write(
        &users,
        text.replace("display_name: HRIS sync", "display_name: HRIS nightly sync")
            + "  time-clock:\n    display_name: Time clock\n    extends: hr-integration-base\n",
    )
    .expect("write");
    let out = roster(tmp.path(), &["plan", "access", "--format", "markdown"]);
    ok(&out, "plan markdown");
    let md = stdout(&out);
    let html = html_of(&md);
    assert!(html.contains("<table>"), "{html}");
    assert!(html.contains("<td>create</td>"), "{html}");
    assert!(html.contains("<td>update</td>"), "{html}");
    assert!(
        html.contains("<details><summary>Details (2 steps)</summary>"),
        "{html}"
    );
    assert!(html.contains("</details>"), "{html}");
    let code_start = html
        .find("<code class=\"language-diff\">")
        .expect("a diff code block");
    let code = &html[code_start..html[code_start..].find("</code>").expect("closed") + code_start];
    assert!(code.contains("user.time-clock"), "{code}");
    assert!(code.contains("HRIS nightly sync"), "{code}");
    assert!(
        code.contains("\n+ ") || code.contains("\n  + ") || code.contains("+ user"),
        "{code}"
    );
}

#[test]
fn plan_markdown_at_ten_thousand_changes_stays_under_the_comment_limit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    fs::create_dir(tmp.path().join("access")).expect("mkdir");
    let mut config = String::from("users:\n");
    for i in 0..10_000 {
        config.push_str(&format!(
            "  user-{i:05}:\n    display_name: User number {i}\n    email: user-{i:05}@example.com\n    set_rights: {{ personal: read }}\n"
        ));
    }
    fs::write(tmp.path().join("access/users.yaml"), config).expect("write");
    let out = roster(tmp.path(), &["plan", "access", "--format", "markdown"]);
    ok(&out, "plan 10,000 users");
    let md = stdout(&out);
    assert!(
        md.chars().count() < 65_000,
        "{} characters",
        md.chars().count()
    );
    assert!(
        md.contains("| create | 10000 |"),
        "{}",
        &md[..md.len().min(2000)]
    );
    let note = md
        .lines()
        .find(|l| l.contains("more steps are not shown"))
        .expect("says how many steps were left out");
    let left_out: usize = note
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .expect("a count");
    let html = html_of(&md);
    let shown = html.matches("\n+ user.").count() + usize::from(html.contains(">+ user."));
    assert!(left_out > 0 && left_out < 10_000, "{note}");
    assert_eq!(shown + left_out, 10_000, "{note}");
    assert!(html.contains("<details>") && html.contains("</details>"));
    assert!(html.contains("<code class=\"language-diff\">"));
}

// ----------------------------------------------------------------- audit trail

#[test]
fn history_records_the_ci_run_and_the_outcome() {
    let tmp = tempfile::tempdir().expect("tempdir");
    ok(
        &roster(tmp.path(), &["init", "--from", "avaamo"]),
        "init avaamo",
    );
    let plan = roster(tmp.path(), &["plan", "access", "--format", "json"]);
    ok(&plan, "plan json");
    let steps = serde_json::from_slice::<Value>(&plan.stdout).expect("JSON")["steps"]
        .as_array()
        .expect("steps")
        .len();
    let github = [
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_SERVER_URL", "https://github.example"),
        ("GITHUB_REPOSITORY", "acme/access"),
        ("GITHUB_RUN_ID", "4242"),
    ];
    let out = roster_env(
        tmp.path(),
        &["apply", "access", "--yes", "--secrets-out", "s1.json"],
        &github,
    );
    ok(&out, "apply in GitHub Actions");

    let users = tmp.path().join("access/users.yaml");
    let text = fs::read_to_string(&users).expect("read");
    fs::write(&users, text.replace("Jane Doe", "Jane Q. Doe")).expect("write");
    let out = roster_env(
        tmp.path(),
        &["apply", "access", "--yes"],
        &[(
            "CI_PIPELINE_URL",
            "https://gitlab.example/acme/access/-/pipelines/77",
        )],
    );
    ok(&out, "apply in GitLab CI");

    let history = roster(tmp.path(), &["history", "--format", "json"]);
    ok(&history, "history");
    let entries: Value = serde_json::from_slice(&history.stdout).expect("JSON");
    let entries = entries.as_array().expect("a list");
    assert_eq!(entries.len(), 2, "{entries:#?}");
    assert_eq!(
        entries[0]["ci_run"],
        "https://github.example/acme/access/actions/runs/4242"
    );
    assert_eq!(entries[0]["outcome"], format!("applied {steps}, failed 0"));
    assert_eq!(
        entries[1]["ci_run"],
        "https://gitlab.example/acme/access/-/pipelines/77"
    );
    assert_eq!(entries[1]["outcome"], "applied 1, failed 0");
    let text = stdout(&roster(tmp.path(), &["history"]));
    assert!(text.contains("applied 1, failed 0"), "{text}");
    assert!(text.contains("ci=https://gitlab.example/"), "{text}");
}
