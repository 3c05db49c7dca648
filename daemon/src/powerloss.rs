//! Simulated power loss at every sync point of a workload (SECURITY.md,
//! 7B, after redb's crash_consistency tests and SQLite's crash tests).
//!
//! The database and the log's two files share one [`Disk`] that keeps what was written
//! apart from what was synced. A run is frozen at its n-th sync: the power
//! fails before the (n+1)-th sync returns, so what survives is everything
//! synced by the n-th, plus any subset of the writes made between the two
//! (the last of them perhaps torn). The daemon runs on undisturbed, serving
//! from what it wrote, and the test notes which answers it had sent by the
//! time of the n-th sync. The image is then opened as the next start would
//! open it and checked against the model: it must open, hold every write
//! acknowledged before the power failed, bring back nothing deleted or
//! cycled away, and equal the model after some prefix of the workload.

use std::collections::BTreeMap;
use std::io;
use std::sync::Arc;

use parking_lot::Mutex;
use rand::{Rng, SeedableRng};
use sessiond_protocol::{Expiry, Request, Response};

use crate::config::Config;
use crate::keys::id_of;
use crate::store::Store;
use crate::testkit::Kit;
use crate::wal::LogDevice;

/// One write not yet synced.
#[derive(Debug, Clone)]
enum Pending {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

/// One file as the disk holds it.
#[derive(Debug, Default, Clone)]
struct Image {
    /// What reads see: everything written.
    live: Vec<u8>,
    /// What a power failure leaves: everything synced.
    durable: Vec<u8>,
    /// Written since the last sync, in order.
    pending: Vec<Pending>,
}

fn apply(bytes: &mut Vec<u8>, change: &Pending) {
    match change {
        Pending::Write(offset, data) => {
            let end = *offset as usize + data.len();
            if bytes.len() < end {
                bytes.resize(end, 0);
            }
            bytes[*offset as usize..end].copy_from_slice(data);
        }
        Pending::SetLen(len) => bytes.resize(*len as usize, 0),
    }
}

impl Image {
    fn change(&mut self, change: Pending) {
        apply(&mut self.live, &change);
        self.pending.push(change);
    }

    fn sync(&mut self) {
        for change in self.pending.drain(..) {
            apply(&mut self.durable, &change);
        }
    }
}

/// The files on the disk: the database and the log's two files.
const FILES: usize = 3;
const DB: usize = 0;

#[derive(Debug, Default)]
struct DiskState {
    files: [Image; FILES],
    /// Syncs called so far, of any file.
    syncs: u64,
    /// Freeze when the sync after this many is called.
    freeze_after: Option<u64>,
    /// The power has failed: nothing more becomes durable.
    frozen: bool,
    /// The writes made between the last sync that took effect and the
    /// failure, per file: any subset of them may have reached the disk.
    torn: [Vec<Pending>; FILES],
}

#[derive(Debug, Default)]
struct Disk(Mutex<DiskState>);

/// What a crash leaves of each file.
type Images = [Vec<u8>; FILES];

impl Disk {
    fn with<R>(&self, file: usize, f: impl FnOnce(&mut Image) -> R) -> R {
        f(&mut self.0.lock().files[file])
    }

    fn sync(&self, file: usize) {
        let mut state = self.0.lock();
        state.syncs += 1;
        if !state.frozen && state.freeze_after.is_some_and(|n| state.syncs > n) {
            state.frozen = true;
            for i in 0..FILES {
                state.torn[i] = std::mem::take(&mut state.files[i].pending);
            }
        }
        if !state.frozen {
            state.files[file].sync();
        }
    }

    fn syncs(&self) -> u64 {
        self.0.lock().syncs
    }

    /// What the power failure left: the synced images, plus a random
    /// subset of the writes in flight, the last one taken perhaps torn.
    fn crash_image(&self, rng: &mut rand::rngs::StdRng, with_torn: bool) -> Images {
        let state = self.0.lock();
        let mut images: Images = std::array::from_fn(|i| state.files[i].durable.clone());
        if with_torn {
            for (bytes, torn) in images.iter_mut().zip(&state.torn) {
                for change in torn {
                    if rng.random_bool(0.5) {
                        let change = match change {
                            Pending::Write(offset, data) if data.len() > 512 && rng.random_bool(0.3) => {
                                Pending::Write(*offset, data[..rng.random_range(1..data.len())].to_vec())
                            }
                            other => other.clone(),
                        };
                        apply(bytes, &change);
                    }
                }
            }
        }
        images
    }
}

#[derive(Debug, Clone)]
struct DbDevice(Arc<Disk>);

impl redb::StorageBackend for DbDevice {
    fn len(&self) -> Result<u64, io::Error> {
        Ok(self.0.with(DB, |i| i.live.len() as u64))
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> Result<(), io::Error> {
        self.0.with(DB, |i| {
            let start = offset as usize;
            let bytes = i.live.get(start..start + out.len()).ok_or(io::ErrorKind::UnexpectedEof)?;
            out.copy_from_slice(bytes);
            Ok(())
        })
    }
    fn set_len(&self, len: u64) -> Result<(), io::Error> {
        self.0.with(DB, |i| i.change(Pending::SetLen(len)));
        Ok(())
    }
    fn sync_data(&self) -> Result<(), io::Error> {
        self.0.sync(DB);
        Ok(())
    }
    fn write(&self, offset: u64, data: &[u8]) -> Result<(), io::Error> {
        self.0.with(DB, |i| i.change(Pending::Write(offset, data.to_vec())));
        Ok(())
    }
}

/// One of the log's files: 1 or 2.
#[derive(Debug, Clone)]
struct LogDev(Arc<Disk>, usize);

impl LogDevice for LogDev {
    fn size(&self) -> io::Result<u64> {
        Ok(self.0.with(self.1, |i| i.live.len() as u64))
    }
    fn read_all(&self) -> io::Result<Vec<u8>> {
        Ok(self.0.with(self.1, |i| i.live.clone()))
    }
    fn write_all_at(&self, bytes: &[u8], offset: u64) -> io::Result<()> {
        self.0.with(self.1, |i| i.change(Pending::Write(offset, bytes.to_vec())));
        Ok(())
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync(self.1);
        Ok(())
    }
    fn sync_all(&self) -> io::Result<()> {
        self.0.sync(self.1);
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.with(self.1, |i| i.change(Pending::SetLen(len)));
        Ok(())
    }
}

/// Sessions by id: their fields.
type State = BTreeMap<[u8; 32], BTreeMap<String, Vec<u8>>>;

/// A disk that already holds `images`, everything synced.
fn disk_with(images: Images) -> Arc<Disk> {
    let disk = Arc::new(Disk::default());
    {
        let mut state = disk.0.lock();
        for (file, bytes) in state.files.iter_mut().zip(images) {
            *file = Image { live: bytes.clone(), durable: bytes, pending: Vec::new() };
        }
    }
    disk
}

fn open(disk: &Arc<Disk>) -> Result<Store, crate::store::StoreError> {
    let logs: [Box<dyn LogDevice>; 2] = [Box::new(LogDev(disk.clone(), 1)), Box::new(LogDev(disk.clone(), 2))];
    Store::open_backend(DbDevice(disk.clone()), logs).map(|(store, _)| store)
}

/// What the workload did, and what a recovered image must show.
struct Run {
    /// The model's state after each prefix of the workload: `states[i]`
    /// after `i` operations.
    states: Vec<State>,
    /// How many syncs had been called when each operation was answered.
    acked_at: Vec<u64>,
}

/// The workload: creates, patches, deletes, cycles, an owner's revocation
/// and checkpoints, one at a time, on a kit over `disk`.
fn workload(disk: &Arc<Disk>, config: &Config) -> Run {
    let kit = Kit::with_store(open(disk).unwrap(), config);
    let mut model: BTreeMap<String, BTreeMap<String, Vec<u8>>> = BTreeMap::new();
    let mut run = Run { states: vec![State::new()], acked_at: Vec::new() };
    let mut keys: Vec<String> = Vec::new();
    let record = |run: &mut Run, model: &BTreeMap<String, BTreeMap<String, Vec<u8>>>| {
        let state = model
            .iter()
            .map(|(k, f)| (*id_of(&sessiond_protocol::SessionKey::parse(k).unwrap()).as_bytes(), f.clone()))
            .collect();
        run.states.push(state);
        run.acked_at.push(disk.syncs());
    };
    let meta = |user: Option<&str>| sessiond_protocol::Meta { user: user.map(str::to_owned), ..Default::default() };
    for step in 0..24 {
        match step % 8 {
            0 | 1 | 5 => {
                let name = format!("s{step}");
                let user = (step % 3 == 0).then_some("owner");
                let fields = vec![sessiond_protocol::Field { name: "n".into(), value: name.clone().into_bytes() }];
                let key = kit.create_with(fields, Expiry::Default, meta(user));
                model.insert(key.clone(), BTreeMap::from([("n".to_owned(), name.into_bytes())]));
                keys.push(key);
            }
            2 => {
                let key = keys[step % keys.len()].clone();
                if let Some(fields) = model.get_mut(&key) {
                    assert!(matches!(kit.patch(&key, "p", &step.to_string()), Response::Patched(_)));
                    fields.insert("p".into(), step.to_string().into_bytes());
                } else {
                    continue;
                }
            }
            3 => {
                let key = keys.remove(0);
                kit.key_op(Request::Delete, &key);
                model.remove(&key);
            }
            4 => {
                let key = keys.remove(0);
                let Response::Cycled(c) = kit.cycle(&key, None) else { continue };
                let fields = model.remove(&key).unwrap();
                model.insert(c.key.clone(), fields);
                keys.push(c.key);
            }
            6 => kit.checkpoint(),
            _ => {
                let revoke = Request::RevokeUser(sessiond_protocol::RevokeUser { user: "owner".into(), keep: None });
                assert!(matches!(kit.call(revoke), Response::UserRevoked(_)));
                let owned: Vec<String> = keys.iter().filter(|k| model.contains_key(*k)).cloned().collect();
                for key in owned {
                    let Response::Session(s) = kit.get(&key, false) else {
                        model.remove(&key);
                        continue;
                    };
                    assert!(s.user.is_none(), "a session of the revoked owner is still served");
                }
            }
        }
        record(&mut run, &model);
    }
    drop(kit);
    run
}

/// Opens a crash image as the next start would, and reads every session.
fn recover(images: Images) -> Result<State, String> {
    let store = open(&disk_with(images)).map_err(|e| e.to_string())?;
    let sessions = store.scan().map_err(|e| e.to_string())?;
    Ok(sessions
        .into_iter()
        .map(|(id, record)| {
            let fields = record.fields.to_vec().into_iter().map(|f| (f.name, f.value)).collect();
            (*id.as_bytes(), fields)
        })
        .collect())
}

/// A disk holding a database as its first start leaves it, synced. A
/// power loss while a database file is first made is the file path's
/// concern (`Store::open_with_cache` makes it under another name and
/// renames it whole); here every sync point comes after that.
fn created() -> Images {
    let disk = Arc::new(Disk::default());
    drop(open(&disk).unwrap());
    let state = disk.0.lock();
    std::array::from_fn(|i| state.files[i].live.clone())
}

/// Freezes the workload at every `step`-th sync point and checks each
/// crash image; returns (sync points, images tried, failures).
fn crash_points(config: &Config, step: usize) -> (u64, usize, Vec<String>) {
    let images = created();
    let fresh = || disk_with(images.clone());
    // Pass 1: how many syncs the workload makes.
    let counted = fresh();
    workload(&counted, config);
    let syncs = counted.syncs();
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (mut images, mut failures) = (0, Vec::new());
    for n in (0..syncs).step_by(step) {
        let disk = fresh();
        disk.0.lock().freeze_after = Some(n);
        let run = workload(&disk, config);
        // Every operation answered by the n-th sync must survive.
        let required = run.acked_at.iter().take_while(|&&at| at <= n).count();
        for with_torn in [false, true] {
            images += 1;
            match recover(disk.crash_image(&mut rng, with_torn)) {
                Err(e) => failures.push(format!("sync {n} (torn {with_torn}): the image does not open: {e}")),
                Ok(state) => {
                    if !run.states[required..].contains(&state) {
                        failures.push(format!(
                            "sync {n} (torn {with_torn}): the state matches no prefix at or after the {required} \
                             operations acknowledged"
                        ));
                    }
                }
            }
        }
    }
    (syncs, images, failures)
}

#[test]
fn power_loss_at_every_sync_point_loses_nothing_acknowledged() {
    let (syncs, images, failures) = crash_points(&Config::default(), 1);
    eprintln!("power loss: {syncs} sync points, {images} crash images, {} failures", failures.len());
    assert!(syncs > 30, "the workload reaches few sync points: {syncs}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn positive_control_answering_before_the_logs_fdatasync_is_caught() {
    // Strict mode with the one step out of order: the answers go out, then
    // the frame is synced. A power loss between the two must be seen.
    let mut config = Config::default();
    config.durability.ack_before_sync_for_testing = true;
    let (syncs, images, failures) = crash_points(&config, 3);
    eprintln!("power loss, answer before fdatasync: {syncs} sync points, {images} images, {} caught", failures.len());
    assert!(!failures.is_empty(), "the checker missed writes answered before their frame was synced");
}

#[test]
fn positive_control_relaxed_mode_loses_what_it_acknowledged_unsynced() {
    // Relaxed mode answers before the log is synced: a power loss must then
    // be seen to lose acknowledged writes, or the checker proves nothing.
    let mut config = Config::default();
    config.durability.mode = crate::config::DurabilityMode::Relaxed;
    config.durability.flush_interval_ms = 3_600_000;
    let (syncs, images, failures) = crash_points(&config, 3);
    eprintln!("power loss, positive control: {syncs} sync points, {images} images, {} caught", failures.len());
    assert!(!failures.is_empty(), "the checker missed writes acknowledged before their sync");
}
