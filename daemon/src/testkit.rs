//! An in-process daemon without the network, for unit tests: the service,
//! the writer and a manual clock over a real redb database.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::sync::mpsc;
use std::time::Duration;

use sessiond_protocol::{Create, Cycle, Expiry, Field, Get, KeyOnly, Meta, Patch, Request, Response};

use crate::cache::Cache;
use crate::clock::ManualClock;
use crate::config::Config;
use crate::reply::ReplyTo;
use crate::service::{Outcome, Parts, Service};
use crate::stats::Stats;
use crate::store::Store;
use crate::sweeper::{SweepConfig, Sweeper};
use crate::ttl::TtlIndex;
use crate::writer::{Writer, WriterConfig};

pub const T0: u64 = 1_700_000_000_000;

pub struct Kit {
    pub service: Arc<Service>,
    pub clock: Arc<ManualClock>,
    pub ttl: Arc<TtlIndex>,
    pub store: Arc<Store>,
    pub fatal: mpsc::Receiver<String>,
    sweeper: Option<Sweeper>,
    writer: Option<Writer>,
    _dir: Option<tempfile::TempDir>,
}

impl Kit {
    pub fn new() -> Self {
        Self::with_config(&Config::default())
    }

    pub fn with_config(config: &Config) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let (store, _) = Store::open(&dir.path().join("db.redb")).unwrap();
        Self::build(store, Some(dir), config)
    }

    /// Stops this kit as a crash would leave it (touches not yet persisted
    /// are lost), then opens the same database again with the clock at `now`.
    pub fn restart(mut self, now: u64) -> Self {
        let dir = self._dir.take().expect("a kit on its own directory");
        drop(self);
        let (store, _) = Store::open(&dir.path().join("db.redb")).unwrap();
        let kit = Self::build(store, Some(dir), &Config::default());
        kit.clock.set(now);
        kit
    }

    pub fn with_store(store: Store, config: &Config) -> Self {
        Self::build(store, None, config)
    }

    fn build(store: Store, dir: Option<tempfile::TempDir>, config: &Config) -> Self {
        let store = Arc::new(store);
        let cache = Arc::new(Cache::new(config.cache_bytes));
        let ttl = Arc::new(TtlIndex::new(u64::from(config.expiry.touch_granularity_secs) * 1000));
        store.load_index(&ttl).unwrap();
        let stats = Arc::new(Stats::default());
        let clock = Arc::new(ManualClock::new(T0));
        let (fatal_tx, fatal) = mpsc::channel();
        let writer = Writer::spawn(
            store.clone(),
            cache.clone(),
            ttl.clone(),
            stats.clone(),
            clock.clone(),
            WriterConfig {
                flush_interval: config.flush_interval(),
                max_batch: config.limits.max_batch,
                queue_capacity: 1024,
                max_session_bytes: config.limits.max_session_bytes as usize,
                max_fields: config.limits.max_fields as usize,
                rules: config.expiry.rules(),
                max_sessions_per_user: (config.users.max_sessions_per_user > 0)
                    .then_some(config.users.max_sessions_per_user),
                limit_policy: config.users.limit_policy,
            },
            Box::new(move |reason| {
                let _ = fatal_tx.send(reason);
            }),
        )
        .unwrap();
        // The sweeper runs only when a test asks (SWEEP): an hour apart.
        let sweeper = Sweeper::spawn(
            ttl.clone(),
            writer.queue(),
            stats.clone(),
            clock.clone(),
            SweepConfig { interval: Duration::from_secs(3600), batch: config.expiry.sweep_batch },
        )
        .unwrap();
        let service = Arc::new(Service::new(Parts {
            store: store.clone(),
            cache,
            ttl: ttl.clone(),
            stats,
            clock: clock.clone(),
            writer: writer.queue(),
            sweeper: sweeper.queue(),
            limits: config.limits.clone(),
            rules: config.expiry.rules(),
            users: config.users.clone(),
            geoip: None,
        }));
        let kit = Self { service, clock, ttl, store, fatal, sweeper: Some(sweeper), writer: Some(writer), _dir: dir };
        // Let the sweeper's start-up round finish at the kit's starting time,
        // so a test that moves the clock later is not raced by it.
        assert!(matches!(kit.call(Request::Sweep(sessiond_protocol::Empty {})), Response::Swept(_)));
        kit
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
        if let Some(s) = self.sweeper.take() {
            s.shutdown();
        }
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
