//! A throw-away OpenLDAP server for tests: Debian's `slapd` with its own
//! `slapd.conf` (mdb backend, the core/cosine/nis/inetorgperson schemas from
//! /etc/ldap/schema, the ppolicy overlay with a default policy that honours
//! `pwdAccountLockedTime`) in a tempdir, on a free 127.0.0.1 port, started as
//! the current user in the foreground (`-d 0`), waited for (bounded) until an
//! administrator bind answers, and stopped by its pid on drop (also on panic).
//! `scripts/test.sh` installs `slapd` and `ldap-utils` when they are missing.

use std::fs;
use std::io::Write as _;
use std::net::TcpListener;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long slapd may take to answer a bind after it is started.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopped slapd may take to exit before it is killed.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub const BASE_DN: &str = "dc=roster,dc=test";
pub const ADMIN_DN: &str = "cn=admin,dc=roster,dc=test";
pub const USERS_OU: &str = "ou=people,dc=roster,dc=test";
pub const GROUPS_OU: &str = "ou=groups,dc=roster,dc=test";
/// A service account that is not the rootdn: the ACLs grant it `manage` on
/// the two OUs only (what connectors/ldap/README.md tells admins to grant).
pub const SERVICE_DN: &str = "cn=roster,dc=roster,dc=test";
const SCHEMAS: [&str; 4] = ["core", "cosine", "nis", "inetorgperson"];

fn binary(name: &str) -> PathBuf {
    let candidates = [
        PathBuf::from("/usr/sbin").join(name),
        PathBuf::from("/usr/bin").join(name),
    ];
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join(name))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    on_path
        .into_iter()
        .chain(candidates)
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: run ./scripts/test.sh (it installs Debian's slapd and \
                 ldap-utils) or `apt-get install -y slapd ldap-utils`"
            )
        })
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// A random hex string from the OS (for the throw-away admin password).
fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    let mut f = fs::File::open("/dev/urandom").expect("open /dev/urandom");
    std::io::Read::read_exact(&mut f, &mut buf).expect("read /dev/urandom");
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// One running slapd; stopped by pid when dropped.
pub struct Slapd {
    child: Option<Child>,
    pub port: u16,
    pub url: String,
    admin_password: String,
    service_password: String,
    dir: tempfile::TempDir,
}

impl std::fmt::Debug for Slapd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slapd")
            .field("url", &self.url)
            .field("admin_password", &"[redacted]")
            .field("service_password", &"[redacted]")
            .finish()
    }
}

/// What `bind` found.
#[derive(Debug, PartialEq, Eq)]
pub enum Bind {
    Ok,
    /// invalidCredentials (49): wrong password, no password, or locked.
    Refused,
}

impl Slapd {
    /// A fresh directory with `BASE_DN`, `USERS_OU`, `GROUPS_OU` and a
    /// default password policy, answering binds.
    pub fn start() -> Slapd {
        let slapd = binary("slapd");
        let slapadd = binary("slapadd");
        binary("ldapwhoami");
        let mut dir = tempfile::Builder::new()
            .prefix("roster-slapd-")
            .tempdir()
            .expect("a tempdir for slapd");
        let admin_password = random_hex(16);
        let service_password = random_hex(16);
        let db = dir.path().join("db");
        fs::create_dir(&db).expect("create the slapd db dir");
        let conf = dir.path().join("slapd.conf");
        let mut text = String::new();
        for s in SCHEMAS {
            text.push_str(&format!("include /etc/ldap/schema/{s}.schema\n"));
        }
        text.push_str(&format!(
            "modulepath /usr/lib/ldap\n\
             moduleload back_mdb.la\n\
             moduleload ppolicy.la\n\
             pidfile {dir}/slapd.pid\n\
             argsfile {dir}/slapd.args\n\
             database mdb\n\
             suffix \"{BASE_DN}\"\n\
             rootdn \"{ADMIN_DN}\"\n\
             rootpw {admin_password}\n\
             directory {db}\n\
             maxsize 67108864\n\
             overlay ppolicy\n\
             ppolicy_default \"cn=default,ou=policies,{BASE_DN}\"\n\
             access to dn.subtree=\"{USERS_OU}\" by dn.exact=\"{SERVICE_DN}\" manage by anonymous auth by * none\n\
             access to dn.subtree=\"{GROUPS_OU}\" by dn.exact=\"{SERVICE_DN}\" manage by * none\n\
             access to attrs=userPassword by self =w by anonymous auth by * none\n\
             access to * by * read\n",
            dir = dir.path().display(),
            db = db.display(),
        ));
        fs::write(&conf, text).expect("write slapd.conf");
        fs::set_permissions(&conf, fs::Permissions::from_mode(0o600)).expect("chmod slapd.conf");
        let seed = dir.path().join("seed.ldif");
        fs::write(
            &seed,
            format!(
                "dn: {BASE_DN}\nobjectClass: dcObject\nobjectClass: organization\no: roster\ndc: roster\n\n\
                 dn: {USERS_OU}\nobjectClass: organizationalUnit\nou: people\n\n\
                 dn: {GROUPS_OU}\nobjectClass: organizationalUnit\nou: groups\n\n\
                 dn: ou=policies,{BASE_DN}\nobjectClass: organizationalUnit\nou: policies\n\n\
                 dn: cn=default,ou=policies,{BASE_DN}\nobjectClass: organizationalRole\n\
                 objectClass: pwdPolicy\ncn: default\npwdAttribute: userPassword\npwdLockout: TRUE\n\
                 pwdMaxFailure: 0\n\n\
                 dn: {SERVICE_DN}\nobjectClass: organizationalRole\nobjectClass: simpleSecurityObject\n\
                 cn: roster\nuserPassword: {service_password}\n"
            ),
        )
        .expect("write the seed LDIF");
        let out = Command::new(&slapadd)
            .arg("-f")
            .arg(&conf)
            .arg("-l")
            .arg(&seed)
            .output()
            .expect("run slapadd");
        assert!(
            out.status.success(),
            "slapadd failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        // A free port may be taken between the probe and slapd's bind: retry.
        for attempt in 1..=3 {
            let port = free_port();
            let url = format!("ldap://127.0.0.1:{port}");
            let log = fs::File::create(dir.path().join("slapd.log")).expect("create slapd.log");
            let child = Command::new(&slapd)
                .arg("-h")
                .arg(format!("{url}/"))
                .arg("-f")
                .arg(&conf)
                .args(["-d", "0"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("clone the log handle"))
                .stderr(log)
                .spawn()
                .expect("start slapd");
            let mut s = Slapd {
                child: Some(child),
                port,
                url,
                admin_password: admin_password.clone(),
                service_password: service_password.clone(),
                dir,
            };
            match s.wait_ready() {
                Ok(()) => return s,
                Err(e) if attempt < 3 => {
                    eprintln!("slapd attempt {attempt} did not come up ({e}); retrying");
                    s.stop();
                    dir = std::mem::replace(&mut s.dir, tempfile::tempdir().expect("a tempdir"));
                }
                Err(e) => {
                    let log =
                        fs::read_to_string(s.dir.path().join("slapd.log")).unwrap_or_default();
                    panic!("slapd did not come up: {e}\n{log}");
                }
            }
        }
        unreachable!("the loop returns or panics")
    }

    fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok())
                .flatten()
            {
                return Err(format!("slapd exited: {status}"));
            }
            match self.bind(ADMIN_DN, &self.admin_password.clone()) {
                Ok(Bind::Ok) => return Ok(()),
                Ok(Bind::Refused) => return Err("the admin bind was refused".into()),
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(format!("no answer within {START_TIMEOUT:?}: {last}"))
    }

    /// The rootdn's password (for the connector's `bind_password_env`).
    pub fn admin_password(&self) -> &str {
        &self.admin_password
    }

    /// The password of [`SERVICE_DN`].
    pub fn service_password(&self) -> &str {
        &self.service_password
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A simple bind as `dn` with `password` (via `ldapwhoami -y FILE`, so
    /// the password is in no argv): `Ok` or `Refused` (invalidCredentials),
    /// `Err` for anything else (server down, protocol error).
    pub fn bind(&self, dn: &str, password: &str) -> Result<Bind, String> {
        let pwfile = self.dir.path().join(format!("bindpw-{}", random_hex(8)));
        {
            let mut f = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&pwfile)
                .map_err(|e| format!("creating a password file: {e}"))?;
            f.write_all(password.as_bytes())
                .map_err(|e| format!("writing a password file: {e}"))?;
        }
        let out = Command::new(binary("ldapwhoami"))
            .args(["-x", "-o", "nettimeout=5", "-H"])
            .arg(&self.url)
            .arg("-D")
            .arg(dn)
            .arg("-y")
            .arg(&pwfile)
            .output();
        let _ = fs::remove_file(&pwfile);
        let out = out.map_err(|e| format!("running ldapwhoami: {e}"))?;
        match out.status.code() {
            Some(0) => Ok(Bind::Ok),
            Some(49) => Ok(Bind::Refused),
            _ => Err(format!(
                "ldapwhoami {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )),
        }
    }

    /// A bind that must get an answer (panics on `Err`).
    pub fn binds(&self, dn: &str, password: &str) -> bool {
        match self.bind(dn, password) {
            Ok(b) => b == Bind::Ok,
            Err(e) => panic!("bind as {dn} got no answer: {e}"),
        }
    }

    /// `ldapsearch` as the admin, LDIF output (for checks on raw entries).
    pub fn search(&self, base: &str, filter: &str, attrs: &[&str]) -> String {
        let pwfile = self.dir.path().join(format!("adminpw-{}", random_hex(8)));
        fs::write(&pwfile, &self.admin_password).expect("write the admin password file");
        let out = Command::new(binary("ldapsearch"))
            .args([
                "-x",
                "-LLL",
                "-o",
                "ldif-wrap=no",
                "-o",
                "nettimeout=5",
                "-H",
            ])
            .arg(&self.url)
            .args(["-D", ADMIN_DN, "-y"])
            .arg(&pwfile)
            .args(["-b", base, filter])
            .args(attrs)
            .output()
            .expect("run ldapsearch");
        let _ = fs::remove_file(&pwfile);
        assert!(
            out.status.success() || out.status.code() == Some(32),
            "ldapsearch {base} {filter}: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `ldapadd` (or `ldapmodify` LDIF with changetypes) as the admin.
    pub fn modify(&self, ldif: &str) {
        let pwfile = self.dir.path().join(format!("adminpw-{}", random_hex(8)));
        fs::write(&pwfile, &self.admin_password).expect("write the admin password file");
        let mut child = Command::new(binary("ldapmodify"))
            .args(["-x", "-a", "-o", "nettimeout=5", "-H"])
            .arg(&self.url)
            .args(["-D", ADMIN_DN, "-y"])
            .arg(&pwfile)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ldapmodify");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(ldif.as_bytes())
            .expect("write LDIF to ldapmodify");
        let out = child.wait_with_output().expect("wait for ldapmodify");
        let _ = fs::remove_file(&pwfile);
        assert!(
            out.status.success(),
            "ldapmodify: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Stops the server (SIGTERM, bounded wait, then SIGKILL). Also on drop.
    pub fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        let pid = child.id() as libc::pid_t;
        // SAFETY: `pid` is our own child, not yet reaped (try_wait said so).
        unsafe {
            libc::kill(pid, libc::SIGTERM);
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Slapd {
    fn drop(&mut self) {
        self.stop();
    }
}
