//! Writes small MaxMind DB (format 2.0) files for tests: a GeoIP2-City-like
//! database of a few IPv4 networks, each with a country and a city.
//!
//! Layout (MaxMind DB spec): a binary search tree of 24-bit records, 16 zero
//! bytes, the data section, then `\xAB\xCD\xEFMaxMind.com` and a metadata map.

use std::net::Ipv4Addr;

/// One network and where it is.
#[derive(Debug, Clone)]
pub struct Place {
    pub network: Ipv4Addr,
    pub prefix: u8,
    pub country_code: &'static str,
    pub country: &'static str,
    pub city: &'static str,
}

#[derive(Clone, Copy)]
enum Rec {
    Empty,
    Node(usize),
    Data(usize),
}

/// The bytes of a database mapping each place's network to its names.
pub fn city_database(places: &[Place]) -> Vec<u8> {
    let mut nodes: Vec<[Rec; 2]> = vec![[Rec::Empty; 2]];
    let mut data = Vec::new();
    for place in places {
        let offset = data.len();
        map(&mut data, 2);
        string(&mut data, "city");
        names(&mut data, place.city);
        string(&mut data, "country");
        map(&mut data, 2);
        string(&mut data, "iso_code");
        string(&mut data, place.country_code);
        string(&mut data, "names");
        map(&mut data, 1);
        string(&mut data, "en");
        string(&mut data, place.country);

        let bits = u32::from(place.network);
        let mut node = 0;
        for depth in 0..place.prefix {
            let bit = ((bits >> (31 - depth)) & 1) as usize;
            if depth + 1 == place.prefix {
                nodes[node][bit] = Rec::Data(offset);
            } else {
                node = match nodes[node][bit] {
                    Rec::Node(n) => n,
                    _ => {
                        nodes.push([Rec::Empty; 2]);
                        nodes[node][bit] = Rec::Node(nodes.len() - 1);
                        nodes.len() - 1
                    }
                };
            }
        }
    }
    let count = nodes.len();
    let mut out = Vec::new();
    for node in &nodes {
        for rec in node {
            let value = match *rec {
                Rec::Empty => count,
                Rec::Node(n) => n,
                Rec::Data(offset) => count + 16 + offset,
            };
            out.extend_from_slice(&(value as u32).to_be_bytes()[1..]);
        }
    }
    out.extend_from_slice(&[0; 16]);
    out.extend_from_slice(&data);
    out.extend_from_slice(b"\xAB\xCD\xEFMaxMind.com");
    map(&mut out, 9);
    string(&mut out, "binary_format_major_version");
    uint(&mut out, 5, 2);
    string(&mut out, "binary_format_minor_version");
    uint(&mut out, 5, 0);
    string(&mut out, "build_epoch");
    uint(&mut out, 9, 1_700_000_000);
    string(&mut out, "database_type");
    string(&mut out, "GeoIP2-City");
    string(&mut out, "description");
    map(&mut out, 1);
    string(&mut out, "en");
    string(&mut out, "sessiond test database");
    string(&mut out, "ip_version");
    uint(&mut out, 5, 4);
    string(&mut out, "languages");
    out.extend_from_slice(&[0x01, 11 - 7]); // array of one, extended type 11
    string(&mut out, "en");
    string(&mut out, "node_count");
    uint(&mut out, 6, count as u64);
    string(&mut out, "record_size");
    uint(&mut out, 5, 24);
    out
}

fn names(out: &mut Vec<u8>, english: &str) {
    map(out, 1);
    string(out, "names");
    map(out, 1);
    string(out, "en");
    string(out, english);
}

/// Control byte: type in the top 3 bits, size below (sizes under 29 only).
fn control(out: &mut Vec<u8>, kind: u8, size: usize) {
    assert!(size < 29, "test data keeps sizes small");
    if kind <= 7 {
        out.push((kind << 5) | size as u8);
    } else {
        out.push(size as u8);
        out.push(kind - 7);
    }
}

fn map(out: &mut Vec<u8>, pairs: usize) {
    control(out, 7, pairs);
}

fn string(out: &mut Vec<u8>, s: &str) {
    control(out, 2, s.len());
    out.extend_from_slice(s.as_bytes());
}

/// An unsigned integer of MaxMind type `kind` (5: u16, 6: u32, 9: u64),
/// in as few big-endian bytes as it needs.
fn uint(out: &mut Vec<u8>, kind: u8, value: u64) {
    let bytes = value.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    control(out, kind, 8 - skip);
    out.extend_from_slice(&bytes[skip..]);
}
