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
use crate::net::{EventLoop, Listener, LoopConfig, PeerPolicy, SocketError, SocketOptions, bind_socket};
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
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
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
    /// The TCP listeners as URLs of their bound addresses (a port of 0 in
    /// the configuration is the one the system chose).
    tcp: Vec<String>,
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
        let [log_a, log_b] = crate::store::log_paths(&config.db_path());
        for path in [config.db_path(), log_a, log_b] {
            crate::datadir::make_private(&path).map_err(|source| StartError::FileMode { path, source })?;
        }
        let socket = config.socket_path();
        let options = SocketOptions {
            mode: config.socket_mode()?,
            dir_mode: config.socket_dir_mode()?,
            group: config.socket_group.clone(),
        };
        // The certificates are read before anything is bound, so a bad one
        // stops the start with nothing half done.
        let tls = if config.tls.listen.is_empty() {
            None
        } else {
            Some(crate::tls::TlsServer::load(&config.tls, &config.data_dir)?)
        };
        // Binding sets the umask, so it happens before any thread starts.
        let mut listeners = vec![Listener::Unix(bind_socket(&socket, &options)?)];
        let socket_file = file_id(&socket);
        let bind_tcp = |addr: std::net::SocketAddr| {
            mio::net::TcpListener::bind(addr).map_err(|source| StartError::Listen { addr, source })
        };
        let mut tcp = Vec::new();
        for &addr in &config.tls.listen {
            let listener = bind_tcp(addr)?;
            let bound = listener.local_addr().map_err(|source| StartError::Listen { addr, source })?;
            tcp.push(format!("tls://{bound}"));
            listeners.push(Listener::Tls(listener, tls.clone().expect("loaded above, as tls.listen is set")));
        }
        if let Some(addr) = config.insecure_plaintext_tcp_for_testing {
            let listener = bind_tcp(addr)?;
            let bound = listener.local_addr().map_err(|source| StartError::Listen { addr, source })?;
            tracing::warn!(%bound, "listening on PLAIN TCP, without TLS or any check of who connects: for testing only");
            tcp.push(format!("tcp://{bound}"));
            listeners.push(Listener::PlainTcp(listener));
        }

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
            tls_handshake_timeout: Duration::from_secs(config.tls.handshake_timeout_secs),
        };
        let mut loops = (0..config.threads())
            .map(|id| EventLoop::new(id, service.clone(), loop_config.clone(), shutdown.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StartError::Thread)?;
        let mailboxes: Vec<_> = loops.iter().map(EventLoop::mailbox).collect();
        for l in &mut loops {
            l.set_peers(mailboxes.clone());
        }
        for listener in listeners {
            loops[0].add_listener(listener).map_err(StartError::Thread)?;
        }
        let handles = loops
            .into_iter()
            .enumerate()
            .map(|(i, l)| std::thread::Builder::new().name(format!("sessiond-net-{i}")).spawn(move || l.run()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(StartError::Thread)?;
        Ok(Self {
            socket,
            socket_file,
            tcp,
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

    /// The TCP listeners, as `tls://ADDR` (and `tcp://ADDR` for the plain
    /// one for testing), with the addresses as bound.
    pub fn tcp_urls(&self) -> &[String] {
        &self.tcp
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
