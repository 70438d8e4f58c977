//! The commands themselves: thin wrappers over the library.

use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};

use super::{
    ApplyArgs, Cli, Command, CompletionsArgs, Exit, ExportArgs, HistoryArgs, InitArgs, ListFormat,
    ManArgs, PlanArgs, PlanFormat, ShowArgs, StoreArgs, ValidateArgs, ValidateFormat, paths_or_cwd,
};
use crate::apply::{self, ApplyOptions};
use crate::load::{self, diag};
use crate::plan::{self, Plan, PlanOptions, render};
use crate::secret::{self, EmittedSecret};
use crate::store::{self, AuditEntry, LockOwner, OpenOptions, StateStore};

/// Run a parsed command line. Errors are printed here; the result is the exit status.
pub fn run(cli: Cli) -> Exit {
    // A closed stdout (`roster plan | head`) ends a read-only command
    // successfully; a command that changes things fails loudly instead, so
    // that `roster apply … | true` never exits 0 for work it did not do.
    let read_only = !matches!(
        cli.command,
        Command::Apply(_) | Command::Init(_) | Command::Import(_)
    );
    let result = match cli.command {
        Command::Validate(args) => validate(&args),
        Command::Plan(args) => plan_cmd(&args, cli.quiet),
        Command::Apply(args) => apply_cmd(&args, cli.quiet),
        Command::Show(args) => show(&args),
        Command::Import(args) => super::targets::import_cmd(&args, cli.quiet),
        Command::Export(args) => export(&args),
        Command::History(args) => history(&args),
        Command::Explain(args) => super::governance::explain_cmd(&args),
        Command::Report(args) => super::governance::report_cmd(&args),
        Command::Schema => schema(),
        Command::Init(args) => init(&args),
        Command::Completions(args) => completions(&args),
        Command::Man(args) => man(&args),
        Command::Connector(args) => super::connector::connector_cmd(&args),
    };
    match result {
        Ok(exit) => exit,
        Err(e) if read_only && is_broken_pipe(&e) => Exit::Success,
        Err(e) => {
            // No URL in any message carries user info or a query string.
            let _ = writeln!(
                std::io::stderr(),
                "error: {}",
                store::redact_urls(&format!("{e:#}"))
            );
            match e.downcast_ref::<apply::ApplyError>() {
                Some(apply::ApplyError::Interrupted { signal, .. }) => Exit::Interrupted(*signal),
                _ => Exit::Failure,
            }
        }
    }
}

/// A closed pipe (`roster plan | head`) is not an error.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

fn validate(args: &ValidateArgs) -> anyhow::Result<Exit> {
    let paths = paths_or_cwd(&args.paths);
    let result = match load::load(&paths) {
        Ok(d) if d.files == 0 && !args.allow_empty => Err(load::no_config_files(&paths)),
        other => other,
    };
    let warnings = match &result {
        Ok(desired) => load::warnings::check(desired, super::now_or_clock(args.now)),
        Err(_) => Vec::new(),
    };
    let mut out = std::io::stdout().lock();
    match (&result, args.format) {
        (Ok(_), ValidateFormat::Json) => {
            let mut v: serde_json::Value =
                serde_json::from_str(&diag::Diagnostics::default().render_json())?;
            v["warnings"] = serde_json::to_value(&warnings)?;
            writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?
        }
        (Err(d), ValidateFormat::Json) => writeln!(out, "{}", d.render_json())?,
        (Ok(desired), ValidateFormat::Text) => writeln!(
            out,
            "valid: {} users, {} groups, {} roles, {} role assignments",
            desired.users.len(),
            desired.groups.len(),
            desired.roles.len(),
            desired.assignments.len()
        )?,
        (Err(d), ValidateFormat::Text) => {
            drop(out);
            eprint!("{}", d.render_text(diag::stderr_color()));
        }
        (Ok(_), ValidateFormat::Github) => {
            for w in &warnings {
                let at = match w.place() {
                    Some((file, line, col)) => format!(
                        "file={},line={line},col={col},",
                        gh_property(repo_path(file))
                    ),
                    None => String::new(),
                };
                let subject = match &w.location {
                    Some(_) => String::new(),
                    None => format!("{}: ", w.field),
                };
                writeln!(
                    out,
                    "::warning {at}title={}::{subject}{}",
                    gh_property(&format!("roster {}", w.code)),
                    gh_data(&w.message)
                )?;
            }
        }
        (Err(d), ValidateFormat::Github) => out.write_all(github_annotations(d).as_bytes())?,
        (Ok(_), ValidateFormat::Gitlab) => writeln!(out, "[]")?,
        (Err(d), ValidateFormat::Gitlab) => writeln!(out, "{}", gitlab_code_quality(d))?,
    }
    if matches!(args.format, ValidateFormat::Text | ValidateFormat::Gitlab) {
        for w in &warnings {
            match &w.location {
                Some(at) => eprintln!("{at}: warning[{}]: {}", w.code, w.message),
                None => eprintln!("warning[{}]: {}: {}", w.code, w.field, w.message),
            }
        }
    }
    Ok(if result.is_ok() {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// Escape the message part of a GitHub workflow command (control characters
/// of config content as `\u{…}` first: the job log renders ANSI sequences).
fn gh_data(s: &str) -> String {
    crate::escape::text(s)
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escape a property value of a GitHub workflow command.
fn gh_property(s: &str) -> String {
    gh_data(s).replace(':', "%3A").replace(',', "%2C")
}

/// One `::error` workflow command per diagnostic, which GitHub Actions turns
/// into an annotation at the file, line and column (paths as given, so run
/// validate from the repository root with relative paths).
pub fn github_annotations(d: &diag::Diagnostics) -> String {
    let mut out = String::new();
    for item in &d.items {
        let mut props = vec![format!("file={}", gh_property(repo_path(&item.file)))];
        if item.line > 0 {
            props.push(format!("line={}", item.line));
            props.push(format!("col={}", item.column.max(1)));
        }
        props.push(format!(
            "title={}",
            gh_property(&format!("roster {}", item.code))
        ));
        let mut message = item.message.clone();
        if let Some(help) = &item.help {
            message.push_str(&format!(" (help: {help})"));
        }
        out.push_str(&format!(
            "::error {}::{}\n",
            props.join(","),
            gh_data(&message)
        ));
    }
    out
}

/// A path as CI annotations need it: relative to the repository root
/// (validate runs there), without a leading `./` (`./a.yaml` -> `a.yaml`).
fn repo_path(file: &str) -> &str {
    let mut f = file;
    while let Some(rest) = f.strip_prefix("./") {
        f = rest.trim_start_matches('/');
    }
    f
}

/// A GitLab Code Quality report: a JSON array of issues.
pub fn gitlab_code_quality(d: &diag::Diagnostics) -> String {
    use sha2::{Digest, Sha256};
    let issues: Vec<serde_json::Value> = d
        .items
        .iter()
        .map(|item| {
            let fingerprint = hex::encode(Sha256::digest(
                format!(
                    "{}\0{}\0{}\0{}\0{}",
                    item.file, item.line, item.column, item.code, item.message
                )
                .as_bytes(),
            ));
            serde_json::json!({
                "description": item.message,
                "check_name": item.code,
                "fingerprint": fingerprint,
                "severity": "major",
                "location": { "path": repo_path(&item.file), "lines": { "begin": item.line.max(1) } },
            })
        })
        .collect();
    serde_json::to_string_pretty(&issues).unwrap_or_else(|_| "[]".into())
}

fn init(args: &InitArgs) -> anyhow::Result<Exit> {
    let dir = args.dir.clone().unwrap_or_else(|| ".".into());
    let report = crate::init::init(&dir, args.from)?;
    let mut err = std::io::stderr().lock();
    for p in &report.created {
        writeln!(err, "created  {}", p.display())?;
    }
    if let Some(p) = &report.gitignore_appended {
        writeln!(err, "appended {}", p.display())?;
    }
    writeln!(
        err,
        "Next: roster validate {0}; roster plan {0}. See the CI usage section of roster's README for the CI setup.",
        dir.join(crate::init::CONFIG_DIR).display()
    )?;
    if report
        .created
        .iter()
        .any(|p| p.ends_with(crate::init::GITHUB_WORKFLOW_PATH))
    {
        writeln!(
            err,
            "In {}, replace OWNER in `uses: OWNER/roster@v1` with the GitHub repository that hosts roster.",
            dir.join(crate::init::GITHUB_WORKFLOW_PATH).display()
        )?;
    }
    Ok(Exit::Success)
}

fn completions(args: &CompletionsArgs) -> anyhow::Result<Exit> {
    let mut cmd = <Cli as clap::CommandFactory>::command();
    let mut out = std::io::stdout().lock();
    clap_complete::generate(args.shell, &mut cmd, "roster", &mut out);
    out.flush()?;
    Ok(Exit::Success)
}

fn man(args: &ManArgs) -> anyhow::Result<Exit> {
    let cmd = <Cli as clap::CommandFactory>::command();
    match &args.out {
        Some(dir) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cmd, dir)
                .with_context(|| format!("writing man pages to {}", dir.display()))?;
            eprintln!("Wrote the man pages to {}", dir.display());
        }
        None => {
            let mut out = std::io::stdout().lock();
            clap_mangen::Man::new(cmd).render(&mut out)?;
            out.flush()?;
        }
    }
    Ok(Exit::Success)
}

fn schema() -> anyhow::Result<Exit> {
    let text = crate::model::schema_text();
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(Exit::Success)
}

pub(super) fn open_store(args: &StoreArgs) -> anyhow::Result<Arc<dyn StateStore>> {
    let options = OpenOptions {
        allow_insecure_http: args.allow_insecure_http,
        ca_file: args.ca_file.clone(),
        client_cert: args.client_cert.clone(),
        client_key: args.client_key.clone(),
    };
    Ok(Arc::from(store::open(&args.store, &options)?))
}

/// Load the config or print its diagnostics; `None` means invalid (already
/// reported), as is finding no config file unless `allow_empty`.
pub(super) fn load_or_report(
    paths: &[std::path::PathBuf],
    allow_empty: bool,
) -> Option<crate::model::Desired> {
    let paths = paths_or_cwd(paths);
    let result = match load::load(&paths) {
        Ok(d) if d.files == 0 && !allow_empty => Err(load::no_config_files(&paths)),
        other => other,
    };
    match result {
        Ok(d) => Some(d),
        Err(diags) => {
            eprint!("{}", diags.render_text(diag::stderr_color()));
            None
        }
    }
}

/// Read the store and plan a config that is already valid: an invalid config
/// never touches the store (not even a read).
fn make_plan(
    desired: crate::model::Desired,
    store: &Arc<dyn StateStore>,
    allow_mass_removal: bool,
    adopt: &[String],
    now: i64,
    refresh: bool,
) -> anyhow::Result<(Plan, Vec<crate::target::run::Opened>)> {
    let snapshot = store
        .read()
        .with_context(|| format!("reading {}", store.info().location))?;
    let mut plan = crate::policy::schedule::plan_at(
        &desired,
        &snapshot,
        PlanOptions { allow_mass_removal },
        now,
    )?;
    plan.store = Some(store.info());
    check_adoption(&plan, adopt)?;
    let opened = super::targets::plan_targets(&mut plan, &desired, &snapshot, refresh)?;
    check_target_removals(&plan, &desired, allow_mass_removal)?;
    warn_conflicts(&plan);
    // The plan owns what it needs. The desired state and the snapshot are
    // not freed one string at a time (a fifth of a second at 100k users):
    // the process exits soon after and the OS takes the memory back whole.
    std::mem::forget(desired);
    std::mem::forget(snapshot);
    Ok((plan, opened))
}

/// The removal guard, per target: deactivating or deleting more than
/// `max_removal_fraction` of the users roster manages on one target needs
/// `--allow-mass-removal`.
fn check_target_removals(
    plan: &Plan,
    desired: &crate::model::Desired,
    allow_mass_removal: bool,
) -> anyhow::Result<()> {
    if allow_mass_removal {
        return Ok(());
    }
    let max = desired.settings.max_removal_fraction;
    for (name, t) in &plan.targets {
        let removed = t
            .steps
            .iter()
            .filter(|s| {
                s.kind == crate::target::ObjKind::User
                    && matches!(s.action, plan::Action::Deactivate | plan::Action::Delete)
                    && s.reason.is_none()
            })
            .count();
        let fraction = removed as f64 / t.managed_users.max(1) as f64;
        if removed > 0 && t.managed_users > 0 && fraction > max {
            bail!(
                "refusing to deactivate or delete {removed} users on target {name}, more than \
                 max_removal_fraction {max} of the {} it manages there: if this is intended, \
                 pass --allow-mass-removal; if not, check the config's targets",
                t.managed_users
            );
        }
    }
    Ok(())
}

/// Objects the config names that exist on a target unmanaged: said on stderr.
fn warn_conflicts(plan: &Plan) {
    for (name, t) in &plan.targets {
        if !t.conflicts.is_empty() {
            eprintln!(
                "warning: target {name} already holds {} that roster does not manage: {}. They are \
                 left as they are; to manage them, run `roster import {name}`.",
                if t.conflicts.len() == 1 {
                    "an object the config names"
                } else {
                    "objects the config names"
                },
                t.conflicts.join(", ")
            );
        }
    }
}

/// Adoption is explicit: a config entry named like a resource the store holds
/// unmanaged is an error unless `--adopt` names it (unmanaged resources are
/// never modified otherwise). An `--adopt` that matches no such resource is an
/// error too (a typo must not pass silently).
fn check_adoption(plan: &Plan, adopt: &[String]) -> anyhow::Result<()> {
    let asked = |s: &plan::Step| adopt.iter().any(|a| *a == s.address || *a == s.name);
    let unused: Vec<&str> = adopt
        .iter()
        .filter(|a| {
            !plan
                .steps
                .iter()
                .any(|s| s.adopt && (**a == s.address || **a == s.name))
        })
        .map(String::as_str)
        .collect();
    if !unused.is_empty() {
        bail!(
            "--adopt {}: no unmanaged resource of that name is in both the config and the store (the plan adopts: {})",
            unused.join(", "),
            {
                let adopting: Vec<&str> = plan
                    .steps
                    .iter()
                    .filter(|s| s.adopt)
                    .map(|s| s.address.as_str())
                    .collect();
                if adopting.is_empty() {
                    "nothing".to_string()
                } else {
                    adopting.join(", ")
                }
            }
        );
    }
    let refused: Vec<&str> = plan
        .steps
        .iter()
        .filter(|s| s.adopt && !asked(s))
        .map(|s| s.address.as_str())
        .collect();
    if !refused.is_empty() {
        let flags: Vec<String> = refused.iter().map(|a| format!("--adopt {a}")).collect();
        bail!(
            "the config names {} that the store holds but roster does not manage: {}. \
             roster never modifies an unmanaged resource unless asked: to take it over with the \
             config's values, run again with {}; otherwise rename the config entry. Nothing was changed",
            if refused.len() == 1 {
                "a resource"
            } else {
                "resources"
            },
            refused.join(", "),
            flags.join(" ")
        );
    }
    Ok(())
}

/// Protected resources the config would deactivate or delete are left as
/// they are: say so on stderr, with how to proceed (not under `-q`).
fn warn_protected(plan: &Plan, quiet: bool) {
    if quiet || plan.protected.is_empty() {
        return;
    }
    eprintln!(
        "warning: protected, left as {} {}: {}. To deactivate or delete {}, first set \
         `protected: false` in the config and apply (for a user, `protected: false` with \
         `active: false` in the same edit deactivates it), then remove it.",
        if plan.protected.len() == 1 {
            "it"
        } else {
            "they"
        },
        if plan.protected.len() == 1 {
            "is"
        } else {
            "are"
        },
        plan.protected.join(", "),
        if plan.protected.len() == 1 {
            "it"
        } else {
            "them"
        },
    );
}

fn render_plan(plan: &Plan, format: PlanFormat) -> String {
    match format {
        PlanFormat::Text => render::text(plan, diag::stdout_color()),
        PlanFormat::Markdown => render::markdown(plan),
        PlanFormat::Json => render::json(plan),
    }
}

fn plan_cmd(args: &PlanArgs, quiet: bool) -> anyhow::Result<Exit> {
    let now = super::now_or_clock(args.now);
    let Some(desired) = load_or_report(&args.paths, args.allow_empty) else {
        return Ok(Exit::Failure);
    };
    let store = open_store(&args.store)?;
    let (plan, _opened) = make_plan(
        desired,
        &store,
        args.allow_mass_removal,
        &args.adopt,
        now,
        args.refresh,
    )?;
    warn_protected(&plan, quiet);
    let saved_digest = match &args.out {
        Some(out) => {
            let body = render::json(&plan);
            std::fs::write(out, &body)
                .with_context(|| format!("writing the plan to {}", out.display()))?;
            Some(plan::verify::file_digest(body.as_bytes()))
        }
        None => None,
    };
    std::io::stdout()
        .lock()
        .write_all(render_plan(&plan, args.format).as_bytes())?;
    if let Some(out) = &args.out {
        let digest = saved_digest.unwrap_or_default();
        eprintln!(
            "Saved the plan to {}; apply it with: roster apply --plan {} --expect-digest {digest}",
            out.display(),
            out.display()
        );
        eprintln!("Plan digest: {digest}");
    }
    Ok(if args.detailed_exitcode && plan.has_changes() {
        Exit::Changes
    } else {
        Exit::Success
    })
}

/// A saved plan, checked, and the digest of the very bytes it was read from.
fn read_plan_with_digest(path: &Path) -> anyhow::Result<(Plan, String)> {
    let bytes =
        std::fs::read(path).with_context(|| format!("reading the plan {}", path.display()))?;
    let digest = plan::verify::file_digest(&bytes);
    let value: serde_json::Value = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a roster plan (invalid JSON)", path.display()))?;
    let version = value
        .get("format_version")
        .and_then(serde_json::Value::as_u64);
    if version != Some(u64::from(plan::FORMAT_VERSION)) {
        bail!(
            "{} is a plan of format_version {}, this roster reads {}",
            path.display(),
            version
                .map(|v| v.to_string())
                .unwrap_or_else(|| "(none)".into()),
            plan::FORMAT_VERSION
        );
    }
    let plan: Plan = serde_json::from_value(value)
        .with_context(|| format!("{} is not a valid roster plan", path.display()))?;
    plan::verify::check_saved(&plan).map_err(|e| {
        anyhow::anyhow!(
            "{} is not a consistent roster plan: {e}; refusing to show or apply it",
            path.display()
        )
    })?;
    Ok((plan, digest))
}

fn show(args: &ShowArgs) -> anyhow::Result<Exit> {
    let (plan, digest) = read_plan_with_digest(&args.planfile)?;
    eprintln!("Plan digest: {digest}");
    std::io::stdout()
        .lock()
        .write_all(render_plan(&plan, args.format).as_bytes())?;
    Ok(Exit::Success)
}

pub(super) fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

pub(super) fn host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Who applies, for the history: the account (`USER`, `LOGNAME`, else the
/// account of the process's uid, as in CI containers and cron where neither
/// is set) and, on GitHub Actions and GitLab CI, the CI user who started the
/// run beside it: `runner (GitHub actor octocat)`.
pub(super) fn actor() -> String {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let account = var("USER")
        .or_else(|| var("LOGNAME"))
        .or_else(uid_account)
        .unwrap_or_else(|| format!("uid {}", process_uid()));
    match (var("GITHUB_ACTOR"), var("GITLAB_USER_LOGIN")) {
        (Some(a), _) => format!("{account} (GitHub actor {a})"),
        (None, Some(a)) => format!("{account} (GitLab user {a})"),
        (None, None) => account,
    }
}

fn process_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// The name of the account of the process's uid, from the password database.
fn uid_account() -> Option<String> {
    let uid = process_uid();
    let mut buf = vec![0u8; 4096];
    // SAFETY: an all-zero passwd is a valid value to be overwritten.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut result: *mut libc::passwd = std::ptr::null_mut();
    for _ in 0..4 {
        // SAFETY: the pointers are valid for the call and buf's length is passed.
        let rc = unsafe {
            libc::getpwuid_r(
                uid,
                &mut pwd,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut result,
            )
        };
        if rc == libc::ERANGE {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success pw_name points at a NUL-terminated string in buf.
        let name = unsafe { std::ffi::CStr::from_ptr(pwd.pw_name) };
        return Some(name.to_string_lossy().into_owned()).filter(|n| !n.is_empty());
    }
    None
}

/// The CI run id from common CI environments, when present.
fn ci_run() -> Option<String> {
    let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if let (Some(server), Some(repo), Some(run)) = (
        var("GITHUB_SERVER_URL"),
        var("GITHUB_REPOSITORY"),
        var("GITHUB_RUN_ID"),
    ) {
        return Some(format!("{server}/{repo}/actions/runs/{run}"));
    }
    var("CI_PIPELINE_URL")
        .or_else(|| var("CI_JOB_URL"))
        .or_else(|| var("BUILD_URL"))
        .or_else(|| var("CIRCLE_BUILD_URL"))
        .or_else(|| var("BUILDKITE_BUILD_URL"))
}

/// Where generated secrets go, decided (and checked) before anything changes.
enum Sink {
    File {
        path: std::path::PathBuf,
        format: secret::SecretsFormat,
        recipients: Vec<age::x25519::Recipient>,
    },
    Armored {
        recipients: Vec<age::x25519::Recipient>,
        format: secret::SecretsFormat,
    },
    Terminal {
        format: secret::SecretsFormat,
    },
}

fn secrets_sink(args: &ApplyArgs) -> anyhow::Result<Option<Sink>> {
    let recipients = if args.secrets_recipient.is_empty() {
        Vec::new()
    } else {
        secret::parse_recipients(&args.secrets_recipient)?
    };
    let format = args.secrets_format;
    if let Some(path) = &args.secrets_out {
        secret::check_secrets_path(path)?;
        return Ok(Some(Sink::File {
            path: path.clone(),
            format,
            recipients,
        }));
    }
    if !recipients.is_empty() {
        return Ok(Some(Sink::Armored { recipients, format }));
    }
    if std::io::stdout().is_terminal() {
        if let Some(ci) = ci_detected()
            && !args.terminal_is_private
        {
            bail!(
                "this apply generates secrets and stdout is a terminal, but this is a CI run ({ci}): \
                 a CI terminal is recorded in the build log. Pass --secrets-out FILE and/or \
                 --secrets-recipient AGE_RECIPIENT, or --terminal-is-private if this terminal is \
                 not recorded; nothing was changed"
            );
        }
        return Ok(Some(Sink::Terminal { format }));
    }
    Ok(None)
}

/// Why this looks like a CI run: the run URL, or the variable `CI` that
/// GitHub Actions, GitLab, Buildkite, CircleCI and Travis set.
fn ci_detected() -> Option<String> {
    ci_run().or_else(|| {
        std::env::var("CI")
            .ok()
            .filter(|v| !v.is_empty() && v != "false" && v != "0")
            .map(|v| format!("CI={v}"))
    })
}

/// Write a further batch of secrets: a secrets file is replaced by one that
/// holds every secret of this apply; other sinks get the batch.
fn emit_more(
    sink: &Sink,
    so_far: &mut Vec<EmittedSecret>,
    secrets: &[EmittedSecret],
    quiet: bool,
) -> Result<(), String> {
    let copy = |s: &EmittedSecret| EmittedSecret {
        user: s.user.clone(),
        kind: s.kind,
        value: secret::Secret::new(s.value.expose().to_string()),
        generated_at: s.generated_at.clone(),
    };
    match sink {
        Sink::File {
            path,
            format,
            recipients,
        } if !so_far.is_empty() => {
            let mut all: Vec<EmittedSecret> = so_far.iter().map(copy).collect();
            all.extend(secrets.iter().map(copy));
            let text = secret::render_secrets(&all, *format);
            let bytes = if recipients.is_empty() {
                text
            } else {
                secret::encrypt_armored(text.as_bytes(), recipients).map_err(|e| e.to_string())?
            };
            secret::replace_secrets_file(path, bytes.as_bytes()).map_err(|e| e.to_string())?;
            if !quiet {
                eprintln!(
                    "Wrote {} more secret(s) to {} (now {}).",
                    secrets.len(),
                    path.display(),
                    all.len()
                );
            }
            *so_far = all;
            Ok(())
        }
        _ => {
            emit(sink, secrets, quiet)?;
            so_far.extend(secrets.iter().map(copy));
            Ok(())
        }
    }
}

/// Write the secrets to their sink; `quiet` (`-q`: errors only) leaves out
/// the line that says where they went.
fn emit(sink: &Sink, secrets: &[EmittedSecret], quiet: bool) -> Result<(), String> {
    match sink {
        Sink::File {
            path,
            format,
            recipients,
        } => {
            let text = secret::render_secrets(secrets, *format);
            let bytes = if recipients.is_empty() {
                text
            } else {
                secret::encrypt_armored(text.as_bytes(), recipients).map_err(|e| e.to_string())?
            };
            secret::write_secrets_file(path, bytes.as_bytes()).map_err(|e| e.to_string())?;
            if !quiet {
                eprintln!(
                    "Wrote {} new secret(s) to {} (mode 0600).",
                    secrets.len(),
                    path.display()
                );
            }
            Ok(())
        }
        Sink::Armored { recipients, format } => {
            let text = secret::render_secrets(secrets, *format);
            let armored =
                secret::encrypt_armored(text.as_bytes(), recipients).map_err(|e| e.to_string())?;
            let mut out = std::io::stdout().lock();
            out.write_all(armored.as_bytes())
                .and_then(|_| out.flush())
                .map_err(|e| e.to_string())
        }
        Sink::Terminal { format } => {
            let text = secret::render_secrets(secrets, *format);
            let mut out = std::io::stdout().lock();
            let banner =
                "==== roster: new secrets: shown once, they will not be shown again ====\n";
            out.write_all(banner.as_bytes())
                .and_then(|_| out.write_all(text.as_bytes()))
                .and_then(|_| out.write_all(b"==== end of secrets ====\n"))
                .and_then(|_| out.flush())
                .map_err(|e| e.to_string())
        }
    }
}

fn confirm() -> anyhow::Result<bool> {
    eprint!("Apply these changes? Only 'yes' is accepted: ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}

fn apply_cmd(args: &ApplyArgs, quiet: bool) -> anyhow::Result<Exit> {
    // The config first: an invalid one never opens, locks or reads the store.
    enum Source<'a> {
        Saved(&'a Path),
        Config(Box<crate::model::Desired>),
    }
    let source = match &args.plan {
        Some(path) => Source::Saved(path),
        None => match load_or_report(&args.paths, args.allow_empty) {
            Some(d) => Source::Config(Box::new(d)),
            None => return Ok(Exit::Failure),
        },
    };
    let store = open_store(&args.store)?;
    // `--now` stands for the clock everywhere in this apply (plan, timestamps).
    let now = args
        .now
        .map(crate::policy::time::format)
        .unwrap_or_else(now_rfc3339);
    let owner = LockOwner {
        pid: std::process::id(),
        host: host(),
        since: now.clone(),
    };
    // Applying a config: plan under the lock, so that an apply that waited
    // for another one plans against its result instead of failing as stale.
    // A saved plan is applied exactly (and refused when stale).
    // A saved plan is checked against the targets under the lock too.
    let lock = store.lock(&owner, args.lock_timeout)?;
    let mut opened = Vec::new();
    let plan = match source {
        Source::Saved(path) => {
            let (plan, found) = read_plan_with_digest(path)?;
            if let Some(expected) = &args.expect_digest {
                let normalized = |d: &str| d.trim().trim_start_matches("sha256:").to_lowercase();
                if normalized(expected) != normalized(&found) {
                    bail!(
                        "the plan {} has digest {found}, not the expected {}: it is not the \
                         reviewed plan; nothing was changed",
                        path.display(),
                        expected.trim()
                    );
                }
            }
            let info = store.info();
            if let Some(made_for) = &plan.store
                && made_for.location != info.location
            {
                bail!(
                    "the plan was made for store {}, not {}",
                    made_for.location,
                    info.location
                );
            }
            if !plan.targets.is_empty() && plan.has_changes() {
                let snapshot = store.read()?;
                opened = super::targets::open_for_saved(&plan, &snapshot)?;
            }
            plan
        }
        Source::Config(desired) => {
            let now = super::now_or_clock(args.now);
            let (plan, o) = make_plan(
                *desired,
                &store,
                args.allow_mass_removal,
                &args.adopt,
                now,
                true,
            )?;
            opened = o;
            plan
        }
    };
    warn_protected(&plan, quiet);
    let mut out = std::io::stdout().lock();
    if !plan.has_changes() {
        writeln!(out, "{}", render::summary_line(&plan))?;
        return Ok(Exit::Success);
    }
    if plan.summary.secrets > 0 && args.secrets_format == secret::SecretsFormat::Env {
        let users = plan
            .steps
            .iter()
            .filter(|s| s.kind == crate::model::Kind::User)
            .flat_map(|s| s.generate.iter().map(move |k| (s.name.clone(), *k)))
            .chain(plan.targets.iter().flat_map(|(t, tp)| {
                tp.steps.iter().flat_map(move |s| {
                    s.generate_secret
                        .iter()
                        .map(move |k| (format!("{}@{t}", s.key), *k))
                })
            }))
            .collect::<Vec<_>>();
        secret::check_env_names(users.iter().map(|(u, k)| (u.as_str(), *k)))
            .map_err(|e| anyhow::anyhow!("--secrets-format env: {e}; nothing was changed"))?;
    }
    let sink = if plan.summary.secrets > 0 {
        match secrets_sink(args)? {
            Some(s) => Some(s),
            None => bail!(
                "this apply generates {} secret(s) and stdout is not a terminal: refusing to print them into a log. \
                 Pass --secrets-out FILE (a new 0600 file) and/or --secrets-recipient AGE_RECIPIENT (encrypted); nothing was changed",
                plan.summary.secrets
            ),
        }
    } else {
        None
    };
    // The plan is shown before the prompt (and with --yes, for the log),
    // a saved plan included: what is confirmed is what is applied. `-q` with
    // `--yes` asked for errors only: no prompt, so no plan.
    if quiet && args.yes {
        drop(out);
    } else if matches!(sink, Some(Sink::Armored { .. })) {
        // stdout carries the armored secrets alone.
        drop(out);
        eprint!("{}", render::text(&plan, diag::stderr_color()));
    } else {
        out.write_all(render::text(&plan, diag::stdout_color()).as_bytes())
            .and_then(|_| out.flush())
            .context("writing the plan to stdout; nothing was changed")?;
        drop(out);
    }
    if !args.yes {
        if !std::io::stdin().is_terminal() {
            bail!("not a terminal: pass --yes to apply without confirmation; nothing was changed");
        }
        if !confirm()? {
            eprintln!("Apply cancelled; nothing was changed.");
            return Ok(Exit::Failure);
        }
    }
    let audit = AuditEntry {
        serial: 0,
        at: now.clone(),
        user: actor(),
        host: owner.host.clone(),
        ci_run: ci_run(),
        plan_digest: plan::plan_digest(&plan),
        // The entry is committed with the changes, before their outcomes are
        // known: file and etcd commit all changes or none, so this is exact
        // for them; a SCIM store can fail single changes, and then a second
        // entry with the real counts follows (see `record_partial_failure`).
        outcome: outcome_text(plan.steps.len(), 0),
    };
    let options = ApplyOptions {
        owner,
        lock_timeout: args.lock_timeout,
        now,
        audit: Some(audit),
    };
    // Secrets may arrive in two batches (roster's, then those targets
    // generate): a secrets file then holds both (replaced atomically).
    let mut so_far: Vec<EmittedSecret> = Vec::new();
    let mut emitter = |secrets: &[EmittedSecret]| match &sink {
        Some(s) => emit_more(s, &mut so_far, secrets, quiet),
        None => Err("no destination for secrets".to_string()),
    };
    // Only now (after the confirmation prompt): SIGINT/SIGTERM stop the apply
    // at its next cancellation point instead of killing it mid-way.
    crate::signal::install().context("installing the SIGINT/SIGTERM handler")?;
    let reporter = crate::progress::Reporter::new(crate::progress::Mode::for_stderr(quiet));
    let on_progress =
        |stage: &'static str, done: usize, total: usize| reporter.update(stage, done, total);
    let idem_base = plan::plan_digest(&plan);
    let result = apply::apply_state(
        store.as_ref(),
        lock.as_ref(),
        &plan,
        &options,
        &mut emitter,
        &on_progress,
        &mut |snapshot| crate::target::run::intents(&plan, snapshot, &opened, &options.now),
    );
    reporter.finish();
    let (mut report, secrets, snapshot) = result?;
    if !opened.is_empty() {
        crate::signal::interrupted()
            .map_or(Ok(()), |signal| {
                Err(apply::ApplyError::Interrupted {
                    signal,
                    stage: "after the state commit, before writing to the targets (the next apply sends what is left)",
                })
            })?;
        let emit_lock = std::sync::Mutex::new(&mut emitter as &mut crate::target::run::Emitter<'_>);
        // Roster's records of the targets now include this apply's intents.
        let snapshot = store.read().unwrap_or(snapshot);
        let done = crate::target::run::apply_targets(
            &opened,
            &plan,
            &snapshot,
            &secrets,
            &emit_lock,
            &plan.secret_policy.argon2,
            &options.now,
            &idem_base,
        );
        drop(secrets);
        let failed = done.outcomes.iter().filter(|o| o.error.is_some()).count();
        let commit = store.commit(
            lock.as_ref(),
            store::ChangeSet {
                base: report.version.clone(),
                changes: done.changes,
                at: options.now.clone(),
                audit: Some(AuditEntry {
                    outcome: format!(
                        "targets: {}",
                        outcome_text(done.outcomes.len() - failed, failed)
                    ),
                    ..options.audit.clone().unwrap_or_default()
                }),
            },
        );
        report.secrets_emitted += done.secrets_emitted;
        report.outcomes.extend(done.outcomes);
        match commit {
            Ok(r) => report.version = r.version,
            Err(e) => {
                drop(lock);
                for o in &report.outcomes {
                    if let Some(err) = &o.error {
                        eprintln!("  FAILED  {}: {err}", o.address);
                    }
                }
                bail!(
                    "the targets were written, but recording what they hold in the state failed: {e}. \
                     The next plan reads the targets and converges"
                );
            }
        }
    } else {
        drop(secrets);
    }
    // Released before recording a partial failure, which takes the lock again.
    drop(lock);
    if report.failed() > 0 {
        record_partial_failure(store.as_ref(), &options, &report);
    }
    // `-q`: errors only (the failed changes), no `ok` lines and no summary.
    let mut err = std::io::stderr().lock();
    for o in &report.outcomes {
        match &o.error {
            None if quiet => {}
            None => writeln!(err, "  ok      {}", o.address)?,
            Some(e) => writeln!(err, "  FAILED  {}: {e}", o.address)?,
        }
    }
    let failed = report.failed();
    if quiet {
        return Ok(if failed > 0 {
            Exit::Failure
        } else {
            Exit::Success
        });
    }
    writeln!(
        err,
        "Apply complete: {} applied, {failed} failed, {} secret(s) generated. Store now at serial {}.",
        report.outcomes.len() - failed,
        report.secrets_emitted,
        report.version.serial
    )?;
    Ok(if failed > 0 {
        Exit::Failure
    } else {
        Exit::Success
    })
}

/// The audit entry's outcome: `applied N, failed M`.
fn outcome_text(applied: usize, failed: usize) -> String {
    format!("applied {applied}, failed {failed}")
}

/// Some changes failed after the audit entry (which assumed none would) was
/// committed: record a second entry, with no changes, carrying the real
/// counts. Best effort: a failure here is logged, the apply's result stands.
fn record_partial_failure(
    store: &dyn StateStore,
    options: &ApplyOptions,
    report: &apply::ApplyReport,
) {
    let Some(first) = &options.audit else {
        return;
    };
    let failed = report.failed();
    let mut audit = first.clone();
    audit.at = now_rfc3339();
    audit.outcome = format!(
        "{} (corrects serial {})",
        outcome_text(report.outcomes.len() - failed, failed),
        report.version.serial
    );
    let result = store
        .lock(&options.owner, options.lock_timeout)
        .and_then(|lock| {
            store.commit(
                lock.as_ref(),
                store::ChangeSet {
                    base: report.version.clone(),
                    changes: Vec::new(),
                    at: audit.at.clone(),
                    audit: Some(audit),
                },
            )
        });
    if let Err(e) = result {
        tracing::warn!("could not record the apply's failures in the history: {e}");
    }
}

fn export(args: &ExportArgs) -> anyhow::Result<Exit> {
    let store = open_store(&args.store)?;
    let snapshot = store
        .read()
        .with_context(|| format!("reading {}", store.info().location))?;
    let text = crate::export::to_yaml(&snapshot)?;
    std::io::stdout().lock().write_all(text.as_bytes())?;
    Ok(Exit::Success)
}

fn history(args: &HistoryArgs) -> anyhow::Result<Exit> {
    let store = open_store(&args.store)?;
    let entries = store.history()?;
    let mut out = std::io::stdout().lock();
    match args.format {
        ListFormat::Json => writeln!(out, "{}", serde_json::to_string_pretty(&entries)?)?,
        ListFormat::Text => {
            if entries.is_empty() {
                writeln!(out, "No applies recorded.")?;
            }
            for e in &entries {
                let ci = e
                    .ci_run
                    .as_deref()
                    .map(|c| format!(" ci={c}"))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "serial {:>5}  {}  {}@{}{ci}  {}  plan {}",
                    e.serial,
                    e.at,
                    e.user,
                    e.host,
                    e.outcome,
                    e.plan_digest.chars().take(12).collect::<String>()
                )?;
            }
        }
    }
    Ok(Exit::Success)
}
