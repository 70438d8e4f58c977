//! `roster report access` end to end: goldens for the three bundled examples
//! in every format (against a store the example was applied to, at a fixed
//! `--now`), the summaries, CSV safety, no secret or hash in any output, and
//! the HTML page in a real headless Chromium (Debian's `chromium`, installed
//! by `scripts/test.sh`): it loads without a console error, filtering a name
//! hides the other rows, sorting works, and a screenshot is not blank.
//!
//! Regenerate the goldens with `BLESS=1 cargo test --test report_access`
//! and review the diff.

#[path = "common/cli.rs"]
mod cli;
use cli::{code, copy_example, roster, stderr, stdout};

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const EXAMPLES: [&str; 3] = ["avanti", "iris-hr", "avaamo"];
const FORMATS: [(&str, &str); 4] = [
    ("html", "html"),
    ("csv", "csv"),
    ("json", "json"),
    ("markdown", "md"),
];
const APPLIED: &str = "2026-01-01T08:00:00Z";
const REVIEWED: &str = "2026-04-01T09:00:00Z";

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/report")
}

/// The example applied at `APPLIED` to a file store in a temporary directory.
/// Returns the directory, the store's lineage and the secrets generated.
fn applied(example: &str) -> (tempfile::TempDir, String, Vec<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_example(example, &dir.path().join("config"));
    let out = roster(
        dir.path(),
        &[
            "apply",
            "config",
            "--store",
            "file:state.json",
            "--yes",
            "--now",
            APPLIED,
            "--secrets-out",
            "secrets.json",
        ],
    );
    assert_eq!(code(&out), 0, "{example}: {}", stderr(&out));
    let state: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(dir.path().join("state.json")).expect("state"))
            .expect("state JSON");
    let lineage = state["lineage"].as_str().expect("lineage").to_string();
    let secrets: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(dir.path().join("secrets.json")).expect("secrets"),
    )
    .expect("secrets JSON");
    let values = secrets["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .map(|s| s["value"].as_str().expect("value").to_string())
        .collect();
    (dir, lineage, values)
}

fn report(dir: &Path, format: &str) -> String {
    let out = roster(
        dir,
        &[
            "report",
            "access",
            "config",
            "--store",
            "file:state.json",
            "--now",
            REVIEWED,
            "--format",
            format,
        ],
    );
    assert_eq!(code(&out), 0, "{format}: {}", stderr(&out));
    stdout(&out)
}

fn assert_no_secret(text: &str, secrets: &[String], what: &str) {
    assert!(!text.contains("$argon2"), "{what}: a hash in the report");
    for s in secrets {
        assert!(!text.contains(s.as_str()), "{what}: a secret in the report");
    }
}

#[test]
fn example_reports_match_their_golden_files_in_every_format() {
    let bless = std::env::var_os("BLESS").is_some_and(|v| v == "1");
    let mut failures = Vec::new();
    for example in EXAMPLES {
        let (dir, lineage, secrets) = applied(example);
        assert!(!secrets.is_empty(), "{example}: no secrets generated");
        for (format, ext) in FORMATS {
            let text = report(dir.path(), format).replace(&lineage, "LINEAGE");
            assert_no_secret(&text, &secrets, &format!("{example}.{ext}"));
            let path = golden_dir().join(format!("{example}.{ext}"));
            if bless {
                fs::create_dir_all(golden_dir()).expect("golden dir");
                fs::write(&path, &text).expect("write golden");
                continue;
            }
            match fs::read_to_string(&path) {
                Ok(expected) if expected == text => {}
                Ok(expected) => failures.push(format!(
                    "{}: differs\n--- expected\n{expected}\n--- actual\n{text}",
                    path.display()
                )),
                Err(e) => failures.push(format!("{}: {e} (BLESS=1 creates it)", path.display())),
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The fields of an RFC 4180 document (CRLF records, quoted fields).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let mut record = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') => {
                assert_eq!(
                    chars.next(),
                    Some('\n'),
                    "a CR outside quotes must start CRLF"
                );
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, '\n') => panic!("a bare LF outside quotes"),
            (false, c) => field.push(c),
        }
    }
    assert!(
        field.is_empty() && record.is_empty(),
        "the last record lacks CRLF"
    );
    records
}

/// A config whose names try to inject formulas and markup, with a user the
/// config deactivated that the state still holds active with a secret, and a
/// secret past its age.
fn hostile() -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    fs::create_dir(d.join("config")).expect("mkdir");
    let config = |leaver_active: bool| {
        format!(
            r#"settings:
  max_secret_age_days: 60
  max_removal_fraction: 1.0
  argon2: {{ memory_kib: 8192, iterations: 1, parallelism: 1 }}
roles:
  payroll-admin:
    permissions: [payroll.read, payroll.write]
groups:
  payroll-team:
    roles: [payroll-admin]
    companies: [ACME]
users:
  formula:
    display_name: "=HYPERLINK(\"http://evil.example\",\"x\")"
    email: formula@acme.example
    groups: [payroll-team]
    credentials: {{ password: true }}
  markup:
    display_name: "<script>document.body.setAttribute('data-pwned','1')</script>, \"quoted\""
    set_rights: {{ bank: full }}
    credentials: {{ token: true, max_age_days: 200 }}
  leaver:
    display_name: "-Leaver @corp"
    active: {leaver_active}
    roles: [payroll-admin]
    credentials: {{ password: true }}
policies:
  - name: bank-read-only
    description: No bank writes
    forbid: {{ area: bank, level: write }}
    except: {{ users: [markup] }}
"#
        )
    };
    fs::write(d.join("config/c.yaml"), config(true)).expect("write");
    let out = roster(
        d,
        &[
            "apply",
            "config",
            "--store",
            "file:state.json",
            "--yes",
            "--now",
            APPLIED,
            "--secrets-out",
            "secrets.json",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    fs::write(d.join("config/c.yaml"), config(false)).expect("write");
    let secrets: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(d.join("secrets.json")).expect("secrets"))
            .expect("secrets JSON");
    let values = secrets["secrets"]
        .as_array()
        .expect("secrets")
        .iter()
        .map(|s| s["value"].as_str().expect("value").to_string())
        .collect();
    (dir, values)
}

#[test]
fn csv_is_rfc4180_and_guarded_against_formula_injection() {
    let (dir, secrets) = hostile();
    let text = report(dir.path(), "csv");
    assert_no_secret(&text, &secrets, "csv");
    let records = parse_csv(&text);
    assert_eq!(records[0][0], "user");
    assert_eq!(records[0].len(), 15);
    assert!(records.iter().all(|r| r.len() == 15), "{records:?}");
    for r in &records[1..] {
        for cell in r {
            assert!(
                !cell.starts_with(['=', '+', '-', '@', '\t', '\r']),
                "an unguarded cell: {cell:?}"
            );
        }
    }
    let formula: Vec<&Vec<String>> = records.iter().filter(|r| r[0] == "formula").collect();
    assert_eq!(
        formula.len(),
        2,
        "payroll.read and payroll.write: {formula:?}"
    );
    assert_eq!(formula[0][1], "'=HYPERLINK(\"http://evil.example\",\"x\")");
    assert_eq!(formula[1][7], "payroll.write");
    assert_eq!(
        formula[1][9],
        "group payroll-team (companies ACME) → role payroll-admin"
    );
    assert_eq!(formula[1][10], "password");
    assert_eq!(formula[1][11], "90");
    let leaver = records
        .iter()
        .find(|r| r[0] == "leaver")
        .expect("leaver row");
    assert_eq!(leaver[1], "'-Leaver @corp");
    assert_eq!((leaver[2].as_str(), leaver[6].as_str()), ("false", "none"));
}

#[test]
fn summaries_name_inactive_holders_old_secrets_and_sensitive_access() {
    let (dir, secrets) = hostile();
    let text = report(dir.path(), "json");
    assert_no_secret(&text, &secrets, "json");
    let v: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(v["generated_at"], REVIEWED);
    assert_eq!(v["state_serial"], 1);
    let s = &v["summaries"];
    assert_eq!(
        s["users_per_role"]["payroll-admin"],
        serde_json::json!(["formula"])
    );
    assert_eq!(s["sensitive"]["bank: full"], serde_json::json!(["markup"]));
    assert_eq!(
        s["inactive_with_access"],
        serde_json::json!([{"user": "leaver", "holds": ["active", "password", "roles payroll-admin"]}])
    );
    // formula: 90 days old, limit 60 (settings); markup: its own 200-day limit.
    assert_eq!(
        s["secrets_past_age"],
        serde_json::json!([{"user": "formula", "age_days": 90, "max_age_days": 60, "last_rotation": APPLIED}])
    );
    let md = report(dir.path(), "markdown");
    assert_no_secret(&md, &secrets, "markdown");
    assert!(
        md.contains("- leaver: active; password; roles payroll-admin"),
        "{md}"
    );
    assert!(md.contains("\\<script\\>"), "{md}");
    assert!(!md.contains("<script>"), "{md}");
}

/// Debian's chromium, or `ROSTER_CHROMIUM`.
fn chromium() -> PathBuf {
    if let Some(p) = std::env::var_os("ROSTER_CHROMIUM") {
        return PathBuf::from(p);
    }
    for p in ["/usr/bin/chromium", "/usr/bin/chromium-browser"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!(
        "chromium is not installed: run scripts/test.sh (it installs Debian's chromium) or set ROSTER_CHROMIUM"
    );
}

/// Run headless chromium with `args` in its own process group; wait at most
/// 90 s; stop the whole group (only it) afterwards. Returns (stdout, stderr).
fn run_chromium(profile: &Path, args: &[&str]) -> (String, String) {
    let mut cmd = Command::new(chromium());
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(args)
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .process_group(0);
    let mut child = cmd.spawn().expect("start chromium");
    let pgid = child.id() as i32;
    let out = child.stdout.take().expect("stdout");
    let err = child.stderr.take().expect("stderr");
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = r.read_to_string(&mut s);
            s
        })
    };
    let (out, err) = (read(Box::new(out)), read(Box::new(err)));
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait chromium") {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    // SAFETY: kill(2) on the process group this test created (pgid = the child's pid).
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let _ = child.wait();
    let (out, err) = (out.join().expect("stdout"), err.join().expect("stderr"));
    assert!(
        status.is_some(),
        "chromium did not finish within 90 s: {err}"
    );
    (out, err)
}

fn console_messages(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| l.contains(":CONSOLE")).collect()
}

/// Rows of a dumped table: (data-user, hidden).
fn rows(dom: &str) -> Vec<(String, bool)> {
    dom.split("<tr data-user=\"")
        .skip(1)
        .map(|rest| {
            let user = rest.split('"').next().expect("user").to_string();
            let tag = rest.split('>').next().expect("tag");
            (user, tag.contains("hidden"))
        })
        .collect()
}

/// Decode the PNG (8-bit RGB/RGBA, as chromium writes it) with Python's
/// standard library and return (distinct colours, share of pixels that
/// differ from the most common colour).
fn png_stats(path: &Path) -> (usize, f64) {
    let script = r#"
import struct, sys, zlib
data = open(sys.argv[1], 'rb').read()
assert data[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
pos, idat = 8, b''
while pos < len(data):
    n, kind = struct.unpack('>I4s', data[pos:pos+8])
    body = data[pos+8:pos+8+n]
    if kind == b'IHDR':
        w, h, depth, ctype, _, _, interlace = struct.unpack('>IIBBBBB', body)
    elif kind == b'IDAT':
        idat += body
    pos += 12 + n
assert depth == 8 and ctype in (2, 6) and interlace == 0, (depth, ctype, interlace)
bpp = 3 if ctype == 2 else 4
raw = zlib.decompress(idat)
stride = w * bpp
prev = bytearray(stride)
counts = {}
for y in range(h):
    f = raw[y*(stride+1)]
    line = bytearray(raw[y*(stride+1)+1:(y+1)*(stride+1)])
    for i in range(stride):
        a = line[i-bpp] if i >= bpp else 0
        b = prev[i]
        c = prev[i-bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p-a), abs(p-b), abs(p-c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    for x in range(0, stride, bpp):
        px = bytes(line[x:x+3])
        counts[px] = counts.get(px, 0) + 1
    prev = line
total = w * h
print(len(counts), 1 - max(counts.values()) / total)
"#;
    let out = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(path)
        .output()
        .expect("python3 runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut parts = text.split_whitespace();
    let colours = parts.next().expect("colours").parse().expect("a count");
    let share = parts.next().expect("share").parse().expect("a share");
    (colours, share)
}

#[test]
fn the_html_report_works_in_headless_chromium() {
    let (dir, secrets) = hostile();
    let d = dir.path();
    let out = roster(
        d,
        &[
            "report",
            "access",
            "config",
            "--store",
            "file:state.json",
            "--now",
            REVIEWED,
            "--out",
            "review.html",
        ],
    );
    assert_eq!(code(&out), 0, "{}", stderr(&out));
    assert!(stdout(&out).is_empty());
    let html = fs::read_to_string(d.join("review.html")).expect("review.html");
    assert_no_secret(&html, &secrets, "html");
    // Self-contained: nothing fetched from anywhere.
    for needle in ["http://", "https://", "src=", "<link", "@import", "url("] {
        let n = html.matches(needle).count();
        let allowed = if needle == "http://" { 2 } else { 0 }; // the hostile name, escaped, in two cells
        assert!(n <= allowed, "{needle} appears {n} times");
    }
    let page = format!("file://{}", d.join("review.html").display());

    // Loads without a console error; the injected markup stayed text.
    let (dom, err) = run_chromium(
        &d.join("profile-1"),
        &["--virtual-time-budget=5000", "--dump-dom", &page],
    );
    assert!(
        console_messages(&err).is_empty(),
        "console: {:?}",
        console_messages(&err)
    );
    assert!(
        dom.contains("data-ready=\"1\""),
        "the page script did not finish: {dom}"
    );
    assert!(dom.contains("data-errors=\"0\""), "{dom}");
    let body = dom
        .split("<body")
        .nth(1)
        .and_then(|b| b.split('>').next())
        .expect("a body tag");
    assert!(
        !body.contains("data-pwned"),
        "the display name ran as a script: {body}"
    );
    assert!(
        dom.contains("&lt;script&gt;document.body.setAttribute"),
        "{dom}"
    );
    assert!(
        dom.contains("Made <time datetime=\"2026-04-01T09:00:00Z\">"),
        "{dom}"
    );
    assert!(
        dom.contains("state serial <strong id=\"serial\">1</strong>"),
        "{dom}"
    );
    let all = rows(&dom);
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(all.iter().all(|(_, hidden)| !hidden), "{all:?}");
    assert!(dom.contains("4 of 4 rows"), "{dom}");

    // Filtering a name hides the other rows.
    let (dom, err) = run_chromium(
        &d.join("profile-2"),
        &[
            "--virtual-time-budget=5000",
            "--dump-dom",
            &format!("{page}#q=formula"),
        ],
    );
    assert!(
        console_messages(&err).is_empty(),
        "console: {:?}",
        console_messages(&err)
    );
    let filtered = rows(&dom);
    assert_eq!(filtered.len(), 4);
    for (user, hidden) in &filtered {
        assert_eq!(*hidden, user != "formula", "{user}: {filtered:?}");
    }
    assert!(dom.contains("2 of 4 rows"), "{dom}");

    // Sorting by a column reorders the rows.
    let (dom, _) = run_chromium(
        &d.join("profile-3"),
        &[
            "--virtual-time-budget=5000",
            "--dump-dom",
            &format!("{page}#sort=user:descending"),
        ],
    );
    let order: Vec<String> = rows(&dom).into_iter().map(|(u, _)| u).collect();
    assert_eq!(
        order,
        ["markup", "leaver", "formula", "formula"],
        "{order:?}"
    );
    assert!(
        dom.contains("data-column=\"user\" aria-sort=\"descending\""),
        "{dom}"
    );

    // A screenshot that is not blank.
    let shot = d.join("review.png");
    let (_, err) = run_chromium(
        &d.join("profile-4"),
        &[
            "--window-size=1280,900",
            &format!("--screenshot={}", shot.display()),
            &page,
        ],
    );
    assert!(shot.exists(), "no screenshot: {err}");
    let (colours, share) = png_stats(&shot);
    assert!(colours >= 16, "{colours} colours: blank?");
    assert!(
        share > 0.02,
        "only {share} of the pixels differ from the background"
    );
}
