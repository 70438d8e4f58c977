//! Loading: config files -> a validated [`Desired`], or every problem found,
//! each located at file:line:column.
//!
//! Steps: collect files (directories recursively, `*.yaml`/`*.yml`, sorted,
//! hidden entries skipped) -> parse YAML to JSON -> JSON Schema validation ->
//! typed entries -> semantic checks (references, uniqueness, limits, cycles)
//! -> template resolution. Every step collects all its errors; none stops the
//! others. Positions are computed only for files that have something to
//! report. No writes, no network.

pub mod diag;
mod governance;
pub mod schema;
pub mod warnings;
pub mod yaml;

use std::cell::OnceCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::model::{
    AssignmentSpec, Authentication, CredentialSpec, Desired, Group, GroupSpec, Policy, Role,
    RoleAssignment, RoleSpec, Settings, Subject, TargetConfig, TargetDecl, Template, User,
    UserSpec,
};
pub use diag::{Diagnostic, Diagnostics, Related};
use schema::Fix;
use yaml::{Pos, SpanTree};

/// A JSON pointer as tokens.
type Ptr = Vec<String>;

macro_rules! ptr {
    ($($t:expr),* $(,)?) => { vec![$($t.to_string()),*] };
}

struct Source {
    name: String,
    text: String,
    spans: OnceCell<SpanTree>,
}

/// A problem found, before its position is looked up.
struct Pending {
    file: usize,
    ptr: Ptr,
    key: bool,
    code: &'static str,
    message: String,
    help: Option<String>,
    related: Vec<(usize, Ptr, bool, String)>,
}

#[derive(Default)]
struct Ctx {
    sources: Vec<Source>,
    pending: Vec<Pending>,
    unlocated: Vec<Diagnostic>,
    skip_policy_check: bool,
}

impl Ctx {
    fn err(
        &mut self,
        file: usize,
        ptr: Ptr,
        key: bool,
        code: &'static str,
        message: String,
    ) -> &mut Pending {
        self.pending.push(Pending {
            file,
            ptr,
            key,
            code,
            message,
            help: None,
            related: Vec::new(),
        });
        self.pending.last_mut().expect("just pushed")
    }

    fn file_err(&mut self, file: &str, code: &'static str, message: String) {
        self.unlocated.push(Diagnostic {
            file: file.to_string(),
            line: 0,
            column: 0,
            message,
            code,
            help: None,
            related: Vec::new(),
        });
    }

    fn pos(&self, file: usize, ptr: &[String], key: bool) -> Pos {
        let s = &self.sources[file];
        s.spans
            .get_or_init(|| SpanTree::build(&s.text))
            .locate(ptr, key)
    }

    fn finish(self) -> Diagnostics {
        let mut out = Diagnostics::default();
        for p in &self.pending {
            let pos = self.pos(p.file, &p.ptr, p.key);
            let related = p
                .related
                .iter()
                .map(|(f, ptr, key, msg)| {
                    let pos = self.pos(*f, ptr, *key);
                    Related {
                        file: self.sources[*f].name.clone(),
                        line: pos.line,
                        column: pos.column,
                        message: msg.clone(),
                    }
                })
                .collect();
            out.items.push(Diagnostic {
                file: self.sources[p.file].name.clone(),
                line: pos.line,
                column: pos.column,
                message: p.message.clone(),
                code: p.code,
                help: p.help.clone(),
                related,
            });
        }
        out.items.extend(self.unlocated);
        let used: BTreeSet<&str> = out
            .items
            .iter()
            .map(|d| d.file.as_str())
            .collect::<BTreeSet<_>>();
        let sources = self
            .sources
            .into_iter()
            .filter(|s| used.contains(s.name.as_str()))
            .map(|s| (s.name, s.text))
            .collect();
        out.sources = sources;
        out.sort();
        out
    }
}

/// Where a named definition came from.
struct Def<T> {
    file: usize,
    ptr: Ptr,
    /// `None` when the entry could not be read at all (its name still counts as defined).
    value: Option<T>,
    /// The parts of the entry left out because they failed the schema, as
    /// paths (`credentials/rotation`): checks that need one of them do
    /// not run (no wrong errors).
    dropped: BTreeSet<String>,
}

#[derive(Default)]
struct Raw {
    settings: Option<(usize, Settings)>,
    templates: BTreeMap<String, Def<Template>>,
    roles: BTreeMap<String, Def<Role>>,
    groups: BTreeMap<String, Def<Group>>,
    users: BTreeMap<String, Def<User>>,
    assignments: Vec<Def<RoleAssignment>>,
    policies: Vec<Def<Policy>>,
    targets: BTreeMap<String, Def<TargetDecl>>,
}

/// Load and validate the config at `paths` (files and/or directories).
pub fn load(paths: &[PathBuf]) -> Result<Desired, Diagnostics> {
    load_with(paths, true)
}

/// Load and validate the config, but do not evaluate its policies (the
/// policies themselves are still checked), and keep which template each user
/// extends: for `roster explain` and the access report, which show *why* a
/// policy fires.
pub fn load_without_policy_check(paths: &[PathBuf]) -> Result<Desired, Diagnostics> {
    load_with(paths, false)
}

fn load_with(paths: &[PathBuf], evaluate_policies: bool) -> Result<Desired, Diagnostics> {
    let mut ctx = Ctx {
        skip_policy_check: !evaluate_policies,
        ..Ctx::default()
    };
    let files = collect_files(paths, &mut ctx);
    let mut hasher = Sha256::new();
    let mut raw = Raw::default();
    for (name, path) in files {
        let Some(text) = read_text(&name, &path, &mut ctx) else {
            continue;
        };
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(text.as_bytes());
        hasher.update([0]);
        let idx = ctx.sources.len();
        let parsed = yaml::parse(&text);
        ctx.sources.push(Source {
            name,
            text,
            spans: OnceCell::new(),
        });
        let parsed = match parsed {
            Err(e) if e.duplicate => {
                report_duplicate_keys(idx, &mut ctx);
                yaml::parse_first_wins(&ctx.sources[idx].text)
            }
            other => other,
        };
        match parsed {
            // Check and take each file's entries before reading the next, so
            // that only one file's JSON is held at a time (peak memory).
            Ok(value) => {
                let fixes = schema::validate(&value, idx, &mut ctx);
                collect_entries(idx, value, &fixes, &mut raw, &mut ctx);
            }
            Err(e) => {
                let name = ctx.sources[idx].name.clone();
                ctx.unlocated.push(Diagnostic {
                    file: name,
                    line: e.pos.line,
                    column: e.pos.column,
                    message: e.message,
                    code: "yaml.syntax",
                    help: None,
                    related: Vec::new(),
                });
            }
        }
    }
    let mut desired = check_and_resolve(raw, &mut ctx, hex::encode(hasher.finalize()));
    desired.files = ctx.sources.len();
    let diags = ctx.finish();
    if diags.is_empty() {
        Ok(desired)
    } else {
        Err(diags)
    }
}

/// Report every key repeated in a map of file `idx`: a repeated name of a
/// template, role, group or user is `config.duplicate`, any other key `yaml.syntax`.
fn report_duplicate_keys(idx: usize, ctx: &mut Ctx) {
    let source = &ctx.sources[idx];
    for d in yaml::duplicate_keys(&source.text) {
        let kind = match d.map.as_slice() {
            [s] if s == "templates" => Some("template"),
            [s] if s == "roles" => Some("role"),
            [s] if s == "groups" => Some("group"),
            [s] if s == "users" => Some("user"),
            _ => None,
        };
        let (code, message) = match kind {
            Some(kind) => (
                "config.duplicate",
                format!("{kind} `{}` is defined more than once", d.key),
            ),
            None => (
                "yaml.syntax",
                format!("duplicate key `{}`: a key may appear once in a map", d.key),
            ),
        };
        ctx.unlocated.push(Diagnostic {
            file: source.name.clone(),
            line: d.repeat.line,
            column: d.repeat.column,
            message,
            code,
            help: None,
            related: vec![Related {
                file: source.name.clone(),
                line: d.first.line,
                column: d.first.column,
                message: "first defined here".into(),
            }],
        });
    }
}

/// Files to read, with the names they are shown by, in order.
///
/// A directory given on the command line is a root: an entry under it
/// (a file or a directory, through any number of symbolic links) that
/// resolves outside every root is refused with `io.outside-root` and never
/// read, so a config directory controlled by someone else cannot make roster
/// print a line of `~/.git-credentials` or `/proc/self/environ`.
fn collect_files(paths: &[PathBuf], ctx: &mut Ctx) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let roots: Vec<PathBuf> = paths
        .iter()
        .filter(|p| fs::metadata(p).is_ok_and(|m| m.is_dir()))
        .filter_map(|p| fs::canonicalize(p).ok())
        .collect();
    for p in paths {
        match fs::metadata(p) {
            Ok(m) if m.is_dir() => {
                let mut seen = BTreeSet::new();
                walk_dir(p, &roots, &mut seen, &mut out, ctx);
            }
            Ok(_) => out.push((p.display().to_string(), p.clone())),
            Err(e) => ctx.file_err(
                &p.display().to_string(),
                "io.read",
                format!("cannot read: {e}"),
            ),
        }
    }
    let mut seen = BTreeSet::new();
    out.retain(|(_, p)| seen.insert(fs::canonicalize(p).unwrap_or_else(|_| p.clone())));
    out
}

fn walk_dir(
    dir: &Path,
    roots: &[PathBuf],
    seen: &mut BTreeSet<PathBuf>,
    out: &mut Vec<(String, PathBuf)>,
    ctx: &mut Ctx,
) {
    let canon = match fs::canonicalize(dir) {
        Ok(c) => c,
        Err(e) => {
            return ctx.file_err(
                &dir.display().to_string(),
                "io.read",
                format!("cannot read directory: {e}"),
            );
        }
    };
    if !seen.insert(canon.clone()) {
        return ctx.file_err(
            &dir.display().to_string(),
            "io.symlink-loop",
            format!(
                "directory is a symlink loop (it leads back to {})",
                canon.display()
            ),
        );
    }
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            return ctx.file_err(
                &dir.display().to_string(),
                "io.read",
                format!("cannot read directory: {e}"),
            );
        }
    };
    let mut names: Vec<PathBuf> = Vec::new();
    for entry in entries {
        match entry {
            Ok(e) => names.push(e.path()),
            Err(e) => ctx.file_err(
                &dir.display().to_string(),
                "io.read",
                format!("cannot read directory: {e}"),
            ),
        }
    }
    names.sort();
    for path in names {
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        let outside =
            || fs::canonicalize(&path).is_ok_and(|c| !roots.iter().any(|r| c.starts_with(r)));
        match fs::metadata(&path) {
            Ok(m) if m.is_dir() && outside() => outside_root(&path, "directory", ctx),
            Ok(m) if m.is_dir() => walk_dir(&path, roots, seen, out, ctx),
            Ok(_) => {
                let ext = path.extension().and_then(|e| e.to_str());
                if matches!(ext, Some("yaml" | "yml")) {
                    if outside() {
                        outside_root(&path, "file", ctx);
                    } else {
                        out.push((path.display().to_string(), path));
                    }
                }
            }
            Err(e) => ctx.file_err(
                &path.display().to_string(),
                "io.read",
                format!("cannot read: {e}"),
            ),
        }
    }
    seen.remove(&canon);
}

/// The refusal of an entry that leads outside the roots: located at the
/// entry, naming neither its target nor any of its content.
fn outside_root(path: &Path, what: &str, ctx: &mut Ctx) {
    ctx.unlocated.push(Diagnostic {
        file: path.display().to_string(),
        line: 0,
        column: 0,
        message: format!(
            "this {what} is a symbolic link (or lies under one) that leads outside the \
             directories given on the command line; roster does not read it"
        ),
        code: "io.outside-root",
        help: Some(
            "keep every config file inside the config directory (copy it instead of linking it)"
                .into(),
        ),
        related: Vec::new(),
    });
}

/// Whether an open file lives on a pseudo file system (procfs, sysfs) whose
/// "regular" files are kernel state such as `/proc/self/environ`.
fn on_pseudo_fs(file: &fs::File) -> bool {
    use std::os::fd::AsRawFd;
    // SAFETY: a zeroed statfs is a valid out-buffer; the fd is open.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::fstatfs(file.as_raw_fd(), &mut st) } != 0 {
        return false;
    }
    const PROC_SUPER_MAGIC: i64 = 0x9fa0;
    const SYSFS_MAGIC: i64 = 0x6265_6572;
    #[allow(clippy::unnecessary_cast)] // f_type is not i64 on every target
    let kind = st.f_type as i64;
    matches!(kind, PROC_SUPER_MAGIC | SYSFS_MAGIC)
}

fn read_text(name: &str, path: &Path, ctx: &mut Ctx) -> Option<String> {
    use std::os::unix::fs::OpenOptionsExt;
    // O_NONBLOCK: opening a FIFO must not wait for a writer (it would hang
    // forever); the file type is checked on the open file, so no race.
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
    {
        Ok(f) => f,
        Err(e) => {
            ctx.file_err(name, "io.read", format!("cannot read: {e}"));
            return None;
        }
    };
    match file.metadata() {
        Ok(m) if m.is_file() && !on_pseudo_fs(&file) => {}
        Ok(_) => {
            ctx.file_err(
                name,
                "io.read",
                "cannot read: not a regular file (a FIFO, socket, device or kernel file)".into(),
            );
            return None;
        }
        Err(e) => {
            ctx.file_err(name, "io.read", format!("cannot read: {e}"));
            return None;
        }
    }
    let mut bytes = Vec::new();
    if let Err(e) = file.take(yaml::MAX_FILE_BYTES + 1).read_to_end(&mut bytes) {
        ctx.file_err(name, "io.read", format!("cannot read: {e}"));
        return None;
    }
    if bytes.len() as u64 > yaml::MAX_FILE_BYTES {
        ctx.file_err(
            name,
            "io.too-large",
            format!(
                "file is larger than {} MiB; split the config into several files",
                yaml::MAX_FILE_BYTES >> 20
            ),
        );
        return None;
    }
    match String::from_utf8(bytes) {
        Ok(t) => Some(t.strip_prefix('\u{feff}').map(str::to_string).unwrap_or(t)),
        Err(e) => {
            let good = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let text = String::from_utf8_lossy(good);
            let line = text.matches('\n').count() as u64 + 1;
            let column = text
                .rsplit('\n')
                .next()
                .map(|l| l.chars().count())
                .unwrap_or(0) as u64
                + 1;
            ctx.unlocated.push(Diagnostic {
                file: name.to_string(),
                line,
                column,
                message: "the file is not valid UTF-8".into(),
                code: "yaml.encoding",
                help: Some("save the file as UTF-8".into()),
                related: Vec::new(),
            });
            None
        }
    }
}

/// The schema failures at or under `p`, relative to `p`.
fn fixes_under<'a>(
    fixes: &'a BTreeMap<Ptr, Vec<Fix>>,
    p: &'a Ptr,
) -> impl Iterator<Item = (&'a [String], &'a Fix)> + 'a {
    fixes
        .range(p.clone()..)
        .take_while(move |(k, _)| k.starts_with(p))
        .flat_map(move |(k, fs)| fs.iter().map(move |f| (&k[p.len()..], f)))
}

/// Take out of an entry what failed the schema, so that the rest can still be
/// read and checked. Returns the top-level fields touched, or `None` when
/// nothing useful is left (the entry itself is of the wrong type, or lacks a
/// required field other than `display_name`).
fn prune<'a>(
    entry: &mut Value,
    fixes: impl Iterator<Item = (&'a [String], &'a Fix)>,
) -> Option<BTreeSet<String>> {
    let mut dropped = BTreeSet::new();
    for (rel, fix) in fixes {
        match fix {
            Fix::Missing(field) => {
                // A user without a display name can still have every other
                // field checked: the name is only needed to write the user.
                if rel.is_empty() && field == "display_name" {
                    entry
                        .as_object_mut()?
                        .insert(field.clone(), Value::from(""));
                    dropped.insert(field.clone());
                } else {
                    return None;
                }
            }
            Fix::Drop => {
                if rel.is_empty() {
                    return None;
                }
                // Cut at the first list on the way: removing one item would
                // shift the positions of the others.
                let mut cut = rel.len();
                let mut node = &*entry;
                for (i, tok) in rel.iter().enumerate() {
                    if node.is_array() {
                        cut = i;
                        break;
                    }
                    match node.get(tok) {
                        Some(n) => node = n,
                        None => break,
                    }
                }
                if cut == 0 {
                    return None;
                }
                let parent: String = rel[..cut - 1]
                    .iter()
                    .map(|t| format!("/{}", t.replace('~', "~0").replace('/', "~1")))
                    .collect();
                if let Some(map) = entry.pointer_mut(&parent).and_then(Value::as_object_mut) {
                    if cut == 1 && rel[0] == "display_name" {
                        // As above: only needed to write the user.
                        map.insert(rel[0].clone(), Value::from(""));
                    } else {
                        map.remove(&rel[cut - 1]);
                    }
                }
                dropped.insert(rel[..cut].join("/"));
            }
        }
    }
    Some(dropped)
}

/// Take the typed entries out of one file's JSON. An entry that failed the
/// schema is read without the parts that failed (see [`prune`]).
fn collect_entries(
    idx: usize,
    value: Value,
    fixes: &BTreeMap<Ptr, Vec<Fix>>,
    raw: &mut Raw,
    ctx: &mut Ctx,
) {
    let Value::Object(top) = value else { return };
    for (section, v) in top {
        match section.as_str() {
            "settings" => {
                let p = ptr!["settings"];
                let (parsed, _) =
                    read_entry::<Settings>(v, idx, &p, fixes, || "`settings`".into(), ctx);
                if let Some((other, _)) = &raw.settings {
                    let other = *other;
                    ctx.err(
                        idx,
                        p.clone(),
                        true,
                        "config.duplicate",
                        "`settings` is defined in two files".into(),
                    )
                    .related
                    .push((
                        other,
                        ptr!["settings"],
                        true,
                        "first defined here".into(),
                    ));
                } else if let Some(s) = parsed {
                    raw.settings = Some((idx, s));
                }
            }
            "templates" => named(idx, "template", &section, v, fixes, &mut raw.templates, ctx),
            "roles" => named(idx, "role", &section, v, fixes, &mut raw.roles, ctx),
            "groups" => named(idx, "group", &section, v, fixes, &mut raw.groups, ctx),
            "users" => named(idx, "user", &section, v, fixes, &mut raw.users, ctx),
            "targets" => named(idx, "target", &section, v, fixes, &mut raw.targets, ctx),
            "role_assignments" => {
                if let Value::Array(items) = v {
                    for (i, item) in items.into_iter().enumerate() {
                        let p = ptr!["role_assignments", i];
                        let (value, dropped) = read_entry::<RoleAssignment>(
                            item,
                            idx,
                            &p,
                            fixes,
                            || format!("role assignment #{}", i + 1),
                            ctx,
                        );
                        raw.assignments.push(Def {
                            file: idx,
                            ptr: p,
                            value,
                            dropped,
                        });
                    }
                }
            }
            "policies" => {
                if let Value::Array(items) = v {
                    for (i, item) in items.into_iter().enumerate() {
                        let p = ptr!["policies", i];
                        // A policy that failed the schema is not evaluated
                        // at all: half a rule would judge wrongly.
                        let value = if fixes_under(fixes, &p).next().is_some() {
                            None
                        } else {
                            typed::<Policy>(item, idx, &p, || format!("policy #{}", i + 1), ctx)
                        };
                        raw.policies.push(Def {
                            file: idx,
                            ptr: p,
                            value,
                            dropped: BTreeSet::new(),
                        });
                    }
                }
            }
            _ => {}
        }
    }
}

/// Read one entry: whole when it passed the schema, else without what failed.
fn read_entry<T: DeserializeOwned>(
    mut v: Value,
    idx: usize,
    p: &Ptr,
    fixes: &BTreeMap<Ptr, Vec<Fix>>,
    what: impl FnOnce() -> String,
    ctx: &mut Ctx,
) -> (Option<T>, BTreeSet<String>) {
    let mut under = fixes_under(fixes, p).peekable();
    if under.peek().is_none() {
        return (typed::<T>(v, idx, p, what, ctx), BTreeSet::new());
    }
    match prune(&mut v, under) {
        // The entry already has an error; if what is left still cannot be
        // read (a required field failed), its checks do not run.
        Some(dropped) => (serde_json::from_value(v).ok(), dropped),
        None => (None, BTreeSet::new()),
    }
}

/// The typed value of an entry that passed the schema. What the schema cannot
/// express (e.g. an integer beyond u32) fails here: reported at the entry, never
/// dropped silently (a dropped user would be deactivated by the next apply).
fn typed<T: DeserializeOwned>(
    v: Value,
    idx: usize,
    p: &Ptr,
    what: impl FnOnce() -> String,
    ctx: &mut Ctx,
) -> Option<T> {
    match serde_json::from_value(v) {
        Ok(t) => Some(t),
        Err(e) => {
            let e = e.to_string();
            let code = if e.starts_with("invalid value") || e.contains("floating point") {
                "schema.range"
            } else {
                "schema.type"
            };
            ctx.err(
                idx,
                p.clone(),
                true,
                code,
                format!("{} cannot be read: {e}", what()),
            );
            None
        }
    }
}

fn named<T: DeserializeOwned>(
    idx: usize,
    kind: &str,
    section: &str,
    v: Value,
    fixes: &BTreeMap<Ptr, Vec<Fix>>,
    defs: &mut BTreeMap<String, Def<T>>,
    ctx: &mut Ctx,
) {
    let Value::Object(map) = v else { return };
    for (name, entry) in map {
        let p = ptr![section, name];
        let (value, dropped) =
            read_entry::<T>(entry, idx, &p, fixes, || format!("{kind} `{name}`"), ctx);
        if let Some(first) = defs.get(&name) {
            let (f, fp) = (first.file, first.ptr.clone());
            let msg = format!("{kind} `{name}` is defined more than once");
            ctx.err(idx, p, true, "config.duplicate", msg)
                .related
                .push((f, fp, true, "first defined here".into()));
            continue;
        }
        defs.insert(
            name,
            Def {
                file: idx,
                ptr: p,
                value,
                dropped,
            },
        );
    }
}

fn unknown_ref(
    ctx: &mut Ctx,
    file: usize,
    ptr: Ptr,
    what: &str,
    name: &str,
    known: &mut dyn Iterator<Item = &String>,
) {
    let code = match what {
        "role" => "ref.unknown-role",
        "group" => "ref.unknown-group",
        "user" => "ref.unknown-user",
        "target" => "ref.unknown-target",
        _ => "ref.unknown-template",
    };
    let names: Vec<&str> = known.map(String::as_str).collect();
    let suggestion = diag::did_you_mean(name, names.iter().copied());
    let e = ctx.err(file, ptr, false, code, format!("unknown {what} `{name}`"));
    e.help = suggestion.map(|s| format!("did you mean `{s}`?"));
}

/// Report repeated entries of a list (at the repeat).
fn check_dups(ctx: &mut Ctx, file: usize, base: &Ptr, field: &str, items: &[String]) {
    // Lists are short (a user's groups, a role's permissions): a scan of the
    // items before is cheaper than a map; long lists get the map.
    let mut seen = BTreeMap::new();
    for (i, item) in items.iter().enumerate() {
        let first = if items.len() <= 16 {
            items[..i].iter().rposition(|x| x == item)
        } else {
            seen.insert(item.as_str(), i)
        };
        if let Some(first) = first {
            let mut p = base.clone();
            p.push(field.to_string());
            let mut fp = p.clone();
            p.push(i.to_string());
            fp.push(first.to_string());
            ctx.err(
                file,
                p,
                false,
                "list.duplicate",
                format!("`{item}` is listed twice in `{field}`"),
            )
            .related
            .push((file, fp, false, "first listed here".into()));
        }
    }
}

fn merge_list(base: &Option<Vec<String>>, over: Option<Vec<String>>) -> Option<Vec<String>> {
    match (base, over) {
        (None, o) => o,
        (b, None) => b.clone(),
        (Some(b), Some(o)) => {
            let mut v = b.clone();
            v.extend(o.into_iter().filter(|x| !b.contains(x)));
            Some(v)
        }
    }
}

/// `over` on top of `base`: scalars override, lists are unioned (base first),
/// set rights merge per area, credentials merge per field.
fn merge(base: &Template, over: Template) -> Template {
    let set_rights = match (&base.set_rights, over.set_rights) {
        (None, o) => o,
        (b, None) => b.clone(),
        (Some(b), Some(o)) => {
            let mut m = b.clone();
            m.extend(o);
            Some(m)
        }
    };
    let credentials = match (base.credentials, over.credentials) {
        (None, o) => o,
        (b, None) => b,
        (Some(b), Some(o)) => Some(crate::model::Credentials {
            password: o.password.or(b.password),
            token: o.token.or(b.token),
            rotation: o.rotation.or(b.rotation),
            max_age_days: o.max_age_days.or(b.max_age_days),
        }),
    };
    Template {
        extends: None,
        active: over.active.or(base.active),
        class: over.class.or(base.class),
        authentication: over.authentication.or(base.authentication),
        identity_provider: over
            .identity_provider
            .or_else(|| base.identity_provider.clone()),
        groups: merge_list(&base.groups, over.groups),
        roles: merge_list(&base.roles, over.roles),
        set_rights,
        credentials,
        protected: over.protected.or(base.protected),
        expires_at: over.expires_at.or_else(|| base.expires_at.clone()),
        targets: over.targets.or_else(|| base.targets.clone()),
        target_attrs: match (&base.target_attrs, over.target_attrs) {
            (None, o) => o,
            (b, None) => b.clone(),
            (Some(b), Some(o)) => {
                let mut m = b.clone();
                for (target, attrs) in o {
                    m.entry(target).or_default().extend(attrs);
                }
                Some(m)
            }
        },
    }
}

/// Resolve every template (with its `extends` chain), reporting unknown parents and cycles.
fn resolve_templates(raw: &Raw, ctx: &mut Ctx) -> BTreeMap<String, Template> {
    let mut done: BTreeMap<String, Template> = BTreeMap::new();
    let mut in_cycle: BTreeSet<String> = BTreeSet::new();
    for start in raw.templates.keys() {
        if done.contains_key(start) || in_cycle.contains(start) {
            continue;
        }
        // Follow the chain to its root (or a cycle, or an unknown/broken parent).
        let mut chain: Vec<&str> = vec![start];
        loop {
            let cur = *chain.last().expect("non-empty");
            if done.contains_key(cur) {
                break;
            }
            let Some(def) = raw.templates.get(cur) else {
                break;
            };
            let Some(t) = &def.value else { break };
            let Some(parent) = t.extends.as_deref() else {
                break;
            };
            if let Some(pos) = chain.iter().position(|c| *c == parent) {
                let cycle: Vec<&str> = chain[pos..].to_vec();
                let first = cycle.iter().min().copied().unwrap_or(parent);
                let def = &raw.templates[first];
                let shown = cycle
                    .iter()
                    .chain(std::iter::once(&cycle[0]))
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" -> ");
                let mut p = def.ptr.clone();
                p.push("extends".into());
                ctx.err(
                    def.file,
                    p,
                    false,
                    "template.cycle",
                    format!("templates extend each other in a cycle: {shown}"),
                );
                in_cycle.extend(cycle.iter().map(|s| s.to_string()));
                break;
            }
            if !raw.templates.contains_key(parent) {
                let mut p = def.ptr.clone();
                p.push("extends".into());
                unknown_ref(
                    ctx,
                    def.file,
                    p,
                    "template",
                    parent,
                    &mut raw.templates.keys(),
                );
                break;
            }
            chain.push(parent);
        }
        // Resolve from the root down.
        for name in chain.iter().rev() {
            if done.contains_key(*name) || in_cycle.contains(*name) {
                continue;
            }
            let Some(t) = raw.templates.get(*name).and_then(|d| d.value.as_ref()) else {
                continue;
            };
            let resolved = match t.extends.as_deref() {
                Some(parent) => match done.get(parent) {
                    Some(p) => merge(p, t.clone()),
                    None if raw.templates.contains_key(parent) => continue,
                    None => merge(&Template::default(), t.clone()),
                },
                None => merge(&Template::default(), t.clone()),
            };
            done.insert(name.to_string(), resolved);
        }
    }
    done
}

fn set<I: IntoIterator<Item = String>>(items: I) -> BTreeSet<String> {
    items.into_iter().collect()
}

fn check_and_resolve(mut raw: Raw, ctx: &mut Ctx, digest: String) -> Desired {
    let settings = raw
        .settings
        .as_ref()
        .map(|(_, s)| s.clone())
        .unwrap_or_default();
    if let Some((file, s)) = &raw.settings {
        let p = &s.password;
        if !(p.lowercase || p.uppercase || p.digits || p.symbols) {
            ctx.err(
                *file,
                ptr!["settings", "password"],
                true,
                "settings.password",
                "the password policy enables no character class".into(),
            );
        }
    }
    if let Some((file, s)) = &raw.settings {
        check_dups(
            ctx,
            *file,
            &ptr!["settings"],
            "default_targets",
            &s.default_targets,
        );
        for (i, name) in s.default_targets.iter().enumerate() {
            if !raw.targets.contains_key(name) {
                let p = ptr!["settings", "default_targets", i];
                unknown_ref(ctx, *file, p, "target", name, &mut raw.targets.keys());
            }
        }
    }
    for (name, def) in &raw.targets {
        if let Some(TargetConfig::Scim(scim)) = def.value.as_ref().and_then(TargetDecl::resolve)
            && !scim.allow_insecure_http
            && crate::target::insecure_remote_http(&scim.url)
        {
            let p = [def.ptr.clone(), ptr!["scim", "url"]].concat();
            ctx.err(
                def.file,
                p,
                false,
                "target.insecure-http",
                format!("target `{name}`: plain http to a host other than 127.0.0.1/localhost would send its token in clear"),
            )
            .help = Some("use https://, or set `allow_insecure_http: true` for a trusted network".into());
        }
    }
    let templates = resolve_templates(&raw, ctx);
    // What is left out of each template (it failed the schema), including
    // what the templates it extends lack: checks of those merged fields of
    // their users do not run. `*` stands for everything (an unreadable template).
    let mut partial: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (name, def) in &raw.templates {
        let mut lacking = BTreeSet::new();
        let mut cur = Some(def);
        for _ in 0..=raw.templates.len() {
            let Some(d) = cur else { break };
            let Some(t) = &d.value else {
                lacking.insert("*".to_string());
                break;
            };
            lacking.extend(d.dropped.iter().cloned());
            cur = match t.extends.as_deref() {
                None => None,
                Some(p) => match raw.templates.get(p) {
                    Some(parent) => Some(parent),
                    None => {
                        // An unknown parent: what it would give is not known.
                        lacking.insert("*".to_string());
                        None
                    }
                },
            };
        }
        if !lacking.is_empty() {
            partial.insert(name, lacking);
        }
    }

    // Roles.
    let mut roles = BTreeMap::new();
    for (name, def) in &raw.roles {
        let Some(r) = &def.value else { continue };
        check_dups(ctx, def.file, &def.ptr, "permissions", &r.permissions);
        roles.insert(
            name.clone(),
            RoleSpec {
                description: r.description.clone(),
                permissions: set(r.permissions.iter().cloned()),
            },
        );
    }

    // Groups.
    let mut groups = BTreeMap::new();
    for (name, def) in &raw.groups {
        let Some(g) = &def.value else { continue };
        for (field, list) in [
            ("roles", &g.roles),
            ("companies", &g.companies),
            ("pay_groups", &g.pay_groups),
        ] {
            check_dups(ctx, def.file, &def.ptr, field, list);
        }
        for (i, r) in g.roles.iter().enumerate() {
            if !raw.roles.contains_key(r) {
                let p = [def.ptr.clone(), ptr!["roles", i]].concat();
                unknown_ref(ctx, def.file, p, "role", r, &mut raw.roles.keys());
            }
        }
        groups.insert(
            name.clone(),
            GroupSpec {
                description: g.description.clone(),
                roles: set(g.roles.iter().cloned()),
                companies: set(g.companies.iter().cloned()),
                pay_groups: set(g.pay_groups.iter().cloned()),
                protected: g.protected,
            },
        );
    }

    // Template references (groups, roles) are checked where they are written.
    for def in raw.templates.values() {
        let Some(t) = &def.value else { continue };
        check_fields(ctx, def.file, &def.ptr, t, &raw);
    }

    // Previous names first: they look other users up by name, before the
    // users are taken apart below.
    let mut renames: BTreeMap<String, String> = BTreeMap::new();
    let mut rename_sites: BTreeMap<String, (usize, Ptr)> = BTreeMap::new();
    for (name, def) in &raw.users {
        let Some(u) = &def.value else { continue };
        check_dups(ctx, def.file, &def.ptr, "previous_names", &u.previous_names);
        for (i, old) in u.previous_names.iter().enumerate() {
            if u.previous_names[..i].contains(old) {
                // Reported as `list.duplicate` above.
                continue;
            }
            let p = [def.ptr.clone(), ptr!["previous_names", i]].concat();
            if raw.users.contains_key(old) {
                let (of, op) = (raw.users[old].file, raw.users[old].ptr.clone());
                ctx.err(
                    def.file,
                    p,
                    false,
                    "user.previous-name",
                    format!("previous name `{old}` of user `{name}` is the name of a live user"),
                )
                .related
                .push((of, op, true, "defined here".into()));
            } else if let Some((of, op)) = rename_sites.get(old) {
                let (of, op) = (*of, op.clone());
                ctx.err(
                    def.file,
                    p,
                    false,
                    "user.previous-name",
                    format!("previous name `{old}` is claimed by two users"),
                )
                .related
                .push((of, op, false, "also claimed here".into()));
            } else {
                rename_sites.insert(old.clone(), (def.file, p));
                renames.insert(old.clone(), name.clone());
            }
        }
    }

    // Role assignments.
    let mut assignments: BTreeMap<String, AssignmentSpec> = BTreeMap::new();
    let mut assignment_sites: BTreeMap<String, (usize, Ptr)> = BTreeMap::new();
    for def in &raw.assignments {
        let Some(a) = &def.value else { continue };
        if !raw.roles.contains_key(&a.role) {
            let p = [def.ptr.clone(), ptr!["role"]].concat();
            unknown_ref(ctx, def.file, p, "role", &a.role, &mut raw.roles.keys());
        }
        for (field, list) in [
            ("positions", &a.positions),
            ("companies", &a.companies),
            ("pay_groups", &a.pay_groups),
        ] {
            check_dups(ctx, def.file, &def.ptr, field, list);
        }
        let subject = match (&a.user, &a.group) {
            (Some(u), None) => {
                if !raw.users.contains_key(u) {
                    let p = [def.ptr.clone(), ptr!["user"]].concat();
                    unknown_ref(ctx, def.file, p, "user", u, &mut raw.users.keys());
                }
                Subject::User(u.clone())
            }
            (None, Some(g)) => {
                if !raw.groups.contains_key(g) {
                    let p = [def.ptr.clone(), ptr!["group"]].concat();
                    unknown_ref(ctx, def.file, p, "group", g, &mut raw.groups.keys());
                }
                Subject::Group(g.clone())
            }
            (Some(_), Some(_)) => {
                ctx.err(
                    def.file,
                    def.ptr.clone(),
                    false,
                    "assignment.subject",
                    format!(
                        "role assignment of `{}` names both a user and a group; give exactly one",
                        a.role
                    ),
                );
                continue;
            }
            (None, None) => {
                ctx.err(def.file, def.ptr.clone(), false, "assignment.subject", format!("role assignment of `{}` names neither a user nor a group; give exactly one", a.role));
                continue;
            }
        };
        let spec = AssignmentSpec {
            role: a.role.clone(),
            subject,
            positions: set(a.positions.iter().cloned()),
            companies: set(a.companies.iter().cloned()),
            pay_groups: set(a.pay_groups.iter().cloned()),
        };
        let id = spec.id();
        if let Some((of, op)) = assignment_sites.get(&id) {
            let (of, op) = (*of, op.clone());
            ctx.err(
                def.file,
                def.ptr.clone(),
                false,
                "assignment.duplicate",
                format!(
                    "role `{}` is assigned to {} twice; merge the scopes into one assignment",
                    spec.role, spec.subject
                ),
            )
            .related
            .push((of, op, false, "first assigned here".into()));
            continue;
        }
        assignment_sites.insert(id.clone(), (def.file, def.ptr.clone()));
        assignments.insert(id, spec);
    }

    // Users.
    // Each raw user is taken apart into its spec (moved, not copied), so
    // the raw entries and the specs are not both held in full.
    let mut users = BTreeMap::new();
    // Lower-cased email -> (file, ptr of the email) of its first user.
    let mut emails: BTreeMap<String, (usize, String)> = BTreeMap::new();
    let no_template = Template::default();
    // Whether every user's `active` is known (for the max_active_users check).
    let mut all_known = true;
    let none = BTreeSet::new();
    let everything = BTreeSet::from(["*".to_string()]);
    let (policies, policy_sites) = governance::policies(ctx, &raw);
    governance::templates(ctx, &raw);
    let mut user_sites: BTreeMap<String, (usize, Ptr)> = BTreeMap::new();
    let mut user_governance = BTreeMap::new();
    for (name, def) in std::mem::take(&mut raw.users) {
        let Some(u) = def.value else {
            all_known = false;
            continue;
        };
        check_fields(ctx, def.file, &def.ptr, &u.fields, &raw);
        // Which template a user extends matters to policies, `explain` and the
        // report; a plan of a config without policies does not keep it.
        let keep_extends = ctx.skip_policy_check || !policies.is_empty();
        if let Some(g) = governance::user(ctx, &raw, def.file, &def.ptr, &u.fields, keep_extends) {
            user_governance.insert(name.clone(), g);
        }
        // Policies judge a user only when all of it could be read: a part that
        // failed the schema could hold or lack the access a rule is about.
        let fully_read = def.dropped.is_empty()
            && match u.fields.extends.as_deref() {
                None => true,
                Some(t) => templates.contains_key(t) && partial.get(t).is_none_or(|p| p.is_empty()),
            };
        if !policies.is_empty() && fully_read {
            user_sites.insert(name.clone(), (def.file, def.ptr.clone()));
        }
        // The template the user extends, and what of it is not known.
        let (base, inherited) = match u.fields.extends.as_deref() {
            None if def.dropped.contains("extends") => (Some(&no_template), &everything),
            None => (Some(&no_template), &none),
            Some(t) => match templates.get(t) {
                Some(b) => (Some(b), partial.get(t).unwrap_or(&none)),
                None => {
                    if !raw.templates.contains_key(t) {
                        let p = [def.ptr.clone(), ptr!["extends"]].concat();
                        unknown_ref(ctx, def.file, p, "template", t, &mut raw.templates.keys());
                    }
                    (None, &everything)
                }
            },
        };
        // Whether `field` (a path like `credentials/password`) is known in full.
        let known = |field: &str| {
            def.dropped
                .iter()
                .chain(inherited)
                .all(|d| !overlaps(d, field))
        };
        if let Some(email) = &u.email {
            let key = email.to_lowercase();
            if let Some((of, first)) = emails.get(&key) {
                let (of, op) = (*of, ptr!["users", first, "email"]);
                ctx.err(
                    def.file,
                    [def.ptr.clone(), ptr!["email"]].concat(),
                    false,
                    "user.email-duplicate",
                    format!("email `{email}` is already used by another user"),
                )
                .related
                .push((of, op, false, "used here".into()));
            } else {
                emails.insert(key, (def.file, name.clone()));
            }
        }
        let Some(base) = base else {
            all_known = false;
            continue;
        };
        all_known &= known("active");
        let own_password = u
            .fields
            .credentials
            .as_ref()
            .and_then(|c| c.password)
            .is_some();
        let f = merge(base, u.fields);
        let authentication = f.authentication.unwrap_or_default();
        let creds = f.credentials.unwrap_or_default();
        if authentication == Authentication::Sso
            && creds.password == Some(true)
            && known("authentication")
            && known("credentials/password")
        {
            let p = if own_password {
                [def.ptr.clone(), ptr!["credentials", "password"]].concat()
            } else {
                [def.ptr.clone(), ptr!["extends"]].concat()
            };
            ctx.err(def.file, p, false, "user.sso-password", format!("user `{name}` authenticates with sso, so roster may not generate a password for it"))
                .help = Some("an identity provider owns an sso user's login: remove `credentials.password` or use `authentication: local`".into());
        }
        if f.identity_provider.is_some()
            && authentication != Authentication::Sso
            && known("authentication")
            && known("identity_provider")
        {
            let p = [def.ptr.clone(), ptr!["identity_provider"]].concat();
            ctx.err(
                def.file,
                p,
                true,
                "user.identity-provider",
                format!(
                    "user `{name}` has an identity_provider but does not use `authentication: sso`"
                ),
            );
        }
        users.insert(
            name,
            UserSpec {
                display_name: u.display_name,
                first_name: u.first_name,
                last_name: u.last_name,
                email: u.email,
                active: f.active.unwrap_or(true),
                class: f.class.unwrap_or_default(),
                authentication,
                identity_provider: f.identity_provider,
                groups: set(f.groups.unwrap_or_default()),
                roles: set(f.roles.unwrap_or_default()),
                set_rights: f.set_rights.unwrap_or_default(),
                credentials: CredentialSpec {
                    password: creds.password.unwrap_or(false),
                    token: creds.token.unwrap_or(false),
                    rotation: creds.rotation.unwrap_or(0),
                },
                protected: f.protected.unwrap_or(false),
                targets: set(f
                    .targets
                    .unwrap_or_else(|| settings.default_targets.clone())),
                target_attrs: f.target_attrs.unwrap_or_default(),
            },
        );
    }

    if let (Some(max), Some((file, _)), true) =
        (settings.max_active_users, &raw.settings, all_known)
    {
        let active: Vec<&String> = users
            .iter()
            .filter(|(_, u)| u.active)
            .map(|(n, _)| n)
            .collect();
        if active.len() > max as usize {
            let shown: Vec<&str> = active.iter().take(12).map(|s| s.as_str()).collect();
            let more = if active.len() > shown.len() {
                format!(" and {} more", active.len() - shown.len())
            } else {
                String::new()
            };
            ctx.err(
                *file,
                ptr!["settings", "max_active_users"],
                false,
                "limit.max-active-users",
                format!(
                    "{} users are active, but max_active_users is {max}: {}{more}",
                    active.len(),
                    shown.join(", ")
                ),
            )
            .help = Some("deactivate some users with `active: false`, or raise the limit".into());
        }
    }

    let desired = Desired {
        settings,
        roles,
        groups,
        users,
        assignments,
        renames,
        digest,
        files: 0,
        policies,
        governance: user_governance,
        templates: raw
            .templates
            .iter()
            .filter_map(|(n, d)| d.value.clone().map(|t| (n.clone(), t)))
            .collect(),
        targets: raw
            .targets
            .iter()
            .filter_map(|(n, d)| d.value.as_ref()?.resolve().map(|t| (n.clone(), t)))
            .collect(),
    };
    governance::evaluate(ctx, &desired, &policy_sites, &user_sites);
    desired
}

/// The diagnostic for paths under which no config file was found: a run in
/// the wrong directory must not look like a clean one.
pub fn no_config_files(paths: &[PathBuf]) -> Diagnostics {
    let shown: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
    Diagnostics {
        items: vec![Diagnostic {
            file: shown.join(", "),
            line: 0,
            column: 0,
            message: "no config file (*.yaml or *.yml) was found here".into(),
            code: "config.empty",
            help: Some(
                "run roster in the config directory or pass its path; pass --allow-empty to use an empty config on purpose (a plan then removes every managed resource)".into(),
            ),
            related: Vec::new(),
        }],
        sources: BTreeMap::new(),
    }
}

/// Whether the paths `a` and `b` overlap (one holds the other); `*` overlaps all.
fn overlaps(a: &str, b: &str) -> bool {
    let within = |x: &str, y: &str| x == y || x.strip_prefix(y).is_some_and(|r| r.starts_with('/'));
    a == "*" || within(a, b) || within(b, a)
}

/// Checks shared by users and templates: references and duplicate list entries.
fn check_fields(ctx: &mut Ctx, file: usize, base: &Ptr, t: &Template, raw: &Raw) {
    if let Some(targets) = &t.targets {
        check_dups(ctx, file, base, "targets", targets);
        for (i, name) in targets.iter().enumerate() {
            if !raw.targets.contains_key(name) {
                let p = [base.clone(), ptr!["targets", i]].concat();
                unknown_ref(ctx, file, p, "target", name, &mut raw.targets.keys());
            }
        }
    }
    for (target, attrs) in t.target_attrs.iter().flatten() {
        let p = [base.clone(), ptr!["target_attrs", target]].concat();
        if !raw.targets.contains_key(target) {
            unknown_ref(
                ctx,
                file,
                p.clone(),
                "target",
                target,
                &mut raw.targets.keys(),
            );
        }
        for name in attrs.keys() {
            if crate::target::project::GENERIC_ATTRS.contains(&name.as_str()) {
                let p = [p.clone(), ptr![name]].concat();
                ctx.err(
                    file,
                    p,
                    true,
                    "user.target-attr-reserved",
                    format!("`{name}` is an attribute roster sets itself; it cannot be given in target_attrs"),
                );
            }
        }
    }
    if let Some(groups) = &t.groups {
        check_dups(ctx, file, base, "groups", groups);
        for (i, g) in groups.iter().enumerate() {
            if !raw.groups.contains_key(g) {
                let p = [base.clone(), ptr!["groups", i]].concat();
                unknown_ref(ctx, file, p, "group", g, &mut raw.groups.keys());
            }
        }
    }
    if let Some(roles) = &t.roles {
        check_dups(ctx, file, base, "roles", roles);
        for (i, r) in roles.iter().enumerate() {
            if !raw.roles.contains_key(r) {
                let p = [base.clone(), ptr!["roles", i]].concat();
                unknown_ref(ctx, file, p, "role", r, &mut raw.roles.keys());
            }
        }
    }
}
