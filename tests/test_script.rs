//! `scripts/test.sh` runs on developers' machines: it may stop only what it
//! started itself, never processes by name.

use std::path::Path;

fn script() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/test.sh");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Regression: the script ran `pkill -x etcd` after installing etcd-server,
/// which stopped a developer's own etcd.
#[test]
fn test_script_never_stops_processes_by_name() {
    let text = script();
    for (i, line) in text.lines().enumerate() {
        let code = line.split('#').next().unwrap_or_default();
        let words: Vec<&str> = code
            .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')'))
            .collect();
        for banned in ["pkill", "killall", "pgrep"] {
            assert!(
                !words.contains(&banned),
                "scripts/test.sh:{}: `{banned}` stops processes by name: {line}",
                i + 1
            );
        }
    }
    // The package's own service is kept from starting instead, and the
    // policy is removed again.
    assert!(text.contains("/usr/sbin/policy-rc.d"), "no policy-rc.d");
    assert!(
        text.contains("exit 101"),
        "the policy does not forbid starts"
    );
    assert!(
        text.contains("rm -f \"$policy\""),
        "the policy is not removed"
    );
}
