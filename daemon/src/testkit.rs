//! An in-process daemon without the network, for unit tests: the engine
//! (service, writer, sweeper, indexes) with a manual clock over a real redb
//! database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use sessiond_protocol::{Create, Cycle, Expiry, Field, Get, KeyOnly, Meta, Patch, Request, Response};

use crate::clock::ManualClock;
use crate::config::Config;
use crate::engine::Engine;
use crate::reply::ReplyTo;
use crate::service::{Outcome, Service};
use crate::store::Store;
use crate::ttl::TtlIndex;

pub const T0: u64 = 1_700_000_000_000;

/// The id the store keeps the session of client key `key` under.
pub fn id(key: &str) -> sessiond_protocol::SessionKey {
    crate::keys::id_of(&sessiond_protocol::SessionKey::parse(key).unwrap())
}

pub struct Kit {
    pub service: Arc<Service>,
    pub clock: Arc<ManualClock>,
    pub ttl: Arc<TtlIndex>,
    pub store: Arc<Store>,
    pub fatal: mpsc::Receiver<String>,
    pub engine: Option<Engine>,
    dir: tempfile::TempDir,
    config: Config,
}

impl Kit {
    pub fn new() -> Self {
        Self::with_config(&Config::default())
    }

    pub fn with_config(config: &Config) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("db.redb")).unwrap();
        Self::build(store, dir, config, T0)
    }

    /// A kit over any store (one on a failing backend, say).
    pub fn with_store(store: Store, config: &Config) -> Self {
        Self::build(store, tempfile::tempdir().unwrap(), config, T0)
    }

    /// Stops this kit as a crash would leave it (touches not yet persisted
    /// are lost), then opens the same database again with the clock at `now`.
    pub fn restart(mut self, now: u64) -> Self {
        let dir = std::mem::replace(&mut self.dir, tempfile::tempdir().unwrap());
        let config = self.config.clone();
        drop(self);
        let (store, _) = Store::open(&dir.path().join("db.redb")).unwrap();
        Self::build(store, dir, &config, now)
    }

    fn build(store: Store, dir: tempfile::TempDir, config: &Config, now: u64) -> Self {
        let mut config = config.clone();
        config.data_dir = dir.path().to_owned();
        // The sweeper runs only when a test asks (SWEEP): an hour apart.
        config.expiry.sweep_interval_ms = 3_600_000;
        let clock = Arc::new(ManualClock::new(now));
        let (fatal_tx, fatal) = mpsc::channel();
        let on_fatal = Box::new(move |reason| {
            let _ = fatal_tx.send(reason);
        });
        let engine = Engine::start(&config, store, clock.clone(), on_fatal).unwrap();
        let kit = Self {
            service: engine.service.clone(),
            ttl: engine.ttl.clone(),
            store: engine.store.clone(),
            clock,
            fatal,
            engine: Some(engine),
            dir,
            config,
        };
        // Let the sweeper's start-up round finish at the kit's starting time,
        // so a test that moves the clock later is not raced by it.
        assert!(matches!(kit.call(Request::Sweep(sessiond_protocol::Empty {})), Response::Swept(_)));
        kit
    }

    /// Makes redb hold every acknowledged write: before a test reads the
    /// database itself rather than asking the service.
    pub fn checkpoint(&self) {
        assert!(self.engine.as_ref().expect("running").checkpoint(), "checkpoint failed");
    }

    pub fn call(&self, request: Request) -> Response {
        call(&self.service, request)
    }

    pub fn create(&self, fields: &[(&str, &str)], expiry: Expiry) -> String {
        let fields = fields.iter().map(|(n, v)| Field { name: n.to_string(), value: v.as_bytes().to_vec() }).collect();
        self.create_with(fields, expiry, Meta::default())
    }

    pub fn create_with(&self, fields: Vec<Field>, expiry: Expiry, meta: Meta) -> String {
        match self.call(Request::Create(Create { fields, expiry, meta })) {
            Response::Created(c) => c.key,
            other => panic!("create failed: {other:?}"),
        }
    }

    pub fn get(&self, key: &str, touch: bool) -> Response {
        self.call(Request::Get(Get { key: key.into(), touch, ip: None, user_agent: None }))
    }

    pub fn cycle(&self, key: &str, bind_user: Option<&str>) -> Response {
        self.call(Request::Cycle(Cycle { key: key.into(), bind_user: bind_user.map(str::to_owned) }))
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
        if let Some(engine) = self.engine.take() {
            engine.shutdown();
        }
    }
}

/// Serves one request and waits for its answer; usable from any thread.
pub fn call(service: &Service, request: Request) -> Response {
    let (tx, rx) = mpsc::channel();
    match service.handle(request, || ReplyTo::Channel(tx)) {
        Outcome::Now(response) => response,
        Outcome::Session(answer) => Response::Session(answer.body().to_owned_body()),
        Outcome::Queued => {
            crate::service::respond(rx.recv_timeout(Duration::from_secs(10)).expect("the writer answers"))
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
