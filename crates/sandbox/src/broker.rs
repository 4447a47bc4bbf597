//! A RabbitMQ node of a test's own, beside the shared one: a fault test stops, restarts
//! and kills it without disturbing the rest of the suite. Its name, ports and files are
//! the test's; it is stopped and its files removed when dropped.
//!
//! `rabbitmq-server` and `rabbitmqctl` come from Debian's `rabbitmq-server` package
//! (`scripts/test` installs it); as root they run the node as the `rabbitmq` user, so
//! its directory is handed to that user.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// One RabbitMQ node started for a test.
pub struct OwnBroker {
    node: String,
    dir: PathBuf,
    /// The AMQP port it listens on (loopback).
    pub port: u16,
    dist_port: u16,
}

impl OwnBroker {
    /// Starts a node with a fresh name, free ports and an empty directory, and waits
    /// until it takes connections.
    pub async fn start() -> Self {
        let id = ulid::Ulid::new().to_string().to_lowercase();
        let dir = std::env::temp_dir().join(format!("hookline-rabbit-{id}"));
        let broker = Self {
            node: format!("hookline-{id}@localhost"),
            dir,
            port: crate::database::free_port(),
            dist_port: crate::database::free_port(),
        };
        broker.prepare();
        broker.boot().await;
        broker
    }

    /// A cluster of `size` nodes on this machine, joined to the first: for failover
    /// tests with quorum queues replicated across them.
    pub async fn cluster(size: usize) -> Vec<Self> {
        let mut nodes = Vec::with_capacity(size);
        for _ in 0..size {
            nodes.push(Self::start().await);
        }
        for node in &nodes[1..] {
            node.ctl_checked(&["stop_app"]).await;
            node.ctl_checked(&["join_cluster", &nodes[0].node]).await;
            node.ctl_checked(&["start_app"]).await;
            node.ctl_checked(&["await_startup"]).await;
        }
        nodes
    }

    /// The URL hookline connects to it with.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// `rabbitmqctl stop_app`: the node closes every connection and stops serving, the
    /// Erlang VM stays up.
    pub async fn stop_app(&self) {
        self.ctl_checked(&["stop_app"]).await;
    }

    /// `rabbitmqctl start_app`, waiting until the node serves again.
    pub async fn start_app(&self) {
        self.ctl_checked(&["start_app"]).await;
        self.ctl_checked(&["await_startup"]).await;
    }

    /// SIGKILL of the node's VM: no goodbye to anyone connected.
    pub async fn kill(&self) {
        let pid = std::fs::read_to_string(self.pid_file()).expect("the node writes its pid file");
        let killed = run(Command::new("kill").args(["-9", pid.trim()])).await;
        assert!(killed.status.success(), "kill -9 {pid}: {}", String::from_utf8_lossy(&killed.stderr));
        // The name is free again once the VM is gone.
        for _ in 0..100 {
            if !self.ctl(&["ping"]).await.status.success() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("node {} still answers after kill -9", self.node);
    }

    /// Starts the node again after [`Self::kill`], with the data it had.
    pub async fn restart(&self) {
        self.boot().await;
    }

    /// Stops the whole node (`rabbitmqctl stop`).
    pub async fn stop(&self) {
        self.ctl_checked(&["stop"]).await;
    }

    fn prepare(&self) {
        std::fs::create_dir_all(self.dir.join("mnesia")).unwrap();
        std::fs::create_dir_all(self.dir.join("log")).unwrap();
        std::fs::write(self.dir.join("enabled_plugins"), "[].\n").unwrap();
        let config = format!("listeners.tcp.local = 127.0.0.1:{}\n", self.port);
        std::fs::write(self.dir.join("rabbitmq.conf"), config).unwrap();
        if crate::database::is_root() {
            let owned = std::process::Command::new("chown")
                .args(["-R", "rabbitmq:rabbitmq"])
                .arg(&self.dir)
                .status()
                .expect("chown runs");
            assert!(owned.success(), "could not hand {} to the rabbitmq user", self.dir.display());
        }
    }

    async fn boot(&self) {
        let mut server = Command::new("rabbitmq-server");
        server.arg("-detached");
        self.environment(&mut server);
        let started = run(&mut server).await;
        assert!(started.status.success(), "rabbitmq-server: {}", String::from_utf8_lossy(&started.stderr));
        // `await_startup` gives up at once on a node that has not registered its name
        // yet, so first wait for the name.
        for _ in 0..300 {
            if self.ctl(&["await_startup", "--timeout", "60"]).await.status.success() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        self.ctl_checked(&["await_startup", "--timeout", "60"]).await;
    }

    /// Where the node writes its VM's pid (setting `RABBITMQ_PID_FILE` elsewhere makes
    /// the Debian start script wait on it for ever).
    fn pid_file(&self) -> PathBuf {
        self.dir.join("mnesia").join(format!("{}.pid", self.node))
    }

    fn environment(&self, command: &mut Command) {
        let path = |name: &str| self.dir.join(name);
        command
            .env("RABBITMQ_NODENAME", &self.node)
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
            .env("RABBITMQ_LOG_BASE", path("log"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins"))
            .env("RABBITMQ_CONFIG_FILE", path("rabbitmq.conf"));
    }

    async fn ctl(&self, args: &[&str]) -> std::process::Output {
        run(Command::new("rabbitmqctl").arg("-n").arg(&self.node).args(args)).await
    }

    async fn ctl_checked(&self, args: &[&str]) {
        let output = self.ctl(args).await;
        assert!(
            output.status.success(),
            "rabbitmqctl -n {} {}: {}{}",
            self.node,
            args.join(" "),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl").arg("-n").arg(&self.node).arg("stop").output();
        if let Ok(pid) = std::fs::read_to_string(self.pid_file()) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).output();
        }
        remove(&self.dir);
    }
}

fn remove(dir: &Path) {
    let _ = std::fs::remove_dir_all(dir);
}

async fn run(command: &mut Command) -> std::process::Output {
    let mut command = std::mem::replace(command, Command::new("true"));
    tokio::task::spawn_blocking(move || command.output().expect("the command runs")).await.unwrap()
}
