//! Rows in the log that redb does not hold yet.
//!
//! The writer acknowledges a write once its frame is in the log; redb takes
//! the same rows later, on the applier thread (`writer/applier.rs`). Until
//! it has, the rows live here, and everything that reads redb on behalf of
//! a client (the writer's own view, cache misses, cookie revocations) looks
//! here first. Rows enter only after their frame is in the log (synced, in
//! strict mode), so no reader sees what a crash can take back.
//!
//! What must stay true: a row leaves only after a redb commit that holds it
//! is visible, and a reader that misses here opens its read transaction
//! after looking. Only the writer removes rows, after it saw the applier's
//! commit (see `Writer::catch_up`).
//!
//! Tables nobody reads while the daemon runs (`expiry` and `by_user`, read
//! at start to rebuild the indexes in memory) are not held: the writer
//! cannot read them (`store::WriteOnly`), and a patch's two `expiry` rows
//! would otherwise be two thirds of what it adds here.

use std::sync::Arc;

use foldhash::HashMap;

use parking_lot::RwLock;

/// Key or value bytes, shared between the log's writer, `Pending` and the
/// applier without copying.
pub type Bytes = Arc<[u8]>;

/// One row change: a table id (see `store.rs`), the key and the new value
/// (`None`: removed), in redb's own byte forms.
#[derive(Debug, Clone)]
pub struct Row {
    pub table: u8,
    pub key: Bytes,
    pub value: Option<Bytes>,
}

impl Row {
    /// Roughly what the row holds in memory, for the writer's bound.
    pub fn bytes(&self) -> usize {
        64 + self.key.len() + self.value.as_ref().map_or(0, |v| v.len())
    }
}

/// The latest logged value of one row and the frame that wrote it.
#[derive(Debug)]
struct Latest {
    seq: u64,
    value: Option<Bytes>,
}

/// Rows logged and not yet visible in redb, table by table.
#[derive(Debug)]
pub struct Pending {
    tables: Vec<RwLock<HashMap<Bytes, Latest>>>,
    /// By table: whether its rows are held here.
    held: Vec<bool>,
}

impl Pending {
    /// Table ids run from 1 to `held.len()`; `held` says, by table, whether
    /// anything reads the table while the daemon runs.
    pub fn new(held: &[bool]) -> Self {
        Self { tables: held.iter().map(|_| RwLock::new(HashMap::default())).collect(), held: held.to_vec() }
    }

    /// Whether rows of `table` are held here.
    pub fn holds(&self, table: u8) -> bool {
        self.held[usize::from(table) - 1]
    }

    fn table(&self, table: u8) -> &RwLock<HashMap<Bytes, Latest>> {
        &self.tables[usize::from(table) - 1]
    }

    /// `Some(value)` if the row has a logged value redb may not hold yet
    /// (`Some(None)`: removed); `None`: read it from redb.
    pub fn get(&self, table: u8, key: &[u8]) -> Option<Option<Bytes>> {
        self.table(table).read().get(key).map(|latest| latest.value.clone())
    }

    /// Every pending row of `table`: for the rare scans of a whole table.
    pub fn rows(&self, table: u8) -> Vec<(Bytes, Option<Bytes>)> {
        self.table(table).read().iter().map(|(k, latest)| (k.clone(), latest.value.clone())).collect()
    }

    /// Adds the rows of frame `seq`, once it is in the log, of the tables
    /// it holds.
    pub fn publish(&self, seq: u64, rows: &[Row]) {
        for (i, table) in self.tables.iter().enumerate().filter(|(i, _)| self.held[*i]) {
            let mut rows = rows.iter().filter(|r| usize::from(r.table) == i + 1).peekable();
            if rows.peek().is_none() {
                continue;
            }
            let mut map = table.write();
            for row in rows {
                map.insert(row.key.clone(), Latest { seq, value: row.value.clone() });
            }
        }
    }

    /// Forgets the rows frame `seq` wrote, once redb holds them visibly,
    /// unless a later frame wrote them again.
    pub fn applied(&self, seq: u64, rows: &[(u8, Bytes)]) {
        for (i, table) in self.tables.iter().enumerate().filter(|(i, _)| self.held[*i]) {
            let mut rows = rows.iter().filter(|(t, _)| usize::from(*t) == i + 1).peekable();
            if rows.peek().is_none() {
                continue;
            }
            let mut map = table.write();
            for (_, key) in rows {
                if map.get(key).is_some_and(|latest| latest.seq == seq) {
                    map.remove(key);
                }
            }
            // A burst (a bulk load) grows the map; keep the room for the
            // next one, not for the burst.
            let len = map.len();
            if map.capacity() > 4096 && len < map.capacity() / 4 {
                map.shrink_to(len * 2);
            }
        }
    }

    /// Rows held, over every table.
    pub fn len(&self) -> usize {
        self.tables.iter().map(|t| t.read().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(table: u8, key: &[u8], value: Option<&[u8]>) -> Row {
        Row { table, key: key.into(), value: value.map(Into::into) }
    }

    #[test]
    fn a_row_stays_until_the_frame_that_last_wrote_it_is_applied() {
        let pending = Pending::new(&[true, true, false]);
        pending.publish(1, &[row(1, b"a", Some(b"one")), row(2, b"a", Some(b"other table"))]);
        pending.publish(2, &[row(1, b"a", None)]);
        assert_eq!(pending.get(1, b"a"), Some(None), "the later frame's removal is what readers see");
        assert_eq!(pending.get(2, b"a").flatten().as_deref(), Some(&b"other table"[..]));
        // Frame 1 reaching redb does not forget what frame 2 wrote since.
        pending.applied(1, &[(1, b"a"[..].into()), (2, b"a"[..].into())]);
        assert_eq!(pending.get(1, b"a"), Some(None));
        assert_eq!(pending.get(2, b"a"), None, "frame 1 was the last to write it");
        pending.applied(2, &[(1, b"a"[..].into())]);
        assert!(pending.is_empty());
        // A table nobody reads while the daemon runs is not held.
        pending.publish(3, &[row(3, b"a", Some(b"x"))]);
        assert!(!pending.holds(3) && pending.get(3, b"a").is_none() && pending.is_empty());
    }
}
