//! A PostgreSQL cluster of a test's own, beside the shared server: a fault test stops,
//! restarts and kills it without disturbing the rest of the suite. Its port and files are
//! the test's; it is stopped and its files removed when dropped.
//!
//! It runs Debian's server binaries (`/usr/lib/postgresql/<version>/bin`, from the
//! `postgresql` package `scripts/test` installs) as the `postgres` user when the test
//! runs as root, since the server refuses to run as root.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

/// One PostgreSQL cluster started for a test.
pub struct OwnDatabase {
    dir: PathBuf,
    bin: PathBuf,
    /// The port it listens on (loopback).
    pub port: u16,
}

impl OwnDatabase {
    /// Creates a cluster (trust authentication for `postgres`, no fsync: a test's data
    /// need not survive a power cut) on a free port, and starts it.
    pub async fn start() -> Self {
        let id = ulid::Ulid::new().to_string().to_lowercase();
        let dir = std::env::temp_dir().join(format!("hookline-pg-{id}"));
        std::fs::create_dir_all(&dir).unwrap();
        let database = Self { dir, bin: server_binaries(), port: free_port() };
        database.hand_over();
        let data = database.data().display().to_string();
        database.run_checked("initdb", &["-D", &data, "--auth=trust", "-U", "postgres", "-N", "-E", "UTF8"]).await;
        database.resume().await;
        database
    }

    /// The URL of its `postgres` database, for creating a test's own.
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the server (`pg_ctl stop -m fast`: every connection is closed).
    pub async fn stop(&self) {
        let data = self.data().display().to_string();
        self.run_checked("pg_ctl", &["-D", &data, "-m", "fast", "-w", "stop"]).await;
    }

    /// Starts the server again after [`Self::stop`] or [`Self::kill`], waiting until it
    /// takes connections.
    pub async fn resume(&self) {
        let data = self.data().display().to_string();
        let log = self.dir.join("server.log").display().to_string();
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        self.run_checked("pg_ctl", &["-D", &data, "-l", &log, "-o", &options, "-w", "-t", "60", "start"]).await;
    }

    /// SIGKILL of the postmaster: connections drop with no goodbye, and the next start
    /// recovers from the write-ahead log.
    pub async fn kill(&self) {
        let pid = self.postmaster_pid().expect("the server is running");
        let killed = Command::new("kill").args(["-9", &pid]).status().expect("kill runs");
        assert!(killed.success(), "kill -9 {pid}");
        // Its children notice and exit; the data directory is free once they have.
        for _ in 0..100 {
            let alive = Command::new("pgrep").args(["-f", &self.data().display().to_string()]).output();
            if alive.is_ok_and(|out| out.stdout.is_empty()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the killed server's processes are still there");
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn postmaster_pid(&self) -> Option<String> {
        let pid = std::fs::read_to_string(self.data().join("postmaster.pid")).ok()?;
        pid.lines().next().map(str::to_owned)
    }

    fn hand_over(&self) {
        if is_root() {
            let owned = Command::new("chown").arg("-R").arg("postgres:postgres").arg(&self.dir).status();
            assert!(owned.is_ok_and(|status| status.success()), "could not hand {} to postgres", self.dir.display());
        }
    }

    fn command(&self, program: &str, args: &[&str]) -> Command {
        let binary = self.bin.join(program);
        let mut command = if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--"]).arg(binary);
            command
        } else {
            Command::new(binary)
        };
        command.args(args).current_dir(&self.dir);
        command
    }

    async fn run_checked(&self, program: &str, args: &[&str]) {
        let mut command = self.command(program, args);
        let output = tokio::task::spawn_blocking(move || command.output().expect("the command runs")).await.unwrap();
        assert!(
            output.status.success(),
            "{program} {}: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for OwnDatabase {
    fn drop(&mut self) {
        let data = self.data().display().to_string();
        let _ = self.command("pg_ctl", &["-D", &data, "-m", "immediate", "-w", "stop"]).output();
        if let Some(pid) = self.postmaster_pid() {
            let _ = Command::new("kill").args(["-9", &pid]).output();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The newest installed server's binaries.
fn server_binaries() -> PathBuf {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .expect("PostgreSQL server packages are installed (scripts/ensure-services)")
        .filter_map(Result::ok)
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin)| bin.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop().expect("a PostgreSQL server with initdb").1
}

/// A port free now on loopback (the server taking it takes it a moment later).
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub(crate) fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|out| out.stdout.starts_with(b"0\n"))
}
