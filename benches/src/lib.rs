//! Shared pieces of sessiond's benchmarks: representative session data.

use sessiond_protocol::Field;

/// A web session of `count` fields of `value_size` bytes each, named like
/// the fields a framework stores (`_auth_user_id`, `cart`, ...).
pub fn sample_fields(count: usize, value_size: usize) -> Vec<Field> {
    (0..count)
        .map(|i| Field { name: format!("field_{i:02}"), value: vec![b'a' + (i % 26) as u8; value_size] })
        .collect()
}
