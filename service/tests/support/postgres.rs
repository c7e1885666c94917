//! A throwaway PostgreSQL server on loopback, from the machine's server binaries (on the
//! `PATH`, or where Debian's `postgresql` package puts them: `/usr/lib/postgresql/*/bin`).
//! `initdb` refuses to run as root, and CI runs as root: then the server runs as `nobody`,
//! through `runuser`.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;

/// A running server; stopped (immediately) and removed when dropped.
pub struct Postgres {
    dir: PathBuf,
    /// `postgres://…` for the `postgres` database.
    pub url: String,
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A free port on loopback (free when asked; the server binds it a moment later).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Where `program` (`initdb`, `pg_ctl`) is: on the `PATH`, else in the newest
/// `/usr/lib/postgresql/*/bin` that has it.
fn server_binary(program: &str) -> Option<PathBuf> {
    if Command::new(program).arg("--version").output().is_ok() {
        return Some(PathBuf::from(program));
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin").join(program)))
        .filter(|p| p.is_file())
        .collect();
    // Versions are directory names ("15", "16"): the newest last.
    found.sort_by_key(|p| {
        p.components()
            .nth(4)
            .and_then(|c| c.as_os_str().to_str()?.parse::<u32>().ok())
    });
    found.pop()
}

/// `program` with `args`, as `nobody` when we are root.
fn run_as_server_user(program: &str, args: &[&str]) -> Command {
    let resolved = server_binary(program).unwrap_or_else(|| PathBuf::from(program));
    let program = resolved.to_str().expect("a UTF-8 path");
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "nobody", "--", program]).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

/// Whether the server binaries are on the `PATH` or where Debian puts them.
pub fn available() -> bool {
    server_binary("initdb").is_some() && server_binary("pg_ctl").is_some()
}

impl Postgres {
    /// Starts a server in a fresh directory, tuned for a test: no fsync (the test may crash
    /// the server's processes, never the machine), but every commit's WAL written before it
    /// answers (`synchronous_commit` on: with it off, an immediate restart loses the last
    /// commits, an order's attempt among them, and an order is placed twice; the service
    /// relies on its commits being durable).
    pub fn start() -> Self {
        let dir =
            std::env::temp_dir().join(format!("hpp-e2e-pg-{}-{}", std::process::id(), free_port()));
        std::fs::create_dir_all(&dir).expect("a directory for the server");
        if is_root() {
            let status = Command::new("chown")
                .args(["nobody", dir.to_str().expect("a UTF-8 path")])
                .status()
                .expect("chown");
            assert!(status.success(), "chown the server's directory to nobody");
        }
        let data = dir.join("data");
        let data = data.to_str().expect("a UTF-8 path");
        let out = run_as_server_user(
            "initdb",
            &[
                "-D",
                data,
                "-U",
                "postgres",
                "--auth=trust",
                "--no-sync",
                "-E",
                "UTF8",
            ],
        )
        .output()
        .expect("initdb runs");
        assert!(
            out.status.success(),
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let port = free_port();
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={} \
             -c fsync=off -c full_page_writes=off \
             -c max_connections=300",
            dir.display()
        );
        let log = dir.join("log");
        let out = run_as_server_user(
            "pg_ctl",
            &[
                "-D",
                data,
                "-l",
                log.to_str().expect("a UTF-8 path"),
                "-o",
                &options,
                "-w",
                "start",
            ],
        )
        .output()
        .expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl start failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Self {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            dir,
        }
    }
}

impl Postgres {
    /// Restarts the server: `fast` (sessions ended cleanly) or `immediate` (as a crash: no
    /// checkpoint, crash recovery at start). Returns once it accepts connections again.
    pub fn restart(&self, mode: &str) {
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        let out = run_as_server_user(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap_or(""),
                "-l",
                log.to_str().unwrap_or(""),
                "-m",
                mode,
                "-w",
                "restart",
            ],
        )
        .output()
        .expect("pg_ctl runs");
        assert!(
            out.status.success(),
            "pg_ctl restart -m {mode} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = run_as_server_user(
            "pg_ctl",
            &["-D", data.to_str().unwrap_or(""), "-m", "immediate", "stop"],
        )
        .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
