//! Binding the Unix socket: stale-socket handling and file mode.

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
}

/// Binds `path` with permission bits `mode`, with no moment in which the
/// file is more open than `mode` (the umask is set before `bind`).
///
/// A socket file left by a dead daemon is replaced; one a live daemon
/// answers on is not. Must be called before other threads start, since the
/// umask is process-wide.
pub fn bind_socket(path: &Path, mode: u32) -> Result<mio::net::UnixListener, SocketError> {
    let bind_err = |source| SocketError::Bind { path: path.to_owned(), source };
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
    let old = rustix::process::umask(Mode::from_raw_mode(!mode & 0o777));
    let bound = mio::net::UnixListener::bind(path);
    rustix::process::umask(old);
    let listener = bound.map_err(bind_err)?;
    // bind() applied mode & !umask; set the mode exactly as configured.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(bind_err)?;
    Ok(listener)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_gets_the_configured_mode_and_stale_files_are_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = bind_socket(&path, 0o640).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        // A live listener refuses a second bind.
        assert!(matches!(bind_socket(&path, 0o640), Err(SocketError::InUse(_))));
        drop(listener);
        // The file is now stale: nobody answers, so it is replaced.
        bind_socket(&path, 0o600).unwrap();
    }

    #[test]
    fn a_regular_file_is_never_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("not-a-socket");
        std::fs::write(&path, b"data").unwrap();
        assert!(matches!(bind_socket(&path, 0o660), Err(SocketError::NotASocket(_))));
        assert_eq!(std::fs::read(&path).unwrap(), b"data");
    }
}
