//! An in-process daemon without the network, for unit tests: the service,
//! the writer and a manual clock over a real redb database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use sessiond_protocol::{Create, Expiry, Field, Get, KeyOnly, Patch, Request, Response};

use crate::cache::Cache;
use crate::clock::ManualClock;
use crate::config::Config;
use crate::reply::ReplyTo;
use crate::service::{Outcome, Service};
use crate::stats::Stats;
use crate::store::Store;
use crate::writer::{Writer, WriterConfig};

pub const T0: u64 = 1_700_000_000_000;

pub struct Kit {
    pub service: Arc<Service>,
    pub clock: Arc<ManualClock>,
    pub fatal: mpsc::Receiver<String>,
    writer: Option<Writer>,
    _dir: Option<tempfile::TempDir>,
}

impl Kit {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("db.redb")).unwrap();
        Self::build(store, Some(dir), &Config::default())
    }

    pub fn with_store(store: Store, config: &Config) -> Self {
        Self::build(store, None, config)
    }

    fn build(store: Store, dir: Option<tempfile::TempDir>, config: &Config) -> Self {
        let store = Arc::new(store);
        let cache = Arc::new(Cache::new(config.cache_bytes));
        let stats = Arc::new(Stats::default());
        let clock = Arc::new(ManualClock::new(T0));
        let (fatal_tx, fatal) = mpsc::channel();
        let writer = Writer::spawn(
            store.clone(),
            cache.clone(),
            stats.clone(),
            clock.clone(),
            WriterConfig {
                flush_interval: config.flush_interval(),
                max_batch: config.limits.max_batch,
                queue_capacity: 1024,
                max_session_bytes: config.limits.max_session_bytes as usize,
                max_fields: config.limits.max_fields as usize,
                default_idle_secs: config.expiry.default_idle_secs,
            },
            Box::new(move |reason| {
                let _ = fatal_tx.send(reason);
            }),
        )
        .unwrap();
        let service = Arc::new(Service::new(store, cache, stats, clock.clone(), writer.queue(), config.limits.clone()));
        Self { service, clock, fatal, writer: Some(writer), _dir: dir }
    }

    pub fn call(&self, request: Request) -> Response {
        let (tx, rx) = mpsc::channel();
        match self.service.handle(request, || ReplyTo::Channel(tx)) {
            Outcome::Now(response) => response,
            Outcome::Queued => rx.recv_timeout(Duration::from_secs(10)).expect("the writer answers"),
        }
    }

    pub fn create(&self, fields: &[(&str, &str)], expiry: Expiry) -> String {
        let fields = fields.iter().map(|(n, v)| Field { name: n.to_string(), value: v.as_bytes().to_vec() }).collect();
        match self.call(Request::Create(Create { fields, expiry })) {
            Response::Created(c) => c.key,
            other => panic!("create failed: {other:?}"),
        }
    }

    pub fn get(&self, key: &str, touch: bool) -> Response {
        self.call(Request::Get(Get { key: key.into(), touch }))
    }

    pub fn key_op(&self, make: fn(KeyOnly) -> Request, key: &str) -> Response {
        self.call(make(KeyOnly { key: key.into() }))
    }

    pub fn patch(&self, key: &str, name: &str, value: &str) -> Response {
        let set = vec![Field { name: name.into(), value: value.as_bytes().to_vec() }];
        self.call(Request::Patch(Patch { key: key.into(), set, remove: vec![], expected_version: None }))
    }
}

impl Drop for Kit {
    fn drop(&mut self) {
        if let Some(w) = self.writer.take() {
            w.shutdown();
        }
    }
}

/// The error code of a response, if it is an error.
pub fn code(response: &Response) -> Option<u16> {
    match response {
        Response::Error(e) => Some(e.code),
        _ => None,
    }
}
