//! Where an IP address is, from a MaxMind-format database (GeoIP2 or
//! GeoLite2, City or Country), for user session listings.

use std::net::IpAddr;
use std::path::Path;

use maxminddb::{Reader, geoip2};
use sessiond_protocol::Location;

pub struct GeoIp {
    reader: Reader<Vec<u8>>,
}

impl std::fmt::Debug for GeoIp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GeoIp").field("database_type", &self.reader.metadata().database_type).finish()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("cannot open the GeoIP database {path}: {source}")]
pub struct GeoIpError {
    path: String,
    source: maxminddb::MaxMindDbError,
}

impl GeoIp {
    /// Reads the whole database into memory (a City database is tens of MB).
    pub fn open(path: &Path) -> Result<Self, GeoIpError> {
        let reader =
            Reader::open_readfile(path).map_err(|source| GeoIpError { path: path.display().to_string(), source })?;
        Ok(Self { reader })
    }

    /// The country and city of `ip`, if the database knows it. Lookup errors
    /// (a corrupt record) are treated as unknown: a listing never fails for them.
    pub fn locate(&self, ip: &str) -> Option<Location> {
        let ip: IpAddr = ip.parse().ok()?;
        let city: geoip2::City<'_> = self.reader.lookup(ip).ok()?.decode().ok()??;
        let location = Location {
            country_code: city.country.iso_code.map(str::to_owned),
            country: city.country.names.english.map(str::to_owned),
            city: city.city.names.english.map(str::to_owned),
        };
        let known = location.country_code.is_some() || location.country.is_some() || location.city.is_some();
        known.then_some(location)
    }
}
