//! Clients for sessiond.
//!
//! [`Client`] is async (tokio): one Unix connection, multiplexed by request
//! id, so many tasks can share a clone of it and their requests are
//! pipelined. [`blocking::Client`] serves code that is not async. Both speak
//! the protocol of `sessiond-protocol` and map answers to the same typed
//! results and errors.

mod api;
pub mod blocking;
mod conn;
mod error;
pub mod prometheus;

pub use api::{Created, Session, Written};
pub use conn::Client;
pub use error::Error;
pub use sessiond_protocol::{
    Counter, ErrorCode, Expiry, Field, Histogram, HostToken, Limits, Location, Meta, Owner, Redeemed, Sealed,
    SessionInfo, Settings, StatsOk, Unsealed, UserPage, Write,
};

use std::path::PathBuf;
use std::time::Duration;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct Options {
    pub socket: PathBuf,
    /// Limit on each request, from sending to the answer.
    pub timeout: Duration,
    /// Free text naming the client in the daemon's logs.
    pub client_name: String,
}

impl Options {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self { socket: socket.into(), timeout: Duration::from_secs(5), client_name: "sessiond-client".into() }
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}
