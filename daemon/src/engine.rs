//! Everything but the network: the store, the in-memory indexes, the writer,
//! the sweeper, the key ring and the service, started in order. The server
//! puts the event loops in front; unit tests drive the service directly.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::aliases::AliasIndex;
use crate::cache::Cache;
use crate::clock::Clock;
use crate::config::Config;
use crate::geoip::GeoIp;
use crate::owners::OwnerIndex;
use crate::reply::ReplyTo;
use crate::server::StartError;
use crate::service::Service;
use crate::stats::Stats;
use crate::store::Store;
use crate::sweeper::{SweepConfig, Sweeper};
use crate::tokens::{Keyring, Tokens};
use crate::ttl::TtlIndex;
use crate::writer::{Job, Op, Published, Writer, WriterConfig};

/// The most sessions one LIST_USER_PAGE answers: an answer of a few hundred
/// kilobytes at most.
const MAX_LIST_PAGE: u32 = 1000;

#[derive(Debug)]
pub struct Engine {
    pub service: Arc<Service>,
    pub store: Arc<Store>,
    pub ttl: Arc<TtlIndex>,
    pub stats: Arc<Stats>,
    pub tokens: Arc<Tokens>,
    sweeper: Sweeper,
    writer: Writer,
}

impl Engine {
    /// Rebuilds the indexes from `store`, then starts the writer and the
    /// sweeper. `on_fatal` is called if storage fails.
    pub fn start(
        config: &Config,
        store: Store,
        clock: Arc<dyn Clock>,
        on_fatal: Box<dyn Fn(String) + Send>,
    ) -> Result<Self, StartError> {
        let geoip = config.users.geoip_db.as_deref().map(GeoIp::open).transpose()?;
        let tokens = Arc::new(Tokens::new(
            Keyring::open_or_create(&config.keyring_path(), clock.now_ms())?,
            config.token_config(),
        ));
        let store = Arc::new(store);
        let ttl = Arc::new(TtlIndex::new(u64::from(config.expiry.touch_granularity_secs) * 1000));
        let started = Instant::now();
        let indexed = store.load_index(&ttl)?;
        tracing::info!(sessions = indexed, ms = started.elapsed().as_millis() as u64, "TTL index rebuilt");
        let aliases = Arc::new(AliasIndex::default());
        for (alias, primary) in store.aliases()? {
            aliases.publish(alias, Some(primary));
        }
        let owners = Arc::new(OwnerIndex::default());
        store.load_owners(&owners)?;
        let stats = Arc::new(Stats::default());
        let cache_bytes = config.cache_bytes();
        tracing::info!(mib = cache_bytes >> 20, "session cache budget");
        let cache = Arc::new(Cache::new(cache_bytes));
        let published =
            Published { cache: cache.clone(), ttl: ttl.clone(), aliases: aliases.clone(), owners: owners.clone() };
        let writer =
            Writer::spawn(store.clone(), published, stats.clone(), clock.clone(), writer_config(config), on_fatal)
                .map_err(StartError::Thread)?;
        let sweeper = Sweeper::spawn(
            ttl.clone(),
            writer.queue(),
            stats.clone(),
            clock.clone(),
            SweepConfig {
                interval: Duration::from_millis(config.expiry.sweep_interval_ms),
                batch: config.expiry.sweep_batch,
                // The largest skew a reload may set, not today's: an entry
                // is never forgotten while any configuration could still
                // accept its token or cookie.
                token_skew_ms: u64::from(crate::config::MAX_SKEW_SECS) * 1000,
                clock_hold_ms: config.expiry.clock_jump_hold_secs.saturating_mul(1000),
            },
        )
        .map_err(StartError::Thread)?;
        let service = Arc::new(Service {
            store: store.clone(),
            cache,
            ttl: ttl.clone(),
            stats: stats.clone(),
            clock,
            writer: writer.queue(),
            sweeper: sweeper.queue(),
            limits: config.limits.clone(),
            rules: config.expiry.rules(),
            users: config.users.clone(),
            geoip,
            tokens: tokens.clone(),
            aliases,
            owners,
            settings: sessiond_protocol::Settings {
                default_idle_secs: config.expiry.default_idle_secs,
                max_lifetime_secs: config.expiry.max_lifetime_secs,
                touch_granularity_secs: config.expiry.touch_granularity_secs,
                max_user_agent: u32::try_from(config.users.max_user_agent).unwrap_or(u32::MAX),
                max_sessions_per_user: u32::try_from(config.users.max_sessions_per_user).unwrap_or(u32::MAX),
                max_list_page: MAX_LIST_PAGE,
            },
        });
        Ok(Self { service, store, ttl, stats, tokens, sweeper, writer })
    }

    /// Makes every acknowledged write durable in redb itself, as a clean
    /// stop would, and waits for it. False if the writer has failed.
    pub fn checkpoint(&self) -> bool {
        let (tx, rx) = std::sync::mpsc::channel();
        let job = Job { op: Op::Checkpoint, reply: ReplyTo::Channel(tx) };
        self.writer.queue().submit_wait(job).is_ok()
            && matches!(rx.recv_timeout(Duration::from_secs(60)), Ok(Ok(crate::answer::Done::Checkpointed)))
    }

    /// Stops the sweeper, then the writer, which commits what is queued and
    /// makes its last commit durable.
    pub fn shutdown(self) {
        self.sweeper.shutdown();
        self.writer.shutdown();
    }
}

fn writer_config(config: &Config) -> WriterConfig {
    let limits = &config.limits;
    WriterConfig {
        flush_interval: config.flush_interval(),
        checkpoint_bytes: config.durability.checkpoint_mb << 20,
        checkpoint_age: Duration::from_secs(config.durability.checkpoint_secs),
        max_batch: limits.max_batch,
        max_batch_bytes: limits.max_batch_bytes,
        queue_capacity: limits.max_connections.saturating_mul(limits.max_inflight as usize).max(1024),
        max_queued_bytes: limits.max_queued_write_bytes,
        max_session_bytes: limits.max_session_bytes as usize,
        max_fields: limits.max_fields as usize,
        rules: config.expiry.rules(),
        max_sessions_per_user: (config.users.max_sessions_per_user > 0).then_some(config.users.max_sessions_per_user),
        limit_policy: config.users.limit_policy,
        ack_before_sync: config.durability.ack_before_sync_for_testing,
    }
}
