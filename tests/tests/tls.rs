//! TCP with TLS beside the Unix socket: a client with a good certificate is
//! served exactly as on the socket; no certificate, an unknown CA, an
//! identity not allowed, plaintext and a stalled handshake are refused,
//! served nothing, and cost the daemon a bounded amount.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use std::time::{Duration, Instant};

use sessiond_client::{Client, ErrorCode, Expiry, Options, TlsFiles};
use sessiond_protocol::{Hello, Request};
use sessiond_tests::Daemon;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `sessiond tls init` into `dir`, with `client_name` as the client's identity.
fn tls_init(dir: &Path, client_name: &str) -> PathBuf {
    let out = std::process::Command::new(sessiond_tests::binary("sessiond"))
        .args(["tls", "init", "--client-name", client_name, "--dir"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir.to_owned()
}

/// A daemon with a TLS listener on a free loopback port, its certificates
/// from `tls init` in `<data>/tls`, admitting `allow`.
fn start(root: &Path, allow: &str, extra: &str) -> Daemon {
    let data = root.join("d");
    std::fs::create_dir(&data).unwrap();
    std::fs::set_permissions(&data, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    tls_init(&data.join("tls"), "sessiond-client");
    let config = format!("[tls]\nlisten = [\"127.0.0.1:0\"]\nallow_clients = [{allow:?}]\n{extra}");
    Daemon::start(&data, Some(&config))
}

fn tls_options(daemon: &Daemon, files: &TlsFiles) -> Options {
    Options::parse(&daemon.url("tls://"), Some(files)).unwrap().timeout(Duration::from_secs(10))
}

fn own_files(daemon: &Daemon) -> TlsFiles {
    TlsFiles::in_dir(&daemon.data_dir.join("tls"))
}

fn stat(daemon: &Daemon, name: &str) -> u64 {
    daemon.blocking().stats().unwrap().into_iter().find(|s| s.name == name).unwrap().value
}

fn hello_frame() -> Vec<u8> {
    let mut frame = Vec::new();
    Request::Hello(Hello { version: 2, client: "raw".into() }).encode_frame(1, &mut frame);
    frame
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_with_a_good_certificate_is_served_as_on_the_socket() {
    let root = tempfile::tempdir().unwrap();
    let daemon = start(root.path(), "sessiond-client", "");
    let tls = Client::connect(tls_options(&daemon, &own_files(&daemon))).await.unwrap();
    // A large session, read back by many requests in flight at once: the
    // answers (400 KB each) cross TLS records and the output limit.
    let big = vec![b'x'; 400_000];
    let key = tls.create([("v", big.clone())], Expiry::Default).await.unwrap().key;
    let reads: Vec<_> = (0..16)
        .map(|_| {
            let (tls, key) = (tls.clone(), key.clone());
            tokio::spawn(async move { tls.get(&key).await })
        })
        .collect();
    for read in reads {
        assert_eq!(read.await.unwrap().unwrap().fields["v"], big);
    }
    // One store, whichever way in.
    assert_eq!(daemon.client().await.get(&key).await.unwrap().fields["v"], big);

    let blocking = sessiond_client::blocking::Client::connect(tls_options(&daemon, &own_files(&daemon))).unwrap();
    assert_eq!(blocking.get(&key).unwrap().version, 1);
    let dir = daemon.data_dir.join("tls");
    let (code, out, err) =
        sessiond_tests::sessionctl(daemon.url("tls://"), &["--tls-dir", dir.to_str().unwrap(), "ping"]);
    assert_eq!((code, out.trim()), (0, "pong"), "{err}");
}

/// Served nothing: the only request the daemon counts between the two
/// reads of its counters is the second read itself.
fn assert_served_nothing(daemon: &Daemon, attempt: impl FnOnce()) {
    let watcher = daemon.blocking();
    let requests = || watcher.stats().unwrap().into_iter().find(|s| s.name == "requests").unwrap().value;
    let before = requests();
    attempt();
    assert_eq!(requests(), before + 1, "a refused client was served");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_without_a_good_certificate_are_refused_and_served_nothing() {
    let root = tempfile::tempdir().unwrap();
    let daemon = start(root.path(), "web-1", "");
    let own = own_files(&daemon);

    // A certificate the CA signed, for an identity not in allow_clients:
    // told FORBIDDEN over the channel.
    let refused = Client::connect(tls_options(&daemon, &own)).await.unwrap_err();
    assert_eq!(refused.code(), Some(ErrorCode::Forbidden), "{refused:?}");
    assert!(stat(&daemon, "connections_forbidden") >= 1);

    // A certificate from another CA, and no certificate at all: the
    // handshake fails. Each also sends HELLO and a CREATE as it would.
    let other = tls_init(&root.path().join("other"), "web-1");
    let foreign = TlsFiles { ca: own.ca.clone(), cert: other.join("client.pem"), key: other.join("client.key") };
    let foreign = tls_options(&daemon, &foreign);
    let addr = daemon.url("tls://").trim_start_matches("tls://").to_owned();
    let roots = {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(&own.ca).unwrap()).unwrap();
        roots
    };
    let no_cert = Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    );
    let failed_before = stat(&daemon, "tls_handshakes_failed");
    let runtime = tokio::runtime::Handle::current();
    assert_served_nothing(&daemon, || {
        let err = sessiond_client::blocking::Client::connect(foreign).unwrap_err();
        assert!(err.code().is_none(), "refused in the handshake, not by an answer: {err:?}");
        let answer = std::thread::spawn(move || runtime.block_on(raw_tls_exchange(&addr, no_cert))).join().unwrap();
        assert!(answer.is_empty(), "a client without a certificate got {} bytes of answers", answer.len());
    });
    assert!(stat(&daemon, "tls_handshakes_failed") >= failed_before + 2);
    // And the daemon still serves.
    daemon.client().await.ping().await.unwrap();
}

/// Connects with `config`, sends HELLO and a CREATE, and returns whatever
/// plaintext comes back before the daemon closes.
async fn raw_tls_exchange(addr: &str, config: Arc<rustls::ClientConfig>) -> Vec<u8> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    // In TLS 1.3 the client's side of the handshake ends before the daemon
    // checks its certificate, so the refusal shows on the reads after it.
    let Ok(mut tls) = tokio_rustls::TlsConnector::from(config).connect(name, tcp).await else { return Vec::new() };
    let mut frames = hello_frame();
    sessiond_protocol::Request::Create(sessiond_protocol::Create {
        fields: vec![sessiond_protocol::Field { name: "a".into(), value: b"1".to_vec() }],
        expiry: Expiry::Default,
        meta: sessiond_protocol::Meta::default(),
    })
    .encode_frame(2, &mut frames);
    let _ = tls.write_all(&frames).await;
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await;
    answer
}

#[test]
fn a_plaintext_client_on_the_tls_port_is_refused_without_harm() {
    let root = tempfile::tempdir().unwrap();
    let daemon = start(root.path(), "sessiond-client", "");
    let addr = daemon.url("tls://").trim_start_matches("tls://").to_owned();
    assert_served_nothing(&daemon, || {
        let mut plain = std::net::TcpStream::connect(&addr).unwrap();
        plain.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        plain.write_all(&hello_frame()).unwrap();
        let mut back = Vec::new();
        let _ = plain.read_to_end(&mut back);
        // At most a TLS alert record (content type 21), never a frame.
        assert!(back.is_empty() || back[0] == 21, "plaintext got {back:?}");
    });
    assert!(stat(&daemon, "tls_handshakes_failed") >= 1);
    let tls = sessiond_client::blocking::Client::connect(tls_options(&daemon, &own_files(&daemon))).unwrap();
    tls.ping().unwrap();
}

#[test]
fn stalled_handshakes_are_closed_after_their_timeout_and_cost_bounded_memory() {
    const STALLED: usize = 200;
    let root = tempfile::tempdir().unwrap();
    let daemon = start(root.path(), "sessiond-client", "handshake_timeout_secs = 1\n");
    let addr = daemon.url("tls://").trim_start_matches("tls://").to_owned();
    let rss_before = sessiond_tests::rss_bytes(daemon.child.id());
    // Half send nothing; half the start of a ClientHello that claims 16 KB
    // and never comes.
    let stalled: Vec<std::net::TcpStream> = (0..STALLED)
        .map(|i| {
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            if i % 2 == 1 {
                s.write_all(&[22, 3, 1, 0x40, 0, 1, 0, 0x3f, 0xfc]).unwrap();
            }
            s
        })
        .collect();
    // While they stall, a good client is served.
    let tls = sessiond_client::blocking::Client::connect(tls_options(&daemon, &own_files(&daemon))).unwrap();
    tls.ping().unwrap();
    let grown = sessiond_tests::rss_bytes(daemon.child.id()).saturating_sub(rss_before);
    // The bound the code keeps: one rustls session and a 4 KiB read buffer
    // per connection, well under 64 KiB each.
    assert!(grown < (STALLED as u64) * (64 << 10), "{STALLED} stalled handshakes took {grown} bytes");

    let deadline = Instant::now() + Duration::from_secs(10);
    for mut s in stalled {
        s.set_read_timeout(Some(deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1))))
            .unwrap();
        let mut buf = [0u8; 64];
        // EOF, or a reset after the alert: closed either way; a timeout is not.
        match s.read(&mut buf) {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            Err(e) => panic!("a stalled handshake was not closed: {e}"),
        }
    }
    assert!(stat(&daemon, "limit_tls_handshake_closed") >= STALLED as u64);
    tls.ping().unwrap();
}
