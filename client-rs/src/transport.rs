//! Where a client connects, and the byte stream it gets: the daemon's Unix
//! socket, TCP with TLS 1.3 and a client certificate, or plain TCP (which
//! the daemon offers only for loopback testing). The protocol above is the
//! same on each.

use std::fmt;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::Error;

/// A daemon's address.
#[derive(Clone)]
pub enum Endpoint {
    /// `unix:/run/sessiond/sessiond.sock`, or a bare path.
    Unix(PathBuf),
    /// `tls://host:port`.
    Tls { addr: String, server_name: ServerName<'static>, config: Arc<rustls::ClientConfig> },
    /// `tcp://host:port`: no encryption and no authentication.
    Tcp(String),
}

impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// The URL form, which [`Endpoint::parse`] reads back.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unix(path) => write!(f, "unix:{}", path.display()),
            Self::Tls { addr, .. } => write!(f, "tls://{addr}"),
            Self::Tcp(addr) => write!(f, "tcp://{addr}"),
        }
    }
}

/// The files a TLS client needs: the CA that signed the daemon's
/// certificate, and the client's own certificate and key (PEM).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl TlsFiles {
    /// The files `sessiond tls init` writes into `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        Self { ca: dir.join("ca.pem"), cert: dir.join("client.pem"), key: dir.join("client.key") }
    }

    /// A rustls configuration: TLS 1.3 only, the daemon checked against
    /// `ca`, this client's certificate offered.
    pub fn client_config(&self) -> Result<Arc<rustls::ClientConfig>, Error> {
        let file_err = |path: &Path, e: &dyn fmt::Display| Error::Config(format!("{}: {e}", path.display()));
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&self.ca).map_err(|e| file_err(&self.ca, &e))? {
            roots.add(cert.map_err(|e| file_err(&self.ca, &e))?).map_err(|e| file_err(&self.ca, &e))?;
        }
        let chain = CertificateDer::pem_file_iter(&self.cert)
            .map_err(|e| file_err(&self.cert, &e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_err(&self.cert, &e))?;
        let key = PrivateKeyDer::from_pem_file(&self.key).map_err(|e| file_err(&self.key, &e))?;
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| Error::Config(e.to_string()))?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Arc::new(config))
    }
}

impl Endpoint {
    /// Reads `unix:PATH`, a bare path, `tls://HOST:PORT` (which needs
    /// `tls`) or `tcp://HOST:PORT`.
    pub fn parse(url: &str, tls: Option<&TlsFiles>) -> Result<Self, Error> {
        if let Some(addr) = url.strip_prefix("tls://") {
            let files = tls.ok_or_else(|| {
                Error::Config(format!("{url}: a TLS address needs the CA, certificate and key files"))
            })?;
            let host = host_of(addr).ok_or_else(|| Error::Config(format!("{url}: expected tls://HOST:PORT")))?;
            let server_name = ServerName::try_from(host.to_owned())
                .map_err(|e| Error::Config(format!("{url}: {host:?} is not a host name or address: {e}")))?;
            return Ok(Self::Tls { addr: addr.to_owned(), server_name, config: files.client_config()? });
        }
        if let Some(addr) = url.strip_prefix("tcp://") {
            host_of(addr).ok_or_else(|| Error::Config(format!("{url}: expected tcp://HOST:PORT")))?;
            return Ok(Self::Tcp(addr.to_owned()));
        }
        if url.contains("://") {
            return Err(Error::Config(format!("{url}: the schemes are unix:, tls:// and tcp://")));
        }
        Ok(Self::Unix(PathBuf::from(url.strip_prefix("unix:").unwrap_or(url))))
    }
}

/// The host of `HOST:PORT` or `[V6]:PORT`, if the port is a number.
fn host_of(addr: &str) -> Option<&str> {
    let (host, port) = addr.rsplit_once(':')?;
    port.parse::<u16>().ok()?;
    let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
    (!host.is_empty()).then_some(host)
}

pub(crate) type AsyncReader = Box<dyn AsyncRead + Send + Unpin>;
pub(crate) type AsyncWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// Connects (and for TLS, completes the handshake).
pub(crate) async fn connect_async(endpoint: &Endpoint) -> io::Result<(AsyncReader, AsyncWriter)> {
    match endpoint {
        Endpoint::Unix(path) => {
            let (rd, wr) = tokio::net::UnixStream::connect(path).await?.into_split();
            Ok((Box::new(rd), Box::new(wr)))
        }
        Endpoint::Tcp(addr) => {
            let stream = tokio::net::TcpStream::connect(addr.as_str()).await?;
            stream.set_nodelay(true)?;
            let (rd, wr) = stream.into_split();
            Ok((Box::new(rd), Box::new(wr)))
        }
        Endpoint::Tls { addr, server_name, config } => {
            let stream = tokio::net::TcpStream::connect(addr.as_str()).await?;
            stream.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(config.clone()).connect(server_name.clone(), stream).await?;
            let (rd, wr) = tokio::io::split(tls);
            Ok((Box::new(rd), Box::new(wr)))
        }
    }
}

/// A blocking stream, with its timeouts set on the socket beneath.
pub(crate) enum BlockingStream {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>>),
}

impl fmt::Debug for BlockingStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unix(_) => "BlockingStream::Unix",
            Self::Tcp(_) => "BlockingStream::Tcp",
            Self::Tls(_) => "BlockingStream::Tls",
        })
    }
}

impl BlockingStream {
    pub fn connect(endpoint: &Endpoint, timeout: std::time::Duration) -> io::Result<Self> {
        let tcp = |addr: &str| {
            let stream = std::net::TcpStream::connect(addr)?;
            stream.set_nodelay(true)?;
            stream.set_read_timeout(Some(timeout))?;
            stream.set_write_timeout(Some(timeout))?;
            Ok::<_, io::Error>(stream)
        };
        match endpoint {
            Endpoint::Unix(path) => {
                let stream = std::os::unix::net::UnixStream::connect(path)?;
                stream.set_read_timeout(Some(timeout))?;
                stream.set_write_timeout(Some(timeout))?;
                Ok(Self::Unix(stream))
            }
            Endpoint::Tcp(addr) => Ok(Self::Tcp(tcp(addr)?)),
            Endpoint::Tls { addr, server_name, config } => {
                let session = rustls::ClientConnection::new(config.clone(), server_name.clone())
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
                let mut stream = rustls::StreamOwned::new(session, tcp(addr)?);
                // The handshake now, so that a refused certificate is an
                // error of the connect, not of the first request.
                while stream.conn.is_handshaking() {
                    stream.conn.complete_io(&mut stream.sock)?;
                }
                Ok(Self::Tls(Box::new(stream)))
            }
        }
    }
}

impl Read for BlockingStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Unix(s) => s.read(buf),
            Self::Tcp(s) => s.read(buf),
            Self::Tls(s) => s.read(buf),
        }
    }
}

impl Write for BlockingStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Unix(s) => s.write(buf),
            Self::Tcp(s) => s.write(buf),
            Self::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Unix(s) => s.flush(),
            Self::Tcp(s) => s.flush(),
            Self::Tls(s) => s.flush(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_read_back_as_written() {
        for (url, shown) in [
            ("/run/sessiond/sessiond.sock", "unix:/run/sessiond/sessiond.sock"),
            ("unix:sessiond-data/sessiond.sock", "unix:sessiond-data/sessiond.sock"),
            ("tcp://127.0.0.1:7451", "tcp://127.0.0.1:7451"),
            ("tcp://[::1]:7451", "tcp://[::1]:7451"),
        ] {
            assert_eq!(Endpoint::parse(url, None).unwrap().to_string(), shown);
        }
        for bad in ["tcp://127.0.0.1", "tcp://:80", "http://x:1", "tls://localhost:7450"] {
            assert!(matches!(Endpoint::parse(bad, None), Err(Error::Config(_))), "{bad}");
        }
    }
}
