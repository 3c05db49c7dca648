//! A daemon whose own data filled the disk says how much free space it
//! needs to start again, and starts with that much: less than twice its
//! log (the log is replayed in bounded steps; what remains is redb's own
//! growth, which doubles a file under 4 GiB).
//!
//! The test needs a small file system of its own, a tmpfs, which only root
//! (with the right to mount) may make; elsewhere it skips with a message.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::path::{Path, PathBuf};
use std::process::Command;

use sessiond_client::Expiry;
use sessiond_tests::{Daemon, start_refused};

const FS_MB: u64 = 160;

/// A tmpfs mounted for the test's life.
struct Mount(PathBuf);

impl Mount {
    fn new(at: &Path) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let size = format!("size={FS_MB}m,mode=0700");
        let status = Command::new("mount").args(["-t", "tmpfs", "-o", &size, "tmpfs"]).arg(at).status();
        match status {
            Ok(s) if s.success() => Some(Self(at.to_path_buf())),
            other => {
                eprintln!("skipped: cannot mount a tmpfs ({other:?}); the disk-full test needs root");
                None
            }
        }
    }

    fn free_bytes(&self) -> u64 {
        let st = rustix::fs::statvfs(&self.0).unwrap();
        st.f_bavail * st.f_frsize
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fills the file system until `leave` bytes are free.
fn fill(mount: &Mount, leave: u64) -> PathBuf {
    let path = mount.0.join("filler");
    let size = mount.free_bytes().saturating_sub(leave);
    let file = std::fs::File::create(&path).unwrap();
    // tmpfs allocates on write, so write for real.
    let chunk = vec![0x5A_u8; 1 << 20];
    let mut left = size;
    let mut w = std::io::BufWriter::new(file);
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        std::io::Write::write_all(&mut w, &chunk[..n]).unwrap();
        left -= n as u64;
    }
    std::io::Write::flush(&mut w).unwrap();
    path
}

#[test]
fn a_full_disk_start_says_how_much_room_it_needs_and_starts_with_that_much() {
    let dir = tempfile::tempdir().unwrap();
    let Some(mount) = Mount::new(&dir.path().join("fs")) else { return };
    let data = mount.0.join("data");
    // No checkpoint while the test writes: every write is in the log only.
    let config = "[durability]\ncheckpoint_mb = 4096\ncheckpoint_secs = 3600\n";
    let mut daemon = Daemon::start(&data, Some(config));
    let client = daemon.blocking();
    let value = "v".repeat(8000);
    let mut keys = Vec::new();
    for i in 0..6000 {
        keys.push(client.create([("n", i.to_string()), ("blob", value.clone())], Expiry::Default).unwrap().key);
    }
    daemon.kill();
    let log_bytes = std::fs::metadata(data.join("sessions.log")).unwrap().len();
    assert!(log_bytes > 40 << 20, "the log holds the writes: {log_bytes} bytes");

    // Too little room even for one step: refused, saying how much it needs.
    let filler = fill(&mount, 4 << 20);
    let (code, stderr) = start_refused(&data);
    assert_ne!(code, Some(0));
    let needed_mb: u64 = stderr
        .split("about ")
        .nth(1)
        .and_then(|rest| rest.split(" MiB must be free").next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no 'about N MiB must be free' in: {stderr}"));
    let db_mb = std::fs::metadata(data.join("sessions.redb")).unwrap().len() >> 20;
    eprintln!("log {} MiB, database file {db_mb} MiB: it asks for {needed_mb} MiB free", log_bytes >> 20);
    assert!(needed_mb < 2 * (log_bytes >> 20), "needs {needed_mb} MiB, twice the {} MiB log", log_bytes >> 20);

    // Room for what it said: it starts, and every acknowledged session is
    // there.
    std::fs::remove_file(&filler).unwrap();
    fill(&mount, (needed_mb + 4) << 20);
    let mut daemon = Daemon::start(&data, Some(config));
    let client = daemon.blocking();
    for (i, key) in keys.iter().enumerate() {
        let session = client.get(key).unwrap_or_else(|e| panic!("session {i} after the replay: {e}"));
        assert_eq!(session.fields["n"], i.to_string().as_bytes());
    }
    daemon.kill();
}
