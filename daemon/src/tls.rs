//! TLS for the TCP listeners: the server's rustls configuration (TLS 1.3
//! only, a client certificate required and checked against the operator's
//! CA), which client identities are admitted, and `sessiond tls init`,
//! which makes a CA, a server and a client certificate for a first setup.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;

use crate::config::TlsConfig;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: {error}")]
    File { path: PathBuf, error: String },
    #[error("tls: {0}")]
    Config(String),
    #[error("tls.allow_clients: {0:?} is not a DNS name (or \"*\" for any certificate the CA signed)")]
    BadIdentity(String),
}

/// The client identities admitted: DNS names the client certificate must
/// carry as a subject alternative name, or any certificate the CA signed.
#[derive(Debug)]
pub enum ClientAllow {
    Any,
    Names(Vec<ServerName<'static>>),
}

impl ClientAllow {
    pub fn new(names: &[String]) -> Result<Self, TlsError> {
        if names.iter().any(|n| n == "*") {
            return Ok(Self::Any);
        }
        let names = names
            .iter()
            .map(|n| match ServerName::try_from(n.clone()) {
                Ok(name @ ServerName::DnsName(_)) => Ok(name),
                _ => Err(TlsError::BadIdentity(n.clone())),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self::Names(names))
    }

    /// Whether `cert`, already verified to chain to the CA, names an
    /// admitted identity; if not, why, for the log.
    pub fn admits(&self, cert: &CertificateDer<'_>) -> Result<(), String> {
        let Self::Names(names) = self else { return Ok(()) };
        let parsed =
            webpki::EndEntityCert::try_from(cert).map_err(|e| format!("unreadable client certificate: {e}"))?;
        if names.iter().any(|name| parsed.verify_is_valid_for_subject_name(name).is_ok()) {
            Ok(())
        } else {
            Err("the client certificate names none of tls.allow_clients".to_owned())
        }
    }
}

/// What a TLS listener needs to accept a connection.
#[derive(Debug, Clone)]
pub struct TlsServer {
    pub config: Arc<rustls::ServerConfig>,
    pub allow: Arc<ClientAllow>,
}

impl TlsServer {
    /// Loads the server's certificate chain and key and the client CA
    /// named in the configuration (paths relative to `base`, the data
    /// directory).
    pub fn load(tls: &TlsConfig, base: &Path) -> Result<Self, TlsError> {
        let at = |p: &Path| base.join(p);
        let file_err = |path: &Path, error: String| TlsError::File { path: path.to_owned(), error };
        let certs = read_certs(&at(&tls.cert))?;
        let key_path = at(&tls.key);
        let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| file_err(&key_path, e.to_string()))?;
        let mut roots = rustls::RootCertStore::empty();
        for ca in read_certs(&at(&tls.client_ca))? {
            roots.add(ca).map_err(|e| file_err(&at(&tls.client_ca), e.to_string()))?;
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| TlsError::Config(e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(certs, key)
            .map_err(|e| TlsError::Config(e.to_string()))?;
        Ok(Self { config: Arc::new(config), allow: Arc::new(ClientAllow::new(&tls.allow_clients)?) })
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let err = |error: String| TlsError::File { path: path.to_owned(), error };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| err(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| err(e.to_string()))?;
    if certs.is_empty() {
        return Err(err("no certificate in the file".to_owned()));
    }
    Ok(certs)
}

/// The files `sessiond tls init` writes, by name in its directory.
pub const INIT_FILES: [&str; 6] = ["ca.pem", "ca.key", "server.pem", "server.key", "client.pem", "client.key"];

/// Makes a CA, a server certificate for `server_names` (DNS names or IP
/// addresses) and a client certificate for `client_name`, all signed by
/// the CA, in `dir` (created 0700 if missing; keys written 0600). Refuses
/// to overwrite any of the files.
pub fn init(dir: &Path, server_names: &[String], client_name: &str) -> Result<(), TlsError> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};
    let fail = |e: rcgen::Error| TlsError::Config(e.to_string());
    for name in INIT_FILES {
        if dir.join(name).exists() {
            return Err(TlsError::File { path: dir.join(name), error: "exists; remove it first".to_owned() });
        }
    }
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca.distinguished_name.push(DnType::CommonName, "sessiond CA");
    let ca_key = KeyPair::generate().map_err(fail)?;
    let ca_cert = ca.self_signed(&ca_key).map_err(fail)?;
    let issuer = rcgen::Issuer::new(ca, &ca_key);

    let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose, common_name: &str| {
        let mut params = CertificateParams::new(names).map_err(fail)?;
        params.distinguished_name.push(DnType::CommonName, common_name);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().map_err(fail)?;
        let cert = params.signed_by(&key, &issuer).map_err(fail)?;
        Ok::<_, TlsError>((cert.pem(), key.serialize_pem()))
    };
    let server = leaf(server_names.to_vec(), ExtendedKeyUsagePurpose::ServerAuth, "sessiond")?;
    let client = leaf(vec![client_name.to_owned()], ExtendedKeyUsagePurpose::ClientAuth, client_name)?;

    crate::datadir::prepare(dir).map_err(|e| TlsError::File { path: dir.to_owned(), error: e.to_string() })?;
    let contents = [ca_cert.pem(), ca_key.serialize_pem(), server.0, server.1, client.0, client.1];
    for (name, text) in INIT_FILES.iter().zip(contents) {
        let path = dir.join(name);
        let write = || {
            let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
            std::io::Write::write_all(&mut file, text.as_bytes())?;
            file.sync_all()
        };
        write().map_err(|e| TlsError::File { path: path.clone(), error: e.to_string() })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[test]
    fn init_writes_private_keys_a_server_config_loads_them_and_nothing_is_overwritten() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("tls");
        init(&dir, &["localhost".into(), "127.0.0.1".into()], "web-1").unwrap();
        for name in INIT_FILES {
            let mode = std::fs::metadata(dir.join(name)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
        let config = TlsConfig { allow_clients: vec!["web-1".into()], ..TlsConfig::default() };
        TlsServer::load(&config, root.path()).expect("the files init wrote make a server configuration");
        assert!(matches!(init(&dir, &["localhost".into()], "web-1"), Err(TlsError::File { .. })));
    }

    #[test]
    fn allowed_identities_are_dns_names_or_any() {
        assert!(matches!(ClientAllow::new(&["*".into()]), Ok(ClientAllow::Any)));
        assert!(matches!(ClientAllow::new(&["web-1.internal".into()]), Ok(ClientAllow::Names(n)) if n.len() == 1));
        for bad in ["10.0.0.5", "", "web 1"] {
            assert!(matches!(ClientAllow::new(&[bad.into()]), Err(TlsError::BadIdentity(_))), "{bad:?}");
        }
    }
}
