//! sessiond: a session-store daemon on redb, served over a Unix socket.
//!
//! `main.rs` parses the command line and calls [`Server::start`]; everything
//! else is library code that tests can run in-process. See ARCHITECTURE.md
//! for the threads and the data flow.

pub mod aliases;
pub mod answer;
pub mod cache;
pub mod clock;
pub mod config;
pub mod datadir;
pub mod engine;
pub mod geoip;
pub mod keys;
pub mod migrate;
pub mod net;
pub mod owners;
pub mod pending;
pub mod record;
pub mod reply;
pub mod salvage;
pub mod service;
pub mod stats;
pub mod store;
pub mod sweeper;
pub mod tls;
pub mod tokens;
pub mod ttl;
pub mod wal;
pub mod writer;

#[cfg(test)]
mod powerloss;
mod server;
#[cfg(test)]
mod testkit;

pub use config::Config;
pub use server::{Server, ServerEvent, StartError};
