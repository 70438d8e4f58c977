//! A real, throw-away PostgreSQL cluster for tests: finds Debian's `initdb`
//! and `pg_ctl` (on PATH, or under `/usr/lib/postgresql/*/bin`), makes a
//! cluster in a tempdir with SCRAM-SHA-256 authentication for every
//! connection (the superuser's password from a file), starts it on a free
//! port on 127.0.0.1 with its socket in the tempdir, and stops it with
//! `pg_ctl stop -m immediate` when the handle drops (also on panic), falling
//! back to SIGKILL of the postmaster's pid. The server logs every DDL
//! statement (`log_statement=ddl`), so a test can see what reached it. PostgreSQL refuses to run as
//! root: as root, the server runs as the `postgres` user Debian's package
//! creates (`runuser`). Never skips silently. Test-only.

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

use super::connectors::is_executable;

/// The superuser the cluster is made with.
pub const SUPERUSER: &str = "postgres";

/// The directory holding `initdb`, `pg_ctl`, `psql` and `postgres`.
pub fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let on_path = std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|d| d.join("initdb"))
                .find(|p| is_executable(p))
        });
        // Debian links /usr/bin tools to a wrapper; the real binaries sit in
        // the versioned directory, next to pg_ctl and postgres.
        if let Some(p) = on_path.and_then(|p| fs::canonicalize(p).ok())
            && let Some(dir) = p.parent()
            && is_executable(&dir.join("pg_ctl"))
            && is_executable(&dir.join("postgres"))
        {
            return dir.to_path_buf();
        }
        let mut versions: Vec<(u32, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                let bin = e.path().join("bin");
                is_executable(&bin.join("initdb")).then_some((v, bin))
            })
            .collect();
        versions.sort();
        versions.pop().map(|(_, b)| b).unwrap_or_else(|| {
            panic!(
                "PostgreSQL is not installed (no initdb on PATH or under /usr/lib/postgresql/*/bin): \
                 run scripts/test.sh as root, or apt-get install -y postgresql"
            )
        })
    })
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

fn id_of(flag: &str, user: &str) -> u32 {
    let out = Command::new("id")
        .args([flag, user])
        .output()
        .unwrap_or_else(|e| panic!("id {flag} {user}: {e}"));
    assert!(
        out.status.success(),
        "PostgreSQL refuses to run as root and there is no `{user}` user to run it as \
         (Debian's postgresql package creates it): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or_else(|e| panic!("id {flag} {user}: {e}"))
}

/// A free TCP port on 127.0.0.1 (bound to port 0, then released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0 to find a free port")
}

/// A running cluster; stopped on drop.
pub struct Postgres {
    dir: tempfile::TempDir,
    data: PathBuf,
    /// As root, the server's tools run as this user.
    run_as: Option<&'static str>,
    running: bool,
    pub port: u16,
    /// The superuser's password.
    pub password: String,
}

impl Postgres {
    /// A fresh cluster, started and accepting connections.
    pub fn start() -> Postgres {
        let bin = bin_dir();
        let dir = tempfile::tempdir().expect("tempdir for postgres");
        let run_as = is_root().then_some("postgres");
        if let Some(user) = run_as {
            let (uid, gid) = (id_of("-u", user), id_of("-g", user));
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .unwrap_or_else(|e| panic!("chown {}: {e}", dir.path().display()));
        }
        let password = format!("pg-test-{}-{}", std::process::id(), free_port());
        let pwfile = dir.path().join("superuser.pw");
        fs::write(&pwfile, format!("{password}\n")).expect("write the password file");
        fs::create_dir(dir.path().join("sock")).expect("socket dir");
        if let Some(user) = run_as {
            let (uid, gid) = (id_of("-u", user), id_of("-g", user));
            for p in [pwfile.clone(), dir.path().join("sock")] {
                std::os::unix::fs::chown(&p, Some(uid), Some(gid))
                    .unwrap_or_else(|e| panic!("chown {}: {e}", p.display()));
            }
        }
        let data = dir.path().join("data");
        let mut pg = Postgres {
            data,
            run_as,
            running: false,
            port: 0,
            password,
            dir,
        };
        let out = pg.tool(bin.join("initdb"), |c| {
            c.arg("-D")
                .arg(&pg.data)
                .args(["-A", "scram-sha-256", "-U", SUPERUSER, "-E", "UTF8"])
                .args(["--locale", "C", "--no-instructions", "--no-sync"])
                .arg(format!("--pwfile={}", pwfile.display()));
        });
        assert!(out.status.success(), "initdb failed:\n{}", text(&out));
        let _ = fs::remove_file(&pwfile);
        // A port found free may be taken before the server binds it: a
        // bounded number of tries, each on a new port.
        let mut last = String::new();
        for _ in 0..3 {
            let port = free_port();
            let options = format!(
                "-p {port} -k {} -c listen_addresses=127.0.0.1 -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c log_statement=ddl",
                pg.dir.path().join("sock").display()
            );
            let log = pg.dir.path().join("server.log");
            let out = pg.tool(bin.join("pg_ctl"), |c| {
                c.arg("-D")
                    .arg(&pg.data)
                    .arg("-l")
                    .arg(&log)
                    .args(["-o", &options, "-w", "-t", "60", "start"]);
            });
            if out.status.success() {
                pg.port = port;
                pg.running = true;
                return pg;
            }
            last = format!("{}\n--- server log\n{}", text(&out), pg.log_tail());
        }
        panic!("pg_ctl start failed three times; last:\n{last}");
    }

    /// Run one of the server's tools (as the `postgres` user when root).
    fn tool(&self, program: PathBuf, args: impl FnOnce(&mut Command)) -> Output {
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&program);
                c
            }
            None => Command::new(&program),
        };
        args(&mut cmd);
        cmd.current_dir(self.dir.path())
            .stdin(Stdio::null())
            .env("LANG", "C")
            .env_remove("PGDATA")
            .output()
            .unwrap_or_else(|e| panic!("running {}: {e}", program.display()))
    }

    /// The server's log so far.
    pub fn server_log(&self) -> String {
        fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn log_tail(&self) -> String {
        let log = self.server_log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// A libpq connection string for `user` over TCP.
    pub fn dsn_for(&self, user: &str, password: &str, db: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user={user} password={password} dbname={db} connect_timeout=10",
            self.port
        )
    }

    /// The superuser's connection string to database `db`.
    pub fn dsn(&self, db: &str) -> String {
        self.dsn_for(SUPERUSER, &self.password, db)
    }

    /// Run `sql` with `psql` as `user` (password over TCP, SCRAM) in `db`:
    /// its unaligned, tuples-only output, or psql's error text.
    pub fn psql_as(
        &self,
        user: &str,
        password: &str,
        db: &str,
        sql: &str,
    ) -> Result<String, String> {
        let out = self
            .psql_command(user, password, db, sql)
            .output()
            .expect("run psql");
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
        }
    }

    /// The `psql` command `psql_as` runs (to start it in the background).
    pub fn psql_command(&self, user: &str, password: &str, db: &str, sql: &str) -> Command {
        let mut cmd = Command::new(bin_dir().join("psql"));
        cmd.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["-U", user, "-d", db, "-c", sql])
            .env("PGPASSWORD", password)
            .env("PGCONNECT_TIMEOUT", "10")
            .env("PGSSLMODE", "disable")
            .env_remove("PGSERVICE")
            .env_remove("PGPASSFILE")
            .env_remove("PGOPTIONS")
            .stdin(Stdio::null());
        cmd
    }

    /// Run `sql` as the superuser in `db`; panics with psql's error.
    pub fn admin(&self, db: &str, sql: &str) -> String {
        self.psql_as(SUPERUSER, &self.password, db, sql)
            .unwrap_or_else(|e| panic!("psql as {SUPERUSER} in {db}: {sql}\n{e}"))
    }

    /// Stop the server now (`pg_ctl stop -m immediate`, else SIGKILL of the
    /// postmaster's pid).
    pub fn stop(&mut self) {
        if !self.running {
            return;
        }
        self.running = false;
        let out = self.tool(bin_dir().join("pg_ctl"), |c| {
            c.arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "-t", "30", "stop"]);
        });
        if out.status.success() {
            return;
        }
        let pid = fs::read_to_string(self.data.join("postmaster.pid"))
            .ok()
            .and_then(|t| t.lines().next().and_then(|l| l.trim().parse::<i32>().ok()));
        if let Some(pid) = pid.filter(|p| *p > 0) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}\n{}{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}
