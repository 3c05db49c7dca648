//! Clients for sessiond.
//!
//! [`Client`] is async (tokio): one connection (the Unix socket, or TCP
//! with TLS: see [`Endpoint`]), multiplexed by request id, so many tasks
//! can share a clone of it and their requests are pipelined. [`blocking::Client`] serves code that is not async. Both speak
//! the protocol of `sessiond-protocol` and map answers to the same typed
//! results and errors.

mod api;
pub mod blocking;
pub mod cluster;
mod conn;
mod error;
pub mod prometheus;
mod transport;

pub use api::{Created, Session, Written};
pub use cluster::{BlockingCluster, Cluster};
pub use conn::Client;
pub use error::{DaemonFailure, Error};
pub use sessiond_protocol::{
    Counter, ErrorCode, Expiry, Field, Histogram, HostToken, Limits, Location, Meta, Owner, Redeemed, Sealed,
    SessionInfo, Settings, StatsOk, Unsealed, UserPage, Write,
};
pub use transport::{Endpoint, TlsFiles};

use std::path::PathBuf;
use std::time::Duration;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Options {
    pub endpoint: Endpoint,
    /// Limit on each request, from sending to the answer.
    pub timeout: Duration,
    /// Free text naming the client in the daemon's logs.
    pub client_name: String,
}

impl Options {
    /// The daemon's Unix socket at `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self::at(Endpoint::Unix(socket.into()))
    }

    /// The daemon at `url` (see [`Endpoint::parse`]); a `tls://` URL needs
    /// `tls`.
    pub fn parse(url: &str, tls: Option<&TlsFiles>) -> Result<Self, Error> {
        Ok(Self::at(Endpoint::parse(url, tls)?))
    }

    pub fn at(endpoint: Endpoint) -> Self {
        Self { endpoint, timeout: Duration::from_secs(5), client_name: "sessiond-client".into() }
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}
