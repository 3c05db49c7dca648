//! criterion micro-benchmarks: the protocol codec, the session cache, and
//! token issue and redeem. `cargo bench -p sessiond-bench`

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sessiond::cache::Cache;
use sessiond::config::Config;
use sessiond::record::Record;
use sessiond::tokens::{CookieClaims, Keyring, Tokens, TransferClaims};
use sessiond_bench::sample_fields;
use sessiond_protocol::{Expiry, Get, PackedFields, Request, Response, SessionBody, SessionKey, decode_frame};

fn codec(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    let key = SessionKey::from_bytes([7; 32]).encode();
    let get = Request::Get(Get { key, touch: true, ip: None, user_agent: None });
    let mut frame = Vec::new();
    get.encode_frame(1, &mut frame);
    g.bench_function("encode GET", |b| {
        let mut out = Vec::with_capacity(128);
        b.iter(|| {
            out.clear();
            black_box(&get).encode_frame(1, &mut out);
        })
    });
    g.bench_function("decode GET", |b| {
        b.iter(|| {
            let f = decode_frame(black_box(&frame), 1 << 20).unwrap().unwrap();
            Request::decode(f.header.opcode, f.body).unwrap()
        })
    });
    let body = Response::Session(SessionBody {
        fields: sample_fields(10, 100),
        version: 3,
        created_ms: 1,
        modified_ms: 2,
        last_active_ms: 3,
        expires_at_ms: 4,
        ttl_ms: 5,
        expiry: Expiry::Default,
        handle: "oKGio6Slpqeoqaqr".into(),
        user: Some("42".into()),
        ip: Some("192.0.2.1".into()),
        user_agent: Some("Mozilla/5.0".into()),
        ip_changed: false,
        user_agent_changed: false,
    });
    let mut session_frame = Vec::new();
    body.encode_frame(1, &mut session_frame);
    g.bench_function("encode SESSION (1 KiB, 10 fields)", |b| {
        let mut out = Vec::with_capacity(2048);
        b.iter(|| {
            out.clear();
            black_box(&body).encode_frame(1, &mut out);
        })
    });
    // A GET's answer from a cached record: copied into a SessionBody first,
    // as the daemon once did, against encoded from the borrowed record.
    let record = Record::new(
        0,
        Expiry::Default,
        PackedFields::new(&sample_fields(10, 100)),
        sessiond::config::ExpiryConfig::default().rules(),
    );
    let handle = "oKGio6Slpqeoqaqr".to_owned();
    g.bench_function("answer GET: copy the record, then encode", |b| {
        let mut out = Vec::with_capacity(2048);
        b.iter(|| {
            out.clear();
            let body = black_box(&record).body_ref(&handle, 1, 4, 3).to_owned_body();
            Response::Session(body).encode_frame(1, &mut out);
        })
    });
    g.bench_function("answer GET: encode the borrowed record", |b| {
        let mut out = Vec::with_capacity(2048);
        b.iter(|| {
            out.clear();
            black_box(&record).body_ref(&handle, 1, 4, 3).encode_frame(1, &mut out);
        })
    });
    g.bench_function("decode SESSION (1 KiB, 10 fields)", |b| {
        b.iter(|| {
            let f = decode_frame(black_box(&session_frame), 1 << 20).unwrap().unwrap();
            Response::decode(f.header.opcode, f.body).unwrap()
        })
    });
    g.finish();
}

fn cache(c: &mut Criterion) {
    let mut g = c.benchmark_group("cache");
    g.throughput(Throughput::Elements(1));
    let rules = Config::default().expiry.rules();
    let cache = Cache::new(256 << 20);
    let keys: Vec<SessionKey> = (0..100_000u32)
        .map(|i| {
            let mut b = [0u8; 32];
            b[..4].copy_from_slice(&i.to_le_bytes());
            b[8] = (i % 251) as u8;
            b[9] = (i / 251 % 251) as u8;
            SessionKey::from_bytes(b)
        })
        .collect();
    let record = Arc::new(Record::new(0, Expiry::Default, PackedFields::new(&sample_fields(10, 100)), rules));
    for k in &keys {
        cache.publish(*k, Some(record.clone()), 0);
    }
    let mut i = 0;
    g.bench_function("get hit (100k entries)", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            cache.get(black_box(&keys[i])).is_ok()
        })
    });
    g.bench_function("publish (replace)", |b| {
        b.iter(|| {
            i = (i + 7919) % keys.len();
            cache.publish(keys[i], Some(record.clone()), 0);
        })
    });
    g.finish();
}

fn tokens(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::default();
    config.transfer.sites = vec!["www.example.com".into(), "www.example.org".into()];
    let tokens = Tokens::new(Keyring::open_or_create(&dir.path().join("keyring"), 0).unwrap(), config.token_config());
    let claims = TransferClaims {
        iat_ms: 1_000,
        exp_ms: 31_000,
        src: "www.example.com".into(),
        dst: "www.example.org".into(),
        session: [7; 32],
        bind: [0; 32],
    };
    let token = tokens.issue_transfer(&claims).unwrap();
    let cookie = CookieClaims {
        sid: [1; 16],
        iat_ms: 1_000,
        seen_ms: 1_000,
        abs_exp_ms: u64::MAX,
        idle_secs: 0,
        epoch: 0,
        user: Some("42".into()),
        fields: sample_fields(10, 100),
    };
    let sealed = tokens.seal_cookie(&cookie, "__Host-s", "www.example.com").unwrap();

    let mut g = c.benchmark_group("tokens");
    g.throughput(Throughput::Elements(1));
    g.bench_function("issue transfer token", |b| b.iter(|| tokens.issue_transfer(black_box(&claims)).unwrap()));
    g.bench_function("open transfer token", |b| {
        b.iter(|| tokens.open_transfer(black_box(&token), "www.example.org", None, 2_000).unwrap())
    });
    g.bench_function("seal cookie (1 KiB)", |b| {
        b.iter(|| tokens.seal_cookie(black_box(&cookie), "__Host-s", "www.example.com").unwrap())
    });
    g.bench_function("open cookie (1 KiB)", |b| {
        b.iter(|| tokens.open_cookie(black_box(&sealed), "__Host-s", "www.example.com", 2_000).unwrap())
    });
    g.finish();
}

criterion_group!(benches, codec, cache, tokens);
criterion_main!(benches);
