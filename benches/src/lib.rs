//! sessiond's benchmarks: the `sessiond-load` load generator (sessiond
//! against Redis and against an echo floor) and shared pieces of the
//! criterion micro-benchmarks.

pub mod compare;
pub mod echo;
pub mod report;
pub mod run;
pub mod target;
pub mod workload;

use sessiond_protocol::Field;

/// A web session of `count` fields of `value_size` bytes each.
pub fn sample_fields(count: usize, value_size: usize) -> Vec<Field> {
    (0..count)
        .map(|i| Field { name: format!("field_{i:02}"), value: vec![b'a' + (i % 26) as u8; value_size] })
        .collect()
}
