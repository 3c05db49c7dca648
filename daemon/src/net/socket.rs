//! Binding the Unix socket: its directory, stale-socket handling, file mode
//! and group, and who may connect.

use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};

use rustix::fs::Mode;

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SocketError {
    #[error("another sessiond is already serving {0}")]
    InUse(PathBuf),
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    #[error("cannot bind {path}: {source}")]
    Bind { path: PathBuf, source: io::Error },
    #[error("socket_group {0:?} is neither a group name nor a number")]
    UnknownGroup(String),
}

/// How the socket file is made.
#[derive(Debug, Clone)]
pub struct SocketOptions {
    /// Permission bits of the socket file.
    pub mode: u32,
    /// Permission bits of its directory, if the daemon creates it.
    pub dir_mode: u32,
    /// Group to own the socket.
    pub group: Option<String>,
}

/// Binds `path` with no moment in which the file is more open than
/// `options.mode` (the umask is set before `bind`), in a directory created
/// with `options.dir_mode` if missing.
///
/// A socket file left by a dead daemon is replaced; one a live daemon
/// answers on is not. Must be called before other threads start, since the
/// umask is process-wide.
pub fn bind_socket(path: &Path, options: &SocketOptions) -> Result<mio::net::UnixListener, SocketError> {
    let bind_err = |source| SocketError::Bind { path: path.to_owned(), source };
    let gid = options.group.as_deref().map(group_id).transpose()?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        ensure_dir(dir, options.dir_mode).map_err(bind_err)?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(SocketError::InUse(path.to_owned()));
            }
            tracing::info!(path = %path.display(), "removing a stale socket file");
            std::fs::remove_file(path).map_err(bind_err)?;
        }
        Ok(_) => return Err(SocketError::NotASocket(path.to_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_err(e)),
    }
    let old = rustix::process::umask(Mode::from_raw_mode(!options.mode & 0o777));
    let bound = mio::net::UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = bound.map_err(bind_err)?;
    if let Some(gid) = gid {
        rustix::fs::chown(path, None, Some(rustix::fs::Gid::from_raw(gid))).map_err(|e| bind_err(e.into()))?;
    }
    // bind() applied mode & !umask; set the mode exactly as configured.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(options.mode)).map_err(bind_err)?;
    Ok(listener)
}

/// Creates `dir` with `mode` if it is missing. An existing directory is
/// left as it is (it may be shared, like /run), with a warning if it is more
/// open than `mode`.
fn ensure_dir(dir: &Path, mode: u32) -> io::Result<()> {
    match std::fs::metadata(dir) {
        Ok(meta) => {
            let actual = meta.permissions().mode() & 0o777;
            if actual & !mode != 0 {
                tracing::warn!(dir = %dir.display(), mode = format!("{actual:o}"), "the socket's directory is more open than socket_dir_mode");
            }
            Ok(())
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir)?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        }
        Err(e) => Err(e),
    }
}

fn group_id(group: &str) -> Result<u32, SocketError> {
    if let Ok(gid) = group.parse() {
        return Ok(gid);
    }
    match nix::unistd::Group::from_name(group) {
        Ok(Some(g)) => Ok(g.gid.as_raw()),
        _ => Err(SocketError::UnknownGroup(group.to_owned())),
    }
}

/// Who may connect: the daemon's own user, and the configured uids and
/// primary gids. Credentials come from SO_PEERCRED, as they were at
/// connect(2); pids are never trusted (they are reused).
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    own_uid: u32,
    uids: Vec<u32>,
    gids: Vec<u32>,
}

impl PeerPolicy {
    pub fn new(uids: Vec<u32>, gids: Vec<u32>) -> Self {
        Self { own_uid: rustix::process::geteuid().as_raw(), uids, gids }
    }

    /// Whether the peer may connect; if not, whose connection it was and
    /// why, for the log.
    pub fn check(&self, stream: &mio::net::UnixStream) -> Result<(), Refused> {
        let cred = rustix::net::sockopt::socket_peercred(stream)
            .map_err(|e| Refused { uid: None, why: format!("no peer credentials: {e}") })?;
        let (uid, gid) = (cred.uid.as_raw(), cred.gid.as_raw());
        if uid == self.own_uid || self.uids.contains(&uid) || self.gids.contains(&gid) {
            Ok(())
        } else {
            let why = format!("uid {uid} gid {gid} (pid {}) is not allowed", cred.pid.as_raw_nonzero());
            Err(Refused { uid: Some(uid), why })
        }
    }
}

/// A connection turned away for its credentials.
#[derive(Debug)]
pub struct Refused {
    /// The peer's user, if its credentials could be read.
    pub uid: Option<u32>,
    pub why: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(mode: u32) -> SocketOptions {
        SocketOptions { mode, dir_mode: 0o750, group: None }
    }

    #[test]
    fn socket_gets_the_configured_mode_and_stale_files_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/s.sock");
        let listener = bind_socket(&path, &options(0o640)).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        let dir_mode = std::fs::metadata(dir.path().join("run")).unwrap().permissions().mode() & 0o777;
        assert_eq!(dir_mode, 0o750, "a directory the daemon creates gets socket_dir_mode");
        // A live listener refuses a second bind.
        assert!(matches!(bind_socket(&path, &options(0o640)), Err(SocketError::InUse(_))));
        drop(listener);
        // The file is now stale: nobody answers, so it is replaced.
        bind_socket(&path, &options(0o600)).unwrap();
    }

    #[test]
    fn a_regular_file_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-socket");
        std::fs::write(&path, b"data").unwrap();
        assert!(matches!(bind_socket(&path, &options(0o660)), Err(SocketError::NotASocket(_))));
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }

    #[test]
    fn the_socket_group_is_set_by_number_or_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let gid = rustix::process::getegid().as_raw();
        let opts = SocketOptions { group: Some(gid.to_string()), ..options(0o660) };
        let _l = bind_socket(&path, &opts).unwrap();
        assert_eq!(std::os::unix::fs::MetadataExt::gid(&std::fs::metadata(&path).unwrap()), gid);
        let bad = SocketOptions { group: Some("no-such-group-sessiond".into()), ..options(0o660) };
        assert!(matches!(bind_socket(&dir.path().join("t.sock"), &bad), Err(SocketError::UnknownGroup(_))));
    }
}
