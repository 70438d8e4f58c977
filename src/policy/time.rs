//! Moments as governance uses them: `expires_at` values and `--now`, as
//! seconds since the Unix epoch (UTC). Parsing only; nothing here reads a clock.

use time::format_description::well_known::Rfc3339;
use time::macros::format_description;
use time::{Date, OffsetDateTime};

pub const DAY: i64 = 86_400;

/// Parse an RFC 3339 date (`2026-06-30`, meaning 00:00 UTC) or date-time
/// (`2026-06-30T17:00:00Z`, `2026-06-30T17:00:00+02:00`).
pub fn parse(text: &str) -> Result<i64, String> {
    let t = text.trim();
    if t.len() == 10 {
        return Date::parse(t, format_description!("[year]-[month]-[day]"))
            .map(|d| d.midnight().assume_utc().unix_timestamp())
            .map_err(|e| format!("`{text}` is not a valid date: {e}"));
    }
    let normal: String = t
        .char_indices()
        .map(|(i, c)| match c {
            't' | ' ' if i == 10 => 'T',
            'z' => 'Z',
            c => c,
        })
        .collect();
    OffsetDateTime::parse(&normal, &Rfc3339)
        .map(OffsetDateTime::unix_timestamp)
        .map_err(|e| format!("`{text}` is not an RFC 3339 date or date-time: {e}"))
}

/// `2026-06-30T17:00:00Z`.
pub fn format(unix: i64) -> String {
    OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

/// Whole days from `from` to `to` (rounded down; negative when `to` is earlier).
pub fn days_between(from: i64, to: i64) -> i64 {
    (to - from).div_euclid(DAY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_and_date_times_parse_to_utc_seconds() {
        assert_eq!(parse("1970-01-02"), Ok(DAY));
        assert_eq!(parse("1970-01-01T01:00:00Z"), Ok(3600));
        assert_eq!(parse("1970-01-01t01:00:00z"), Ok(3600));
        assert_eq!(parse("1970-01-01T03:00:00+02:00"), Ok(3600));
        assert!(parse("2026-02-30").is_err());
        assert!(parse("2026-06-30T25:00:00Z").is_err());
        assert!(parse("tomorrow").is_err());
        assert_eq!(format(3600), "1970-01-01T01:00:00Z");
        assert_eq!(days_between(0, DAY * 3 - 1), 2);
        assert_eq!(days_between(DAY, 0), -1);
    }
}
