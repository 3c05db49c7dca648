//! Start-up and shutdown: the order in which the parts come to life.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use crate::clock::{Clock, SystemClock};
use crate::config::Config;
use crate::engine::Engine;
use crate::net::{EventLoop, LoopConfig, PeerPolicy, SocketError, SocketOptions, bind_socket};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    #[error(transparent)]
    DataDir(#[from] crate::datadir::DataDirError),
    #[error("cannot narrow the mode of {path}: {source}")]
    FileMode { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Socket(#[from] SocketError),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    GeoIp(#[from] crate::geoip::GeoIpError),
    #[error(transparent)]
    Keyring(#[from] crate::tokens::KeyringError),
    #[error("cannot start a thread: {0}")]
    Thread(std::io::Error),
}

/// Something the process should react to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerEvent {
    /// Stop cleanly (SIGTERM, SIGINT).
    Stop,
    /// Reload the key ring and the reloadable configuration (SIGHUP).
    Reload,
    /// Storage failed; writes are refused. Stop and exit non-zero.
    Fatal(String),
}

#[derive(Debug)]
pub struct Server {
    socket: PathBuf,
    /// The bound socket file's (device, inode): shutdown removes the path
    /// only while it is still this file, not one a newer daemon bound there.
    socket_file: Option<(u64, u64)>,
    loops: Vec<JoinHandle<()>>,
    mailboxes: Vec<Arc<crate::reply::Mailbox>>,
    shutdown: Arc<AtomicBool>,
    engine: Engine,
    config: Config,
    events_tx: mpsc::Sender<ServerEvent>,
    events_rx: mpsc::Receiver<ServerEvent>,
}

impl Server {
    /// Opens (and if needed repairs) the database, binds the socket and
    /// starts the writer and the event loops. When this returns, the daemon
    /// accepts connections.
    pub fn start(config: &Config) -> Result<Self, StartError> {
        Self::start_with_clock(config, Arc::new(SystemClock))
    }

    pub fn start_with_clock(config: &Config, clock: Arc<dyn Clock>) -> Result<Self, StartError> {
        crate::datadir::prepare(&config.data_dir)?;
        // The database lock comes first: a second daemon on the same data
        // directory fails here, before it touches the socket.
        let (store, _) = Store::open_with_cache(&config.db_path(), config.db_cache_bytes)?;
        for path in [config.db_path(), crate::store::log_path(&config.db_path())] {
            crate::datadir::make_private(&path).map_err(|source| StartError::FileMode { path, source })?;
        }
        let socket = config.socket_path();
        let options = SocketOptions {
            mode: config.socket_mode()?,
            dir_mode: config.socket_dir_mode()?,
            group: config.socket_group.clone(),
        };
        // Binding sets the umask, so it happens before any thread starts.
        let listener = bind_socket(&socket, &options)?;
        let socket_file = file_id(&socket);

        let (events_tx, events_rx) = mpsc::channel();
        let fatal_tx = events_tx.clone();
        let on_fatal = Box::new(move |reason| {
            let _ = fatal_tx.send(ServerEvent::Fatal(reason));
        });
        let engine = Engine::start(config, store, clock, on_fatal)?;
        let service = engine.service.clone();
        let limits = &config.limits;

        let shutdown = Arc::new(AtomicBool::new(false));
        let loop_config = LoopConfig {
            max_frame: limits.max_frame,
            max_inflight: limits.max_inflight,
            max_output_bytes: limits.max_output_bytes,
            max_output_total: limits.max_output_total_bytes,
            write_timeout: Duration::from_secs(limits.write_timeout_secs),
            idle_timeout: Duration::from_secs(limits.idle_timeout_secs),
            frame_timeout: Duration::from_secs(limits.frame_timeout_secs),
            peers: PeerPolicy::new(config.access.allowed_uids.clone(), config.access.allowed_gids.clone()),
            max_connections: limits.max_connections,
        };
        let mut loops = (0..config.threads())
            .map(|id| EventLoop::new(id, service.clone(), loop_config.clone(), shutdown.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StartError::Thread)?;
        let mailboxes: Vec<_> = loops.iter().map(EventLoop::mailbox).collect();
        for l in &mut loops {
            l.set_peers(mailboxes.clone());
        }
        loops[0].set_listener(listener).map_err(StartError::Thread)?;
        let handles = loops
            .into_iter()
            .enumerate()
            .map(|(i, l)| std::thread::Builder::new().name(format!("sessiond-net-{i}")).spawn(move || l.run()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StartError::Thread)?;
        Ok(Self {
            socket,
            socket_file,
            loops: handles,
            mailboxes,
            shutdown,
            engine,
            config: config.clone(),
            events_tx,
            events_rx,
        })
    }

    pub fn socket_path(&self) -> &std::path::Path {
        &self.socket
    }

    /// A sender for events that should stop the server (signal handlers).
    pub fn events(&self) -> mpsc::Sender<ServerEvent> {
        self.events_tx.clone()
    }

    /// Applies what can change while running: the key ring and the
    /// `[transfer]` and `[cookies]` rules (the log level is main's). Other
    /// changes are named in the log as needing a restart. Connections are not
    /// touched. On error the old configuration stays in force.
    pub fn reload(&mut self, new: &Config) -> Result<(), crate::tokens::KeyringError> {
        self.engine.tokens.reload(new.token_config())?;
        let mut kept = self.config.clone();
        kept.transfer = new.transfer.clone();
        kept.cookies = new.cookies.clone();
        kept.keyring.clone_from(&new.keyring);
        kept.log.clone_from(&new.log);
        for section in crate::config::changed_sections(&kept, new) {
            tracing::warn!(section, "this change needs a restart; it is not applied");
        }
        self.config = kept;
        tracing::info!("reloaded the key ring and the transfer and cookie settings");
        Ok(())
    }

    /// Blocks until something asks the server to stop or reload.
    pub fn wait(&self) -> ServerEvent {
        self.events_rx.recv().unwrap_or(ServerEvent::Stop)
    }

    /// Stops accepting, answers in-flight requests, removes the socket file,
    /// stops the sweeper and makes the final durable commit.
    pub fn shutdown(self) {
        self.shutdown.store(true, Ordering::Release);
        for mb in &self.mailboxes {
            mb.wake();
        }
        for handle in self.loops {
            if handle.join().is_err() {
                tracing::error!("an event loop panicked");
            }
        }
        // The loops are gone and nothing answers on the socket: a daemon
        // started now may replace it as stale while the final commit runs,
        // so remove the path only if it is still the file this one bound.
        if self.socket_file.is_some() && file_id(&self.socket) == self.socket_file {
            if let Err(e) = std::fs::remove_file(&self.socket) {
                tracing::warn!(error = %e, "cannot remove the socket file");
            }
        }
        self.engine.shutdown();
    }
}

/// A file's (device, inode), if it can be read.
fn file_id(path: &std::path::Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).ok().map(|m| (m.dev(), m.ino()))
}
