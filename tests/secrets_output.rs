//! The secrets output end to end on the real file system: the secrets file
//! (new, 0600, never overwritten, no symlinks), the up-front path check, the
//! three render formats parsed back, age encryption decrypted by the age crate
//! and by the `age` binary when it is installed, and redaction.
//!
//! Assertions that compare secrets never print them (no `assert_eq!` on a
//! secret value).

use std::fs;
use std::io::Read;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::Path;
use std::process::Command;

use age::secrecy::ExposeSecret as _;
use roster::model::{Argon2Params, PasswordPolicy, TokenPolicy};
use roster::secret::{
    EmittedSecret, Secret, SecretError, SecretKind, SecretsFormat, check_secrets_path,
    encrypt_armored, env_var_name, generate_password, generate_token, hash_all, parse_recipients,
    render_secrets, verify_secret, write_secrets_file,
};

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Rendered {
    secrets: Vec<RenderedSecret>,
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RenderedSecret {
    user: String,
    kind: SecretKind,
    value: String,
    generated_at: String,
}

fn emitted(user: &str, kind: SecretKind, value: String) -> EmittedSecret {
    EmittedSecret {
        user: user.to_string(),
        kind,
        value: Secret::new(value),
        generated_at: "2026-03-04T05:06:07Z".to_string(),
    }
}

/// Generated secrets plus hand-made ones with every character that needs quoting.
fn sample() -> Vec<EmittedSecret> {
    let password = generate_password(&PasswordPolicy::default()).expect("default policy");
    let token = generate_token(&TokenPolicy::default());
    vec![
        emitted(
            "qlearsite",
            SecretKind::Password,
            password.expose().to_string(),
        ),
        emitted("qlearsite", SecretKind::Token, token.expose().to_string()),
        emitted(
            "hr.sync-2",
            SecretKind::Password,
            "q\"uo'te\\back: #x [y] {z} & *a !t %d @e `b` \t\u{7f}\u{85}\u{2028}ü😀".to_string(),
        ),
        emitted("yes", SecretKind::Token, "null".to_string()),
    ]
}

fn assert_same(rendered: &[RenderedSecret], sample: &[EmittedSecret], format: &str) {
    assert_eq!(rendered.len(), sample.len(), "{format}: entry count");
    for (i, (r, s)) in rendered.iter().zip(sample).enumerate() {
        assert_eq!(r.user, s.user, "{format}: user of entry {i}");
        assert_eq!(r.kind, s.kind, "{format}: kind of entry {i}");
        assert!(
            r.value == s.value.expose(),
            "{format}: value of entry {i} differs"
        );
        assert_eq!(
            r.generated_at, s.generated_at,
            "{format}: time of entry {i}"
        );
    }
}

#[test]
fn json_parses_back() {
    let sample = sample();
    let out = render_secrets(&sample, SecretsFormat::Json);
    let parsed: Rendered = serde_json::from_str(&out).expect("json output parses");
    assert_same(&parsed.secrets, &sample, "json");
    let empty: Rendered =
        serde_json::from_str(&render_secrets(&[], SecretsFormat::Json)).expect("empty json");
    assert!(empty.secrets.is_empty());
}

#[test]
fn yaml_parses_back() {
    let sample = sample();
    let out = render_secrets(&sample, SecretsFormat::Yaml);
    let parsed: Rendered = serde_saphyr::from_str(&out).expect("yaml output parses");
    assert_same(&parsed.secrets, &sample, "yaml");
    let empty: Rendered =
        serde_saphyr::from_str(&render_secrets(&[], SecretsFormat::Yaml)).expect("empty yaml");
    assert!(empty.secrets.is_empty());
}

#[test]
fn env_parses_back_by_lines() {
    // Generated secrets never contain a quote or a newline: a line split works.
    let sample: Vec<EmittedSecret> = sample().into_iter().take(2).collect();
    let out = render_secrets(&sample, SecretsFormat::Env);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), sample.len());
    for (line, s) in lines.iter().zip(&sample) {
        let (name, quoted) = line.split_once('=').expect("NAME=value");
        assert_eq!(name, env_var_name(&s.user, s.kind));
        assert!(
            name.bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_'),
            "{name}"
        );
        let value = quoted
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .expect("single-quoted value");
        assert!(value == s.value.expose(), "env value of {name} differs");
    }
    assert_eq!(
        lines[0].split_once('=').map(|(n, _)| n),
        Some("ROSTER_SECRET_QLEARSITE_PASSWORD")
    );
    assert_eq!(&*render_secrets(&[], SecretsFormat::Env), "");
}

#[test]
fn env_is_read_back_exactly_by_a_posix_shell() {
    let sh = Path::new("/bin/sh");
    if !sh.exists() {
        println!("skipping the shell check: /bin/sh is absent");
        return;
    }
    let sample = sample();
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("secrets.env");
    write_secrets_file(
        &file,
        render_secrets(&sample, SecretsFormat::Env).as_bytes(),
    )
    .expect("write env file");
    for s in &sample {
        let name = env_var_name(&s.user, s.kind);
        let output = Command::new(sh)
            .arg("-c")
            .arg(format!(". \"$1\" && printf %s \"${name}\""))
            .arg("sh")
            .arg(&file)
            .output()
            .expect("run /bin/sh");
        assert!(output.status.success(), "sh failed for {name}");
        assert!(
            output.stdout == s.value.expose().as_bytes(),
            "sh read back a different value for {name}"
        );
    }
}

#[test]
fn debug_and_display_never_show_the_value() {
    let value = "hunter2-visible-marker";
    let s = emitted("qlearsite", SecretKind::Password, value.to_string());
    for text in [
        format!("{s:?}"),
        format!("{s:#?}"),
        format!("{s}"),
        format!("{:?}", s.value),
        format!("{}", s.value),
        format!("{:?}", [&s]),
    ] {
        assert!(!text.contains(value), "a rendering shows the secret");
        assert!(
            !text.contains("hunter2"),
            "a rendering shows part of the secret"
        );
    }
    assert!(format!("{s}").contains("qlearsite"));
    assert!(format!("{s:?}").contains("redacted"));
}

#[test]
fn secrets_file_is_created_0600_with_the_contents() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secrets.json");
    check_secrets_path(&path).expect("a new path in a writable dir is fine");
    let contents = render_secrets(&sample(), SecretsFormat::Json);
    write_secrets_file(&path, contents.as_bytes()).expect("write");
    let meta = fs::symlink_metadata(&path).expect("stat");
    assert!(meta.file_type().is_file());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600);
    let read = fs::read(&path).expect("read back");
    assert!(read == contents.as_bytes(), "file contents differ");
}

#[test]
fn existing_file_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secrets.json");
    fs::write(&path, b"earlier secrets").expect("seed file");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).expect("chmod");

    let err = check_secrets_path(&path).unwrap_err();
    assert!(matches!(err, SecretError::FileExists { .. }), "{err}");
    let err = write_secrets_file(&path, b"new secrets").unwrap_err();
    assert!(matches!(err, SecretError::FileExists { .. }), "{err}");
    assert!(err.to_string().contains("secrets.json"), "{err}");

    assert_eq!(fs::read(&path).expect("read"), b"earlier secrets");
    let mode = fs::metadata(&path).expect("stat").permissions().mode() & 0o7777;
    assert_eq!(mode, 0o644, "mode untouched");
}

#[test]
fn symlinks_are_refused_whether_dangling_or_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let target = dir.path().join("target.txt");
    fs::write(&target, b"target contents").expect("target");
    let link = dir.path().join("link.json");
    symlink(&target, &link).expect("symlink");

    let err = check_secrets_path(&link).unwrap_err();
    assert!(matches!(err, SecretError::FileIsSymlink { .. }), "{err}");
    let err = write_secrets_file(&link, b"secrets").unwrap_err();
    assert!(matches!(err, SecretError::FileIsSymlink { .. }), "{err}");
    assert_eq!(fs::read(&target).expect("read"), b"target contents");

    let dangling_target = dir.path().join("nowhere.txt");
    let dangling = dir.path().join("dangling.json");
    symlink(&dangling_target, &dangling).expect("symlink");
    let err = check_secrets_path(&dangling).unwrap_err();
    assert!(matches!(err, SecretError::FileIsSymlink { .. }), "{err}");
    let err = write_secrets_file(&dangling, b"secrets").unwrap_err();
    assert!(matches!(err, SecretError::FileIsSymlink { .. }), "{err}");
    assert!(!dangling_target.exists(), "the link target was created");
}

#[test]
fn check_secrets_path_errors() {
    let dir = tempfile::tempdir().expect("tempdir");

    let missing = dir.path().join("no-such-dir").join("s.json");
    let err = check_secrets_path(&missing).unwrap_err();
    assert!(matches!(err, SecretError::DirMissing { .. }), "{err}");
    assert!(err.to_string().contains("no-such-dir"), "{err}");

    let file = dir.path().join("plain-file");
    fs::write(&file, b"x").expect("file");
    let under_file = file.join("s.json");
    let err = check_secrets_path(&under_file).unwrap_err();
    assert!(matches!(err, SecretError::DirNotDirectory { .. }), "{err}");

    for no_name in ["/", "..", "out/.."] {
        let err = check_secrets_path(Path::new(no_name)).unwrap_err();
        assert!(
            matches!(err, SecretError::NoFileName { .. }),
            "{no_name}: {err}"
        );
    }

    let existing_dir = dir.path().join("a-dir");
    fs::create_dir(&existing_dir).expect("dir");
    let err = check_secrets_path(&existing_dir).unwrap_err();
    assert!(matches!(err, SecretError::FileExists { .. }), "{err}");
}

#[test]
fn check_secrets_path_refuses_a_read_only_dir() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } == 0 {
        println!(
            "skipping the read-only directory check: running as root, which may write to any directory"
        );
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let ro = dir.path().join("ro");
    fs::create_dir(&ro).expect("dir");
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o500)).expect("chmod");
    let path = ro.join("s.json");
    let err = check_secrets_path(&path).unwrap_err();
    fs::set_permissions(&ro, fs::Permissions::from_mode(0o700)).expect("chmod back");
    assert!(matches!(err, SecretError::DirNotWritable { .. }), "{err}");
}

fn decrypt_armored(identity: &age::x25519::Identity, armored: &str) -> Vec<u8> {
    let reader = age::armor::ArmoredReader::new(armored.as_bytes());
    let decryptor = age::Decryptor::new(reader).expect("age header");
    let mut plain = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .expect("decrypts with the identity");
    let mut out = Vec::new();
    plain.read_to_end(&mut out).expect("read plaintext");
    out
}

#[test]
fn age_round_trip_with_the_crate() {
    let alice = age::x25519::Identity::generate();
    let bob = age::x25519::Identity::generate();
    let recipients =
        parse_recipients(&[alice.to_public().to_string(), bob.to_public().to_string()])
            .expect("valid recipients");
    let plaintext = render_secrets(&sample(), SecretsFormat::Yaml);

    let armored = encrypt_armored(plaintext.as_bytes(), &recipients).expect("encrypt");
    assert!(armored.starts_with("-----BEGIN AGE ENCRYPTED FILE-----"));
    assert!(
        armored
            .trim_end()
            .ends_with("-----END AGE ENCRYPTED FILE-----")
    );
    for s in sample() {
        assert!(!armored.contains(&s.user), "ciphertext shows a user name");
    }
    for identity in [&alice, &bob] {
        let decrypted = decrypt_armored(identity, &armored);
        assert!(decrypted == plaintext.as_bytes(), "decrypted text differs");
    }

    let eve = age::x25519::Identity::generate();
    let reader = age::armor::ArmoredReader::new(armored.as_bytes());
    let decryptor = age::Decryptor::new(reader).expect("age header");
    assert!(
        decryptor
            .decrypt(std::iter::once(&eve as &dyn age::Identity))
            .is_err(),
        "a non-recipient decrypted the secrets"
    );
}

#[test]
fn age_round_trip_with_the_age_binary() {
    let found = Command::new("age").arg("--version").output();
    if !matches!(&found, Ok(o) if o.status.success()) {
        println!(
            "skipping the age binary check: `age` is not on PATH (install the Debian package `age`)"
        );
        return;
    }
    let identity = age::x25519::Identity::generate();
    let recipients = parse_recipients(&[identity.to_public().to_string()]).expect("recipient");
    let plaintext = render_secrets(&sample(), SecretsFormat::Env);
    let armored = encrypt_armored(plaintext.as_bytes(), &recipients).expect("encrypt");

    let dir = tempfile::tempdir().expect("tempdir");
    let key_file = dir.path().join("key.txt");
    write_secrets_file(&key_file, identity.to_string().expose_secret().as_bytes())
        .expect("key file");
    let cipher_file = dir.path().join("secrets.env.age");
    write_secrets_file(&cipher_file, armored.as_bytes()).expect("ciphertext file");

    let output = Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(&key_file)
        .arg(&cipher_file)
        .output()
        .expect("run age");
    assert!(
        output.status.success(),
        "age -d failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.stdout == plaintext.as_bytes(),
        "age -d produced a different plaintext"
    );
}

#[test]
fn generate_hash_render_encrypt_write_read_verify() {
    let cheap = Argon2Params {
        memory_kib: 8192,
        iterations: 1,
        parallelism: 1,
    };
    let users = ["alpha", "beta", "gamma"];
    let emitted: Vec<EmittedSecret> = users
        .iter()
        .flat_map(|user| {
            let password = generate_password(&PasswordPolicy::default()).expect("password");
            let token = generate_token(&TokenPolicy::default());
            [
                emitted(user, SecretKind::Password, password.expose().to_string()),
                emitted(user, SecretKind::Token, token.expose().to_string()),
            ]
        })
        .collect();
    let values: Vec<&Secret> = emitted.iter().map(|e| &e.value).collect();
    let hashes = hash_all(&values, &cheap).expect("hash_all");

    let identity = age::x25519::Identity::generate();
    let recipients = parse_recipients(&[identity.to_public().to_string()]).expect("recipient");
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("secrets.json.age");
    check_secrets_path(&path).expect("path is free");
    let plaintext = render_secrets(&emitted, SecretsFormat::Json);
    let armored = encrypt_armored(plaintext.as_bytes(), &recipients).expect("encrypt");
    write_secrets_file(&path, armored.as_bytes()).expect("write");

    let stored = fs::read_to_string(&path).expect("read");
    let decrypted = decrypt_armored(&identity, &stored);
    let parsed: Rendered = serde_json::from_slice(&decrypted).expect("json");
    assert_same(&parsed.secrets, &emitted, "json via age");
    for (i, (entry, phc)) in parsed.secrets.iter().zip(&hashes).enumerate() {
        assert!(verify_secret(&entry.value, phc), "hash {i} does not verify");
        let other = &parsed.secrets[(i + 1) % parsed.secrets.len()].value;
        assert!(
            !verify_secret(other, phc),
            "hash {i} verifies another secret"
        );
        assert!(!phc.contains(&entry.value), "hash {i} contains its secret");
    }
}
