//! The harness for end-to-end tests: starts the real `sessiond` binary on a
//! temporary directory, waits for its readiness line (never a fixed sleep)
//! and kills it on drop.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod mmdb;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The directory holding this build's binaries (target/debug or
/// target/release), found from the test executable's own path.
fn bin_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let deps = exe.parent().expect("deps dir");
    deps.parent().expect("profile dir").to_path_buf()
}

/// Path of a workspace binary, built once per test process so a test never
/// runs a stale one, unless `SESSIOND_BINS_BUILT` says the caller built them
/// (`tests/run-all` does, with the whole workspace's features: a build of
/// just these packages resolves features differently and compiles a second
/// copy of most dependencies, minutes on a fresh machine).
pub fn binary(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        if std::env::var_os("SESSIOND_BINS_BUILT").is_some() {
            return;
        }
        let release = bin_dir().ends_with("release");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut cmd = Command::new(cargo);
        cmd.args(["build", "--quiet", "-p", "sessiond", "-p", "sessionctl", "-p", "sessiond-bench", "--bins"]);
        if release {
            cmd.arg("--release");
        }
        let status = cmd.status().expect("run cargo build");
        assert!(status.success(), "building the binaries failed");
    });
    let path = bin_dir().join(name);
    assert!(path.exists(), "{} is missing", path.display());
    path
}

/// A running daemon on its own data directory.
#[derive(Debug)]
pub struct Daemon {
    pub child: Child,
    pub data_dir: PathBuf,
    pub socket: PathBuf,
    /// Every address the daemon said it listens on: the socket, then
    /// `tls://ADDR` and `tcp://ADDR` listeners, as bound.
    pub listening: Vec<String>,
    config: Option<PathBuf>,
    stderr_log: PathBuf,
    env: Vec<(String, String)>,
}

impl Daemon {
    /// Starts a daemon on `data_dir` with an optional TOML config text.
    pub fn start(data_dir: &Path, config: Option<&str>) -> Self {
        Self::start_with_env(data_dir, config, &[])
    }

    /// As `start`, with extra environment variables for the daemon.
    pub fn start_with_env(data_dir: &Path, config: Option<&str>, env: &[(&str, &str)]) -> Self {
        let config_path = config.map(|text| {
            let path = data_dir.with_extension("toml");
            std::fs::write(&path, text).unwrap();
            path
        });
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::spawn(data_dir.to_path_buf(), config_path, env)
    }

    /// The config file the daemon was started with, if any.
    pub fn config_path(&self) -> Option<&Path> {
        self.config.as_deref()
    }

    fn spawn(data_dir: PathBuf, config: Option<PathBuf>, env: Vec<(String, String)>) -> Self {
        let socket = data_dir.join("sessiond.sock");
        let stderr_log = data_dir.with_extension("log");
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&stderr_log).unwrap();
        let mut cmd = Command::new(binary("sessiond"));
        cmd.arg("--data-dir").arg(&data_dir).arg("--threads").arg("2");
        if let Some(c) = &config {
            cmd.arg("--config").arg(c);
        }
        cmd.env("RUST_LOG", std::env::var("SESSIOND_TEST_LOG").unwrap_or_else(|_| "info".into()));
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
        let mut child = cmd.stdout(Stdio::piped()).stderr(log).spawn().expect("spawn sessiond");
        let ready = wait_ready(&mut child, &stderr_log);
        let listening =
            ready.trim_start_matches("sessiond ready: listening on ").split(" and ").map(String::from).collect();
        Self { child, data_dir, socket, listening, config, stderr_log, env }
    }

    /// Starts another daemon on the same data directory and config.
    pub fn restart(&mut self) {
        self.kill();
        let next = Self::spawn(self.data_dir.clone(), self.config.clone(), self.env.clone());
        // The old value's drop kills again: harmless, it is already reaped.
        drop(std::mem::replace(self, next));
    }

    pub fn options(&self) -> sessiond_client::Options {
        sessiond_client::Options::new(&self.socket).timeout(Duration::from_secs(10))
    }

    pub async fn client(&self) -> sessiond_client::Client {
        sessiond_client::Client::connect(self.options()).await.expect("connect")
    }

    pub fn blocking(&self) -> sessiond_client::blocking::Client {
        sessiond_client::blocking::Client::connect(self.options()).expect("connect")
    }

    /// The first listener whose URL starts with `scheme` (`tls://`, `tcp://`).
    pub fn url(&self, scheme: &str) -> String {
        self.listening.iter().find(|u| u.starts_with(scheme)).cloned().unwrap_or_else(|| panic!("no {scheme} listener"))
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn signal(&self, signal: rustix::process::Signal) {
        let pid = rustix::process::Pid::from_raw(i32::try_from(self.child.id()).unwrap()).unwrap();
        rustix::process::kill_process(pid, signal).unwrap();
    }

    /// Waits up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let start = Instant::now();
        while start.elapsed() < limit {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        None
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// What the daemon logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.stderr_log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One daemon for a whole test process, for suites (the frameworks') whose
/// tests build their own stores and have no place to keep a `Daemon`.
///
/// A static is never dropped, so the daemon runs under a shell that holds
/// the read end of a pipe from this process: when the test process exits,
/// however it exits, the pipe closes, and the shell stops the daemon and
/// removes its directory.
#[derive(Debug)]
pub struct SharedDaemon {
    pub socket: PathBuf,
    _keeper: std::process::ChildStdin,
}

impl SharedDaemon {
    pub fn options(&self) -> sessiond_client::Options {
        sessiond_client::Options::new(&self.socket).timeout(Duration::from_secs(10))
    }

    pub async fn client(&self) -> sessiond_client::Client {
        sessiond_client::Client::connect(self.options()).await.expect("connect")
    }
}

/// The test process's shared daemon (see `SharedDaemon`), started on first
/// use with the default configuration.
pub fn shared_daemon() -> &'static SharedDaemon {
    static SHARED: OnceLock<SharedDaemon> = OnceLock::new();
    SHARED.get_or_init(|| {
        let dir = tempfile::Builder::new().prefix("sessiond-shared-").tempdir().unwrap().keep();
        let data_dir = dir.join("data");
        let log_path = dir.join("sessiond.log");
        let script = r#"
            "$1" --data-dir "$2" --threads 2 2>>"$3" &
            daemon=$!
            cat >/dev/null
            kill -TERM "$daemon" 2>/dev/null
            wait "$daemon"
            rm -rf "$4"
        "#;
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(script)
            .arg("sh")
            .arg(binary("sessiond"))
            .arg(&data_dir)
            .arg(&log_path)
            .arg(&dir)
            .env("RUST_LOG", std::env::var("SESSIOND_TEST_LOG").unwrap_or_else(|_| "info".into()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the shared sessiond");
        let keeper = child.stdin.take().expect("piped stdin");
        wait_ready(&mut child, &log_path);
        // Dropping `child` neither kills nor waits: the shell lives on, and
        // is reaped by init once this process is gone.
        SharedDaemon { socket: data_dir.join("sessiond.sock"), _keeper: keeper }
    })
}

/// Starts a daemon on `data_dir` that is expected to refuse to start;
/// returns its exit code and what it wrote to stderr. Fails the test if it
/// becomes ready, or runs for more than `READY_TIMEOUT`.
pub fn start_refused(data_dir: &Path) -> (Option<i32>, String) {
    let mut child = Command::new(binary("sessiond"))
        .arg("--data-dir")
        .arg(data_dir)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sessiond");
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if start.elapsed() > READY_TIMEOUT {
            let _ = child.kill();
            panic!("sessiond neither started nor refused within {READY_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("sessiond ready"), "sessiond started: {stdout}");
    (status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Resident memory of process `pid`, in bytes (VmRSS).
pub fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).expect("VmRSS line");
    line.split_whitespace().nth(1).unwrap().parse::<u64>().unwrap() * 1024
}

/// Reads the child's stdout until the readiness line, or fails the test
/// with the daemon's log if it exits or takes too long.
/// Waits for the daemon's ready line, and returns it.
fn wait_ready(child: &mut Child, stderr_log: &Path) -> String {
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        while let Some(Ok(line)) = lines.next() {
            if line.starts_with("sessiond ready") {
                let _ = tx.send(line);
            }
        }
    });
    match rx.recv_timeout(READY_TIMEOUT) {
        Ok(line) => line,
        Err(_) => {
            let _ = child.kill();
            let status = child.wait();
            panic!(
                "sessiond did not become ready ({status:?}); its log:\n{}",
                std::fs::read_to_string(stderr_log).unwrap_or_default()
            );
        }
    }
}

/// Runs `sessionctl` against `socket`; returns (exit code, stdout, stderr).
pub fn sessionctl(socket: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(binary("sessionctl"))
        .arg("--socket")
        .arg(socket)
        .args(args)
        .env_remove("SESSIOND_SOCKET")
        .output()
        .expect("run sessionctl");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim_end().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim_end().to_owned(),
    )
}
