//! The floor: a server that does nothing but answer, over the same kind of
//! socket, with frames the size of sessiond's. No store can beat it here.
//!
//! Framing: a u32 little-endian length, then that many bytes; the answer is
//! `response_len` bytes framed the same way.
//!
//! The server runs in its own process (`sessiond-load echo-serve`, which
//! [`spawn`] starts), so a round trip crosses processes as it does with a
//! real store: an echo inside the load generator's runtime would be a floor
//! no server could be measured against.

use std::path::Path;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};

/// Starts `sessiond-load echo-serve` on `path` as a child process and waits
/// until it accepts.
pub fn spawn(path: &Path, response_len: usize) -> std::io::Result<std::process::Child> {
    let _ = std::fs::remove_file(path);
    let child = std::process::Command::new(std::env::current_exe()?)
        .arg("echo-serve")
        .arg("--socket")
        .arg(path)
        .arg("--response-len")
        .arg(response_len.to_string())
        .stdin(std::process::Stdio::null())
        .spawn()?;
    let start = std::time::Instant::now();
    while std::os::unix::net::UnixStream::connect(path).is_err() {
        if start.elapsed() > std::time::Duration::from_secs(10) {
            return Err(std::io::Error::other("the echo server did not start"));
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    Ok(child)
}

/// Serves echo on `path` until the process ends, on the current runtime.
pub fn serve(path: &Path, response_len: usize) -> std::io::Result<()> {
    let _ = std::fs::remove_file(path);
    let listener = UnixListener::bind(path)?;
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(answer(stream, response_len));
        }
    });
    Ok(())
}

async fn answer(stream: UnixStream, response_len: usize) {
    let (mut rd, mut wr) = stream.into_split();
    let mut response = (response_len as u32).to_le_bytes().to_vec();
    response.resize(4 + response_len, b'e');
    let mut buf = Vec::new();
    let mut rd = tokio::io::BufReader::with_capacity(64 * 1024, &mut rd);
    loop {
        let mut len = [0u8; 4];
        if rd.read_exact(&mut len).await.is_err() {
            return;
        }
        buf.resize(u32::from_le_bytes(len) as usize, 0);
        if rd.read_exact(&mut buf).await.is_err() || wr.write_all(&response).await.is_err() {
            return;
        }
    }
}

/// The size of sessiond's answer to GET for a session of `fields` fields of
/// `value_size` bytes: what the echo answers with.
pub fn response_len(fields: usize, value_size: usize) -> usize {
    16 + fields * (value_size + 12) + 60
}

/// The client side: one request at a time, or `n` back to back.
#[derive(Debug)]
pub struct EchoConn {
    stream: UnixStream,
    request: Vec<u8>,
    buf: Vec<u8>,
}

impl EchoConn {
    pub async fn connect(path: &Path, request_len: usize) -> std::io::Result<Self> {
        let stream = UnixStream::connect(path).await?;
        let mut request = (request_len as u32).to_le_bytes().to_vec();
        request.resize(4 + request_len, b'r');
        Ok(Self { stream, request, buf: Vec::new() })
    }

    /// Sends `n` requests, then reads their `n` answers.
    pub async fn round_trips(&mut self, n: usize) -> std::io::Result<()> {
        let batch: Vec<u8> = self.request.repeat(n);
        self.stream.write_all(&batch).await?;
        for _ in 0..n {
            let mut len = [0u8; 4];
            self.stream.read_exact(&mut len).await?;
            self.buf.resize(u32::from_le_bytes(len) as usize, 0);
            self.stream.read_exact(&mut self.buf).await?;
        }
        Ok(())
    }
}
