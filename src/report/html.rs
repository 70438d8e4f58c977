//! The access review as one self-contained HTML page: inline style and
//! script only (a Content-Security-Policy forbids anything else), readable
//! printed, with a sortable and filterable table and the summaries on top.
//! Every value is escaped.

use std::fmt::Write;

use super::{COLUMNS, Report, cells};

/// Escape text for HTML element content and quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = r#"
:root { color-scheme: light; --line: #c8ccd2; --muted: #555b63; --head: #eef1f5; }
* { box-sizing: border-box; }
body { font: 14px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 1.5rem; color: #16191d; background: #fff; }
h1 { font-size: 1.6rem; margin: 0 0 .25rem; }
h2 { font-size: 1.1rem; margin: 0 0 .5rem; }
header p { margin: 0 0 1rem; color: var(--muted); }
code { font: 13px ui-monospace, "DejaVu Sans Mono", monospace; }
.summaries { display: grid; grid-template-columns: repeat(auto-fit, minmax(18rem, 1fr)); gap: 1rem; margin-bottom: 1.5rem; }
.summaries section { border: 1px solid var(--line); border-radius: 6px; padding: .75rem 1rem; break-inside: avoid; }
.summaries ul { margin: 0; padding-left: 1.1rem; }
.summaries .none { color: var(--muted); margin: 0; }
.controls { display: flex; gap: 1rem; align-items: center; margin-bottom: .5rem; }
.controls input { font: inherit; padding: .35rem .5rem; width: 22rem; max-width: 100%; border: 1px solid var(--line); border-radius: 4px; }
#count { color: var(--muted); }
table { border-collapse: collapse; width: 100%; }
th, td { border: 1px solid var(--line); padding: .3rem .45rem; text-align: left; vertical-align: top; }
th { background: var(--head); position: sticky; top: 0; }
th button { all: unset; cursor: pointer; font-weight: 600; }
th[aria-sort="ascending"] button::after { content: " \25B2"; }
th[aria-sort="descending"] button::after { content: " \25BC"; }
tr.inactive td { color: var(--muted); }
tbody tr:nth-child(even) { background: #fafbfc; }
@media print {
  body { margin: 0; font-size: 10px; }
  .controls { display: none; }
  th { position: static; }
  tr[hidden] { display: none; }
  tr { break-inside: avoid; }
  th button::after { content: none !important; }
}
"#;

const SCRIPT: &str = r#"
(function () {
  "use strict";
  var errors = 0;
  window.addEventListener("error", function () {
    errors += 1;
    document.body.setAttribute("data-errors", String(errors));
  });
  var table = document.getElementById("access");
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  rows.forEach(function (r, i) { r.setAttribute("data-index", String(i)); });
  var heads = Array.prototype.slice.call(table.tHead.rows[0].cells);
  var input = document.getElementById("filter");
  var count = document.getElementById("count");
  function applyFilter() {
    var terms = input.value.toLowerCase().split(/\s+/).filter(Boolean);
    var shown = 0;
    rows.forEach(function (r) {
      var text = r.textContent.toLowerCase();
      var keep = terms.every(function (t) { return text.indexOf(t) !== -1; });
      r.hidden = !keep;
      if (keep) { shown += 1; }
    });
    count.textContent = shown + " of " + rows.length + " rows";
  }
  function key(r, col) { return r.cells[col].textContent.trim(); }
  function sortBy(col, dir) {
    var sign = dir === "descending" ? -1 : 1;
    var numeric = rows.every(function (r) { var k = key(r, col); return k === "" || !isNaN(Number(k)); });
    var sorted = rows.slice().sort(function (a, b) {
      var x = key(a, col), y = key(b, col), c;
      if (numeric) { c = (x === "" ? -Infinity : Number(x)) - (y === "" ? -Infinity : Number(y)); }
      else { c = x.localeCompare(y); }
      return c !== 0 ? sign * c : Number(a.getAttribute("data-index")) - Number(b.getAttribute("data-index"));
    });
    sorted.forEach(function (r) { body.appendChild(r); });
    heads.forEach(function (h, i) { h.setAttribute("aria-sort", i === col ? dir : "none"); });
  }
  heads.forEach(function (h, i) {
    h.querySelector("button").addEventListener("click", function () {
      sortBy(i, h.getAttribute("aria-sort") === "ascending" ? "descending" : "ascending");
    });
  });
  input.addEventListener("input", applyFilter);
  // A link can carry a filter and a sort: report.html#q=payroll&sort=user:descending
  var q = /[#&]q=([^&]*)/.exec(location.hash);
  if (q) { input.value = decodeURIComponent(q[1].replace(/\+/g, " ")); }
  var s = /[#&]sort=([a-z_]+)(?::(ascending|descending))?/.exec(location.hash);
  if (s) {
    var col = heads.findIndex(function (h) { return h.getAttribute("data-column") === s[1]; });
    if (col >= 0) { sortBy(col, s[2] || "ascending"); }
  }
  applyFilter();
  document.body.setAttribute("data-ready", "1");
}());
"#;

fn list_section(out: &mut String, title: &str, items: &[String], none: &str) {
    let _ = write!(out, "<section><h2>{}</h2>", escape(title));
    if items.is_empty() {
        let _ = write!(out, "<p class=\"none\">{}</p>", escape(none));
    } else {
        out.push_str("<ul>");
        for i in items {
            let _ = write!(out, "<li>{i}</li>");
        }
        out.push_str("</ul>");
    }
    out.push_str("</section>\n");
}

/// The page.
pub fn html(r: &Report) -> String {
    let mut out = String::new();
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(
        out,
        "<title>Access review {} (state serial {})</title>",
        escape(&r.generated_at),
        r.state_serial
    );
    let _ = writeln!(out, "<style>{STYLE}</style>\n</head>");
    out.push_str("<body data-errors=\"0\">\n<header><h1>Access review</h1>");
    let _ = writeln!(
        out,
        "<p>Made <time datetime=\"{0}\">{0}</time> from store <code>{1}</code> at state serial <strong id=\"serial\">{2}</strong>{3} · {4} rows</p></header>",
        escape(&r.generated_at),
        escape(&r.store),
        r.state_serial,
        if r.state_lineage.is_empty() {
            String::new()
        } else {
            format!(" (lineage <code>{}</code>)", escape(&r.state_lineage))
        },
        r.rows.len()
    );
    let s = &r.summaries;
    out.push_str("<div class=\"summaries\">\n");
    let per_role: Vec<String> = s
        .users_per_role
        .iter()
        .map(|(role, users)| {
            format!(
                "<code>{}</code>: {}",
                escape(role),
                escape(&users.join(", "))
            )
        })
        .collect();
    list_section(&mut out, "Users per role", &per_role, "No roles are held.");
    let sensitive: Vec<String> = s
        .sensitive
        .iter()
        .map(|(what, users)| {
            format!(
                "<code>{}</code>: {}",
                escape(what),
                escape(&users.join(", "))
            )
        })
        .collect();
    list_section(
        &mut out,
        "Sensitive access (named by policies)",
        &sensitive,
        "Nobody holds access a policy names.",
    );
    let inactive: Vec<String> = s
        .inactive_with_access
        .iter()
        .map(|h| format!("{}: {}", escape(&h.user), escape(&h.holds.join("; "))))
        .collect();
    list_section(
        &mut out,
        "Inactive users still holding access in the state",
        &inactive,
        "None.",
    );
    let old: Vec<String> = s
        .secrets_past_age
        .iter()
        .map(|o| {
            format!(
                "{}: {} days old (limit {}), last rotated {}",
                escape(&o.user),
                o.age_days,
                o.max_age_days,
                escape(&o.last_rotation)
            )
        })
        .collect();
    list_section(&mut out, "Secrets past their age limit", &old, "None.");
    out.push_str("</div>\n");
    out.push_str("<div class=\"controls\"><label>Filter <input id=\"filter\" type=\"search\" placeholder=\"user, permission, group…\" autocomplete=\"off\"></label><span id=\"count\"></span></div>\n");
    out.push_str("<table id=\"access\">\n<thead><tr>");
    for c in COLUMNS {
        let _ = write!(
            out,
            "<th data-column=\"{c}\" aria-sort=\"none\"><button type=\"button\">{}</button></th>",
            c.replace('_', " ")
        );
    }
    out.push_str("</tr></thead>\n<tbody>\n");
    for row in &r.rows {
        let _ = write!(
            out,
            "<tr data-user=\"{}\"{}>",
            escape(&row.user),
            if row.active {
                ""
            } else {
                " class=\"inactive\""
            }
        );
        for c in cells(row) {
            let _ = write!(out, "<td>{}</td>", escape(&c));
        }
        out.push_str("</tr>\n");
    }
    out.push_str("</tbody>\n</table>\n");
    let _ = writeln!(out, "<script>{SCRIPT}</script>\n</body>\n</html>");
    out
}
