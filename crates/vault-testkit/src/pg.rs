//! A PostgreSQL server of a test's own: `initdb` into a temporary directory, started by `pg_ctl`
//! on a Unix socket in that directory (no TCP port, so tests never collide), stopped when dropped.
//! As root it runs the server as the `postgres` user (or `nobody`): PostgreSQL refuses root.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A running server.
pub struct PgServer {
    tmp: tempfile::TempDir,
    bin: PathBuf,
    uid: Option<u32>,
    fsync: bool,
    tcp: Option<u16>,
}

/// The port number in the socket's name (`.s.PGSQL.<port>`); nothing listens on TCP.
const PORT: u16 = 5432;

impl PgServer {
    /// Starts a server, or says why none can be started here (no PostgreSQL installed, say):
    /// the caller skips with that message.
    pub fn start() -> Result<Self, String> {
        Self::start_with(false, None, false)
    }

    /// A server that takes TCP connections on 127.0.0.1:`tcp` over TLS only (a self-signed
    /// certificate for `localhost`, [`PgServer::certificate`]); its socket stays plain.
    pub fn start_tls(tcp: u16) -> Result<Self, String> {
        Self::start_with(false, Some(tcp), true)
    }

    /// The server's certificate (its own CA), for a client to verify it with.
    pub fn certificate(&self) -> PathBuf {
        self.tmp.path().join("server.crt")
    }

    /// A server that syncs its commits (`fsync=on`: what a benchmark measures against), and
    /// also listens on 127.0.0.1:`tcp` when given.
    pub fn start_durable(tcp: Option<u16>) -> Result<Self, String> {
        Self::start_with(true, tcp, false)
    }

    fn start_with(fsync: bool, tcp: Option<u16>, tls: bool) -> Result<Self, String> {
        let bin = bindir().ok_or("no PostgreSQL server binaries (initdb, pg_ctl) found")?;
        let tmp = tempfile::Builder::new()
            .prefix("vault-pg-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let uid = if is_root() {
            Some(
                user_id("postgres")
                    .or_else(|| user_id("nobody"))
                    .ok_or("root, and no postgres or nobody user to run the server as")?,
            )
        } else {
            None
        };
        let server = Self {
            tmp,
            bin,
            uid,
            fsync,
            tcp,
        };
        if let Some(uid) = uid {
            std::os::unix::fs::chown(server.tmp.path(), Some(uid), None)
                .map_err(|e| format!("chown of the test directory: {e}"))?;
        }
        std::fs::set_permissions(server.tmp.path(), std::fs::Permissions::from_mode(0o755))
            .map_err(|e| e.to_string())?;
        let init = server.run(
            "initdb",
            &[
                "-D",
                &server.data().to_string_lossy(),
                "-U",
                "vault",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        )?;
        if !init.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&init.stderr)
            ));
        }
        if tls {
            server.use_tls()?;
        }
        server.pg_ctl_start()?;
        server.stop_when_this_process_ends();
        Ok(server)
    }

    /// A self-signed certificate for localhost, `ssl = on`, and TCP connections refused unless
    /// they use TLS.
    fn use_tls(&self) -> Result<(), String> {
        let dir = self.tmp.path();
        let mut cmd = Command::new("openssl");
        cmd.args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-keyout",
        ])
        .arg(dir.join("server.key"))
        .arg("-out")
        .arg(self.certificate())
        .stdin(Stdio::null())
        .current_dir(dir);
        if let Some(uid) = self.uid {
            cmd.uid(uid);
        }
        let out = cmd.output().map_err(|e| format!("openssl: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "openssl req failed: {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        std::fs::set_permissions(
            dir.join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .map_err(|e| e.to_string())?;
        let conf = format!(
            "\nssl = on\nssl_cert_file = '{}'\nssl_key_file = '{}'\n",
            self.certificate().display(),
            dir.join("server.key").display()
        );
        let append = |file: &str, text: &str, replace: bool| -> Result<(), String> {
            let path = self.data().join(file);
            let mut body = if replace {
                String::new()
            } else {
                std::fs::read_to_string(&path).map_err(|e| e.to_string())?
            };
            body.push_str(text);
            std::fs::write(&path, body).map_err(|e| e.to_string())
        };
        append("postgresql.conf", &conf, false)?;
        append(
            "pg_hba.conf",
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n",
            true,
        )
    }

    /// A server kept in a `static` is never dropped: a watcher stops it (and removes its
    /// directory) once this test process has ended, so no server outlives its tests.
    fn stop_when_this_process_ends(&self) {
        let script = format!(
            "while [ -d /proc/{pid} ]; do sleep 1; done; \
             '{pg_ctl}' -D '{data}' -m immediate -w stop >/dev/null 2>&1; rm -rf '{dir}'",
            pid = std::process::id(),
            pg_ctl = self.bin.join("pg_ctl").display(),
            data = self.data().display(),
            dir = self.tmp.path().display(),
        );
        let mut cmd = Command::new("sh");
        cmd.args(["-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(uid) = self.uid {
            cmd.uid(uid);
        }
        let _ = cmd.spawn();
    }

    fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    /// The directory holding the server's socket.
    pub fn socket_dir(&self) -> &Path {
        self.tmp.path()
    }

    /// libpq key=value connection settings for the server's `postgres` database.
    pub fn conninfo(&self) -> String {
        match self.tcp {
            Some(port) => format!("host=127.0.0.1 port={port} user=vault dbname=postgres"),
            None => format!(
                "host={} port={PORT} user=vault dbname=postgres",
                self.socket_dir().display()
            ),
        }
    }

    /// A vault location: the connection settings with `vault=NAME`.
    pub fn location(&self, vault: &str) -> String {
        format!("{} vault={vault}", self.conninfo())
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<Output, String> {
        let mut cmd = Command::new(self.bin.join(tool));
        cmd.args(args)
            .stdin(Stdio::null())
            .env_remove("PGDATA")
            .current_dir(self.tmp.path());
        if let Some(uid) = self.uid {
            cmd.uid(uid);
        }
        cmd.output().map_err(|e| format!("{tool}: {e}"))
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        let listen = self.tcp.map_or(String::new(), |_| "127.0.0.1".to_string());
        let port = self.tcp.unwrap_or(PORT);
        let options = format!(
            "-k {} -p {port} -c listen_addresses='{listen}' -c fsync={} -c max_connections=200",
            self.socket_dir().display(),
            if self.fsync { "on" } else { "off" }
        );
        let log = self.tmp.path().join("log");
        let out = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-o",
                &options,
                "-w",
                "start",
            ],
        )?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "pg_ctl start failed: {}{}",
                String::from_utf8_lossy(&out.stderr),
                std::fs::read_to_string(&log).unwrap_or_default()
            ))
        }
    }

    /// Runs `sql` with `psql` (as the database's owner) and returns what it printed, one row
    /// per line, fields separated by `|`.
    pub fn sql(&self, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-X", "-At", "-v", "ON_ERROR_STOP=1", "-h"])
            .arg(self.socket_dir())
            .args([
                "-p",
                &self.tcp.unwrap_or(PORT).to_string(),
                "-U",
                "vault",
                "-d",
                "postgres",
                "-c",
                sql,
            ])
            .stdin(Stdio::null())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Stops the server at once (`immediate`: as a crash would, for the clients) and starts it
    /// again.
    pub fn restart(&self) {
        self.stop();
        self.pg_ctl_start().unwrap();
    }

    /// Stops the server at once.
    pub fn stop(&self) {
        let _ = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        );
    }
}

impl Drop for PgServer {
    fn drop(&mut self) {
        self.stop();
    }
}

fn is_root() -> bool {
    // `id -u`, rather than a dependency for one call.
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn user_id(name: &str) -> Option<u32> {
    let o = Command::new("id").args(["-u", name]).output().ok()?;
    if !o.status.success() {
        return None;
    }
    String::from_utf8_lossy(&o.stdout).trim().parse().ok()
}

/// Where `initdb` and `pg_ctl` are: `pg_config --bindir`, Debian's versioned directories (the
/// newest), or the `PATH`.
fn bindir() -> Option<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
    if let Ok(o) = Command::new("pg_config").arg("--bindir").output() {
        let d = PathBuf::from(String::from_utf8_lossy(&o.stdout).trim());
        if has(&d) {
            return Some(d);
        }
    }
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin"))
        .filter(|d| has(d))
        .collect();
    versions.sort_by_key(|d| {
        d.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(d) = versions.pop() {
        return Some(d);
    }
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).find(|d| has(d)))
}
