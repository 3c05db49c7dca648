//! The data directory and the modes of what it holds.
//!
//! The database and the log hold every live session, and the key ring the
//! keys that seal cookies and tokens: no other local user may read them or
//! replace them. The daemon creates every file 0600 (and `main` sets the
//! umask to 0077, so nothing a library creates is looser); here it creates
//! the directory 0700, refuses one that others may write to, and narrows
//! the modes of files an older build or an operator left readable.

use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataDirError {
    #[error("cannot create or read the data directory {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("the data directory {path} is not a directory")]
    NotADirectory { path: PathBuf },
    #[error(
        "the data directory {path} is writable by group or others (mode {mode:o}): they could replace the \
         database; chmod go-w {path}"
    )]
    Writable { path: PathBuf, mode: u32 },
}

/// Creates `dir` 0700 if missing; checks an existing one.
pub fn prepare(dir: &Path) -> Result<(), DataDirError> {
    let io_err = |source| DataDirError::Io { path: dir.to_owned(), source };
    let meta = match std::fs::metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(io_err);
        }
        Err(e) => return Err(io_err(e)),
    };
    if !meta.is_dir() {
        return Err(DataDirError::NotADirectory { path: dir.to_owned() });
    }
    let mode = meta.permissions().mode() & 0o7777;
    // The sticky bit makes a shared directory safe to write in only for
    // names one owns; a data directory has no business being one.
    if mode & 0o022 != 0 {
        return Err(DataDirError::Writable { path: dir.to_owned(), mode });
    }
    if mode & 0o007 != 0 {
        tracing::warn!(dir = %dir.display(), mode = format!("{mode:o}"), "the data directory is open to others; its files are kept 0600");
    }
    Ok(())
}

/// Narrows `path` to 0600 if group or others may read or write it. A file
/// that does not exist is left alone.
pub fn make_private(path: &Path) -> io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mode = meta.permissions().mode() & 0o777;
    if meta.is_file() && mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        tracing::warn!(file = %path.display(), was = format!("{mode:o}"), "narrowed a data file readable by others to 0600");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_missing_directory_is_created_private_and_a_writable_one_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        prepare(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        for open in [0o770, 0o757, 0o1777] {
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(open)).unwrap();
            let err = prepare(&dir).unwrap_err().to_string();
            assert!(err.contains("writable by group or others"), "{open:o}: {err}");
        }
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        prepare(&dir).unwrap();
    }

    #[test]
    fn files_readable_by_others_are_narrowed() {
        let root = tempfile::tempdir().unwrap();
        let file = root.path().join("sessions.redb");
        std::fs::write(&file, b"x").unwrap();
        for loose in [0o644, 0o640, 0o666, 0o604] {
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(loose)).unwrap();
            make_private(&file).unwrap();
            assert_eq!(mode(&file), 0o600, "{loose:o}");
        }
        make_private(&root.path().join("missing")).unwrap();
    }
}
