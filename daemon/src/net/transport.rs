//! The byte streams a connection runs on: the Unix socket, TLS over TCP,
//! and plain TCP (for loopback testing only). The event loop sees one
//! non-blocking stream with `read`, `write` and `flush`; framing, limits,
//! backpressure and timeouts are the same on all of them.

use std::io::{self, Read, Write};
use std::sync::Arc;

use mio::net::{TcpStream, UnixStream};
use mio::{Interest, Registry, Token};
use rustls::ServerConnection;
use sessiond_protocol::{ErrorCode, Response};

use crate::tls::ClientAllow;

/// Plaintext rustls may hold for sending beyond what the socket took: one
/// flush's worth. The connection's own output limit stays the real bound.
const TLS_SEND_BUFFER: usize = 64 << 10;

#[derive(Debug)]
pub enum Stream {
    Unix(UnixStream),
    Tcp(TcpStream),
    Tls(Box<TlsStream>),
}

#[derive(Debug)]
pub struct TlsStream {
    tcp: TcpStream,
    session: ServerConnection,
    allow: Arc<ClientAllow>,
    /// The client's certificate was checked against `allow` once the
    /// handshake ended.
    admitted: bool,
}

impl Stream {
    pub fn tls(tcp: TcpStream, mut session: ServerConnection, allow: Arc<ClientAllow>) -> Self {
        session.set_buffer_limit(Some(TLS_SEND_BUFFER));
        Self::Tls(Box::new(TlsStream { tcp, session, allow, admitted: false }))
    }

    /// Whether a read that returned fewer bytes than asked for shows the
    /// socket drained. True of the kernel's streams; not of TLS, where a
    /// read returns one record's plaintext at most, so TLS is read until
    /// it says `WouldBlock`.
    pub fn short_read_drains(&self) -> bool {
        !matches!(self, Self::Tls(_))
    }

    /// A TLS handshake not yet finished (and admitted): for its timeout.
    pub fn handshaking(&self) -> bool {
        match self {
            Self::Tls(t) => !t.admitted,
            _ => false,
        }
    }

    /// Reads plaintext. `Ok(0)` is the end of the stream.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Unix(s) => s.read(buf),
            Self::Tcp(s) => s.read(buf),
            Self::Tls(t) => t.read(buf),
        }
    }

    /// Writes plaintext; TLS encrypts it and sends what the socket takes.
    pub fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Unix(s) => s.write(buf),
            Self::Tcp(s) => s.write(buf),
            Self::Tls(t) => t.write(buf),
        }
    }

    /// Sends bytes the stream itself holds (TLS records, handshake
    /// messages); true when none are left.
    pub fn flush(&mut self) -> io::Result<bool> {
        match self {
            Self::Tls(t) => t.send(),
            _ => Ok(true),
        }
    }

    /// Bytes written to the stream that have not reached the socket.
    pub fn holds_output(&self) -> bool {
        match self {
            Self::Tls(t) => t.session.wants_write(),
            _ => false,
        }
    }

    /// Best effort, for a connection turned away before it is served: a
    /// parting frame on a plain stream; TLS has no channel yet, so nothing.
    pub fn write_parting(&self, bytes: &[u8]) {
        let _ = match self {
            Self::Unix(s) => (&*s).write(bytes),
            Self::Tcp(s) => (&*s).write(bytes),
            Self::Tls(_) => Ok(0),
        };
    }
}

impl TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.session.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // The peer closed without close_notify: an end like any other
                // here, since every request is framed and checksummed.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) => return Err(e),
            }
            if self.session.read_tls(&mut self.tcp)? == 0 {
                return Ok(0);
            }
            if let Err(e) = self.session.process_new_packets() {
                // rustls queued an alert saying why; send it if the socket
                // takes it now, and end the connection either way.
                let _ = self.session.write_tls(&mut self.tcp);
                return Err(io::Error::new(io::ErrorKind::InvalidData, e));
            }
            if !self.admitted && !self.session.is_handshaking() {
                if let Err(refused) = self.admit() {
                    // Said over the channel, so the client learns why; it
                    // has been served nothing.
                    let mut out = Vec::new();
                    Response::error(ErrorCode::Forbidden, "not allowed to use this daemon").encode_frame(0, &mut out);
                    let _ = self.session.writer().write_all(&out);
                    self.session.send_close_notify();
                    let _ = self.send();
                    return Err(refused);
                }
            }
        }
    }

    /// Checks the verified client certificate's identity against the
    /// allowed ones. rustls has already checked its chain to the CA, its
    /// dates and that it is for client authentication.
    fn admit(&mut self) -> io::Result<()> {
        let cert = self.session.peer_certificates().and_then(|c| c.first());
        match cert.map(|c| self.allow.admits(c)) {
            Some(Ok(())) => {
                self.admitted = true;
                Ok(())
            }
            Some(Err(why)) => Err(io::Error::new(io::ErrorKind::PermissionDenied, why)),
            None => Err(io::Error::new(io::ErrorKind::PermissionDenied, "no client certificate")),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut taken = self.session.writer().write(buf)?;
        if taken == 0 && !buf.is_empty() {
            // rustls's buffer is full: only sending makes room.
            self.send()?;
            taken = self.session.writer().write(buf)?;
            if taken == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
        }
        // What the socket does not take now stays queued in rustls, for
        // the event loop's next flush.
        self.send()?;
        Ok(taken)
    }

    /// Writes queued TLS records to the socket until it would block; true
    /// when none are left.
    fn send(&mut self) -> io::Result<bool> {
        while self.session.wants_write() {
            match self.session.write_tls(&mut self.tcp) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

impl mio::event::Source for Stream {
    fn register(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Self::Unix(s) => s.register(registry, token, interests),
            Self::Tcp(s) => s.register(registry, token, interests),
            Self::Tls(t) => t.tcp.register(registry, token, interests),
        }
    }

    fn reregister(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Self::Unix(s) => s.reregister(registry, token, interests),
            Self::Tcp(s) => s.reregister(registry, token, interests),
            Self::Tls(t) => t.tcp.reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Self::Unix(s) => s.deregister(registry),
            Self::Tcp(s) => s.deregister(registry),
            Self::Tls(t) => t.tcp.deregister(registry),
        }
    }
}
