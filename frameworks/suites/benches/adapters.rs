//! What an adapter call costs over the bare client call(s) it makes, on the
//! same daemon in the same run: `cargo bench -p sessiond-framework-suites
//! --bench adapters`. Sessions hold 10 entries of about 100 bytes of JSON.
//! The difference between each pair is the adapter's own work (JSON, the
//! remembered load, the diff); the daemon's time is in both.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::hint::black_box;

use actix_session::storage::{SessionKey, SessionStore as _};
use criterion::{Criterion, criterion_group, criterion_main};
use sessiond_client::{Client, Expiry, Field, Owner, Write};
use tower_sessions::session::{Id, Record};
use tower_sessions::session_store::SessionStore as _;

fn entries() -> HashMap<String, serde_json::Value> {
    (0..10).map(|i| (format!("entry{i}"), serde_json::Value::String(format!("{i:0>96}")))).collect()
}

fn write(key: &str, set: Vec<Field>, replace: bool) -> Write {
    Write {
        key: key.to_owned(),
        set,
        remove: vec![],
        replace,
        expected_version: None,
        expiry: None,
        owner: Owner::Keep,
    }
}

fn adapters(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let daemon = sessiond_tests::shared_daemon();
    let client: Client = rt.block_on(daemon.client());

    // tower-sessions
    let tower = sessiond_tower::SessiondStore::new(client.clone());
    let mut record = Record {
        id: Id::default(),
        data: entries(),
        expiry_date: time::OffsetDateTime::now_utc() + time::Duration::hours(1),
    };
    rt.block_on(tower.create(&mut record)).unwrap();
    let id = record.id;
    let key = id.to_string();
    let mut g = c.benchmark_group("tower load");
    g.bench_function("client get_touch", |b| {
        b.to_async(&rt).iter(|| async { black_box(client.get_touch(&key).await.unwrap()) })
    });
    g.bench_function("SessiondStore::load", |b| {
        b.to_async(&rt).iter(|| async { black_box(tower.load(&id).await.unwrap()) })
    });
    g.finish();

    let mut g = c.benchmark_group("tower load and save one changed entry");
    let mut n = 0u64;
    g.bench_function("client get_touch + write", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let value = serde_json::to_vec(&n).unwrap();
            let (client, key) = (&client, &key);
            async move {
                black_box(client.get_touch(key).await.unwrap());
                client.write(write(key, vec![Field { name: "entry0".into(), value }], false)).await.unwrap()
            }
        })
    });
    g.bench_function("SessiondStore::load + save", |b| {
        b.to_async(&rt).iter(|| {
            n += 1;
            let (tower, n) = (&tower, n);
            async move {
                let mut record = tower.load(&id).await.unwrap().unwrap();
                record.data.insert("entry0".into(), serde_json::Value::from(n));
                tower.save(&record).await.unwrap()
            }
        })
    });
    g.finish();

    // actix-session
    let actix = sessiond_actix::SessiondStore::new(client.clone());
    let state: HashMap<String, String> = entries().into_iter().map(|(k, v)| (k, v.to_string())).collect();
    let ttl = actix_web::cookie::time::Duration::hours(1);
    let session_key: SessionKey = rt.block_on(actix.save(state.clone(), &ttl)).unwrap();
    let akey = session_key.as_ref().to_owned();
    let mut g = c.benchmark_group("actix load");
    g.bench_function("client get", |b| b.to_async(&rt).iter(|| async { black_box(client.get(&akey).await.unwrap()) }));
    g.bench_function("SessiondStore::load", |b| {
        b.to_async(&rt).iter(|| async { black_box(actix.load(&session_key).await.unwrap()) })
    });
    g.finish();

    let mut g = c.benchmark_group("actix update (whole state)");
    let fields: Vec<Field> =
        state.iter().map(|(k, v)| Field { name: k.clone(), value: v.clone().into_bytes() }).collect();
    g.bench_function("client write (replace)", |b| {
        b.to_async(&rt).iter(|| async {
            let mut w = write(&akey, fields.clone(), true);
            w.expiry = Some(Expiry::IdleSecs(3600));
            client.write(w).await.unwrap()
        })
    });
    g.bench_function("SessiondStore::update", |b| {
        b.to_async(&rt).iter(|| async {
            let key = SessionKey::try_from(akey.clone()).unwrap();
            actix.update(key, state.clone(), &ttl).await.unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, adapters);
criterion_main!(benches);
