//! The golden vectors of PROTOCOL.md: every vector in the document must
//! decode to the message named here, and that message must encode to the
//! exact bytes in the document. A change to the wire format therefore fails
//! here until PROTOCOL.md says the same.

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a panic is a failure report

use std::collections::BTreeMap;

use sessiond_protocol::*;

fn key() -> String {
    SessionKey::from_bytes(core::array::from_fn(|i| i as u8)).encode()
}

fn handle() -> String {
    SessionHandle::from_bytes(core::array::from_fn(|i| 0xA0 + i as u8)).encode()
}

fn field(name: &str, value: &[u8]) -> Field {
    Field { name: name.into(), value: value.to_vec() }
}

/// Each vector's name in PROTOCOL.md, its request id, and the message.
fn limits() -> Limits {
    Limits {
        max_frame: 1_048_576,
        max_session_bytes: 524_288,
        max_fields: 1024,
        max_field_name: 256,
        max_inflight: 256,
    }
}

fn vectors() -> Vec<(&'static str, u32, Message)> {
    use Message::{Req, Resp};
    vec![
        ("HELLO", 1, Req(Request::Hello(Hello { version: 1, client: "py".into() }))),
        (
            "HELLO_OK",
            1,
            Resp(Response::Hello(HelloOk {
                version: 1,
                server: "sessiond 0.1.0".into(),
                limits: limits(),
                settings: None,
            })),
        ),
        ("HELLO (version 2)", 1, Req(Request::Hello(Hello { version: 2, client: "py".into() }))),
        (
            "HELLO_OK (version 2)",
            1,
            Resp(Response::Hello(HelloOk {
                version: 2,
                server: "sessiond 0.1.0".into(),
                limits: limits(),
                settings: Some(Settings {
                    default_idle_secs: 1_209_600,
                    max_lifetime_secs: 0,
                    touch_granularity_secs: 60,
                    max_user_agent: 512,
                    max_sessions_per_user: 0,
                    max_list_page: 1000,
                }),
            })),
        ),
        ("PING", 2, Req(Request::Ping(Empty {}))),
        ("PONG", 2, Resp(Response::Pong(Empty {}))),
        ("STATS", 3, Req(Request::Stats(Empty {}))),
        (
            "STATS_OK",
            3,
            Resp(Response::Stats(StatsOk {
                counters: vec![Counter { name: "commits".into(), value: 300 }],
                histograms: vec![Histogram {
                    name: "request_latency_us".into(),
                    label: "GET".into(),
                    bounds: vec![50, 100],
                    counts: vec![7, 2, 1],
                    sum: 900,
                }],
            })),
        ),
        (
            "CREATE",
            4,
            Req(Request::Create(Create {
                fields: vec![field("cart", b"3")],
                expiry: Expiry::IdleSecs(3600),
                meta: Meta {
                    user: Some("42".into()),
                    ip: Some("192.0.2.7".into()),
                    user_agent: Some("Mozilla/5.0".into()),
                },
            })),
        ),
        (
            "CREATE (default expiry, no fields)",
            5,
            Req(Request::Create(Create { fields: vec![], expiry: Expiry::Default, meta: Meta::default() })),
        ),
        (
            "CREATED",
            4,
            Resp(Response::Created(Created {
                key: key(),
                handle: handle(),
                version: 1,
                expires_at_ms: 1_700_003_600_000,
            })),
        ),
        ("GET", 6, Req(Request::Get(Get { key: key(), touch: true, ip: None, user_agent: None }))),
        (
            "GET (comparing the client)",
            17,
            Req(Request::Get(Get {
                key: key(),
                touch: false,
                ip: Some("2001:db8::1".into()),
                user_agent: Some("Mozilla/5.0".into()),
            })),
        ),
        (
            "SESSION",
            6,
            Resp(Response::Session(SessionBody {
                fields: vec![field("cart", b"3")],
                version: 1,
                created_ms: 1_700_000_000_000,
                modified_ms: 1_700_000_000_000,
                last_active_ms: 1_700_000_000_000,
                expires_at_ms: 1_700_003_600_000,
                ttl_ms: 3_600_000,
                expiry: Expiry::IdleSecs(3600),
                handle: handle(),
                user: Some("42".into()),
                ip: Some("192.0.2.7".into()),
                user_agent: Some("Mozilla/5.0".into()),
                ip_changed: false,
                user_agent_changed: false,
            })),
        ),
        ("EXISTS", 7, Req(Request::Exists(KeyOnly { key: key() }))),
        ("EXISTS_OK", 7, Resp(Response::Exists(ExistsOk { exists: false }))),
        (
            "REPLACE",
            8,
            Req(Request::Replace(Replace { key: key(), fields: vec![field("a", b"1")], expected_version: Some(1) })),
        ),
        ("REPLACED", 8, Resp(Response::Replaced(Written { version: 2, expires_at_ms: 1_700_003_600_000 }))),
        (
            "PATCH",
            9,
            Req(Request::Patch(Patch {
                key: key(),
                set: vec![field("cart", b"3")],
                remove: vec!["a".into()],
                expected_version: None,
            })),
        ),
        ("PATCHED", 9, Resp(Response::Patched(Written { version: 3, expires_at_ms: 1_700_003_600_000 }))),
        ("TOUCH", 10, Req(Request::Touch(KeyOnly { key: key() }))),
        ("TOUCHED", 10, Resp(Response::Touched(Written { version: 3, expires_at_ms: 1_700_007_200_000 }))),
        ("DELETE", 11, Req(Request::Delete(KeyOnly { key: key() }))),
        ("DELETED", 11, Resp(Response::Deleted(DeletedOk { existed: true }))),
        ("CYCLE", 12, Req(Request::Cycle(Cycle { key: key(), bind_user: None }))),
        ("CYCLE (login)", 18, Req(Request::Cycle(Cycle { key: key(), bind_user: Some("42".into()) }))),
        (
            "CYCLED",
            12,
            Resp(Response::Cycled(Created {
                key: key(),
                handle: handle(),
                version: 4,
                expires_at_ms: 1_700_007_200_000,
            })),
        ),
        ("SET_META", 19, Req(Request::SetMeta(SetMeta { key: key(), ip: Some("192.0.2.8".into()), user_agent: None }))),
        ("META_SET", 19, Resp(Response::MetaSet(Written { version: 4, expires_at_ms: 1_700_007_200_000 }))),
        (
            "CREATE_AS",
            30,
            Req(Request::CreateAs(CreateAs {
                key: "AAECAwQFBgcICQoLDA0ODw".into(),
                fields: vec![field("cart", b"3")],
                expiry: Expiry::IdleSecs(1800),
                meta: Meta::default(),
            })),
        ),
        (
            "CREATED_AS",
            30,
            Resp(Response::CreatedAs(Created {
                key: "AAECAwQFBgcICQoLDA0ODw".into(),
                handle: handle(),
                version: 1,
                expires_at_ms: 1_700_001_800_000,
            })),
        ),
        ("ERROR (key exists)", 30, Resp(Response::error(ErrorCode::KeyExists, "a session has this key"))),
        (
            "WRITE",
            31,
            Req(Request::Write(Write {
                key: key(),
                set: vec![field("_auth_user_id", b"42")],
                remove: vec!["cart".into()],
                replace: false,
                expected_version: None,
                expiry: Some(Expiry::IdleSecs(3600)),
                owner: Owner::Set("42".into()),
            })),
        ),
        ("WRITTEN", 31, Resp(Response::Written(Written { version: 6, expires_at_ms: 1_700_003_600_000 }))),
        (
            "CYCLE_AS",
            33,
            Req(Request::CycleAs(CycleAs {
                key: key(),
                new_key: "AAECAwQFBgcICQoLDA0ODw".into(),
                bind_user: Some("42".into()),
            })),
        ),
        (
            "CYCLED_AS",
            33,
            Resp(Response::CycledAs(Created {
                key: "AAECAwQFBgcICQoLDA0ODw".into(),
                handle: handle(),
                version: 7,
                expires_at_ms: 1_700_003_600_000,
            })),
        ),
        ("LIST_USER_PAGE", 32, Req(Request::ListUserPage(ListUserPage { user: "42".into(), limit: 100, after: None }))),
        (
            "USER_PAGE",
            32,
            Resp(Response::UserPage(UserPage {
                sessions: vec![SessionInfo {
                    handle: handle(),
                    created_ms: 1_700_000_000_000,
                    last_active_ms: 1_700_000_600_000,
                    expires_at_ms: 1_700_004_200_000,
                    ip: None,
                    user_agent: None,
                    location: None,
                }],
                next: Some("1700000600000.".to_owned() + &handle()),
            })),
        ),
        ("LIST_USER", 20, Req(Request::ListUser(ListUser { user: "42".into() }))),
        (
            "USER_SESSIONS",
            20,
            Resp(Response::UserSessions(UserSessions {
                sessions: vec![SessionInfo {
                    handle: handle(),
                    created_ms: 1_700_000_000_000,
                    last_active_ms: 1_700_000_600_000,
                    expires_at_ms: 1_700_004_200_000,
                    ip: Some("192.0.2.7".into()),
                    user_agent: Some("Mozilla/5.0".into()),
                    location: Some(Location {
                        country_code: Some("FR".into()),
                        country: Some("France".into()),
                        city: Some("Paris".into()),
                    }),
                }],
            })),
        ),
        ("REVOKE", 21, Req(Request::Revoke(Revoke { handle: handle() }))),
        ("REVOKED", 21, Resp(Response::Revoked(RevokedOk { count: 1 }))),
        ("REVOKE_USER", 22, Req(Request::RevokeUser(RevokeUser { user: "42".into(), keep: Some(handle()) }))),
        ("USER_REVOKED", 22, Resp(Response::UserRevoked(RevokedOk { count: 3 }))),
        ("SWEEP", 14, Req(Request::Sweep(Empty {}))),
        ("SWEPT", 14, Resp(Response::Swept(SweptOk { removed: 1000 }))),
        (
            "SET_EXPIRY (absolute)",
            15,
            Req(Request::SetExpiry(SetExpiry { key: key(), expiry: Expiry::At(1_700_086_400_000) })),
        ),
        (
            "SET_EXPIRY (browser close)",
            16,
            Req(Request::SetExpiry(SetExpiry { key: key(), expiry: Expiry::BrowserClose })),
        ),
        ("EXPIRY_SET", 15, Resp(Response::ExpirySet(Written { version: 5, expires_at_ms: 1_700_086_400_000 }))),
        ("ROTATE_KEYS", 23, Req(Request::RotateKeys(Empty {}))),
        ("KEYS_ROTATED", 23, Resp(Response::KeysRotated(KeysRotated { active_kid: 0x1234_abcd }))),
        (
            "ISSUE_TRANSFER",
            24,
            Req(Request::IssueTransfer(IssueTransfer {
                key: key(),
                source_host: "www.example.com".into(),
                destinations: vec!["www.example.org".into()],
                state_hash: None,
            })),
        ),
        (
            "TRANSFER_ISSUED",
            24,
            Resp(Response::TransferIssued(TransferIssued {
                tokens: vec![HostToken { host: "www.example.org".into(), token: "AQE".into() }],
            })),
        ),
        (
            "REDEEM_TRANSFER",
            25,
            Req(Request::RedeemTransfer(RedeemTransfer {
                token: "AQE".into(),
                host: "www.example.org".into(),
                current_key: None,
                always_replace: false,
                state: Some(vec![1, 2, 3]),
            })),
        ),
        ("REDEEMED", 25, Resp(Response::Redeemed(Redeemed { key: key(), replaced: true }))),
        (
            "SEAL",
            26,
            Req(Request::Seal(Seal {
                fields: vec![field("cart", b"3")],
                expiry: Expiry::IdleSecs(1800),
                user: None,
                cookie_name: "__Host-s".into(),
                host: "www.example.com".into(),
            })),
        ),
        ("SEALED", 26, Resp(Response::Sealed(Sealed { value: "AQI".into(), expires_at_ms: 1_700_001_800_000 }))),
        (
            "UNSEAL",
            27,
            Req(Request::Unseal(SealedCookie {
                value: "AQI".into(),
                cookie_name: "__Host-s".into(),
                host: "www.example.com".into(),
            })),
        ),
        (
            "UNSEALED",
            27,
            Resp(Response::Unsealed(Unsealed {
                fields: vec![field("cart", b"3")],
                user: None,
                sid: "00112233445566778899aabbccddeeff".into(),
                expires_at_ms: 1_700_001_800_000,
                reseal: None,
            })),
        ),
        (
            "REVOKE_SEALED",
            28,
            Req(Request::RevokeSealed(SealedCookie {
                value: "AQI".into(),
                cookie_name: "__Host-s".into(),
                host: "www.example.com".into(),
            })),
        ),
        ("SEALED_REVOKED", 28, Resp(Response::SealedRevoked(RevokedOk { count: 1 }))),
        (
            "ERROR",
            13,
            Resp(Response::Error(ErrorBody { code: ErrorCode::NotFound as u16, message: "no such session".into() })),
        ),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum Message {
    Req(Request),
    Resp(Response),
}

impl Message {
    fn encode(&self, id: u32) -> Vec<u8> {
        let mut out = Vec::new();
        match self {
            Self::Req(r) => r.encode_frame(id, &mut out),
            Self::Resp(r) => r.encode_frame(id, &mut out),
        }
        out
    }

    fn decode(&self, opcode: u8, body: &[u8]) -> Self {
        match self {
            Self::Req(_) => Self::Req(Request::decode(opcode, body).unwrap()),
            Self::Resp(_) => Self::Resp(Response::decode(opcode, body).unwrap()),
        }
    }
}

/// Reads the vectors section of PROTOCOL.md: a `#### NAME` heading, then
/// a ```hex block.
fn documented() -> BTreeMap<String, Vec<u8>> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/PROTOCOL.md")).unwrap();
    let mut out = BTreeMap::new();
    let mut name = None;
    let mut hex_text: Option<String> = None;
    for line in doc.lines() {
        if let Some(n) = line.strip_prefix("#### ") {
            name = Some(n.trim().to_string());
        } else if line.trim() == "```hex" {
            hex_text = Some(String::new());
        } else if line.trim() == "```" {
            if let (Some(n), Some(h)) = (name.take(), hex_text.take()) {
                out.insert(n, hex::decode(h).unwrap());
            }
        } else if let Some(h) = hex_text.as_mut() {
            h.extend(line.split_whitespace());
        }
    }
    out
}

#[test]
fn every_golden_vector_in_protocol_md_matches_the_code() {
    let doc = documented();
    let mut missing = Vec::new();
    for (name, id, message) in vectors() {
        let encoded = message.encode(id);
        let Some(bytes) = doc.get(name) else {
            missing.push(format!("#### {name}\n```hex\n{}\n```", hex::encode(&encoded)));
            continue;
        };
        assert_eq!(hex::encode(bytes), hex::encode(&encoded), "vector {name}: the code encodes differently");
        // The daemon answers GET through the borrowed body: it must give the
        // documented bytes too.
        if let Message::Resp(Response::Session(body)) = &message {
            let mut borrowed = Vec::new();
            body.with_borrowed(|view| view.encode_frame(id, &mut borrowed));
            assert_eq!(hex::encode(bytes), hex::encode(&borrowed), "vector {name}: SessionBodyRef encodes differently");
        }
        let frame = decode_frame(bytes, u32::MAX).unwrap().unwrap();
        assert_eq!((frame.header.request_id, frame.len), (id, bytes.len()), "vector {name}");
        assert_eq!(message.decode(frame.header.opcode, frame.body), message, "vector {name}");
    }
    assert!(missing.is_empty(), "PROTOCOL.md lacks these vectors:\n\n{}", missing.join("\n\n"));
    assert_eq!(doc.len(), vectors().len(), "PROTOCOL.md has vectors this test does not know");
}

/// The rows of PROTOCOL.md's opcode table: (request, opcode, body,
/// response, opcode, body), with `(empty)` for an empty body.
fn opcode_table() -> Vec<[String; 6]> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/PROTOCOL.md")).unwrap();
    doc.lines()
        .skip_while(|l| !l.starts_with("| request | opcode |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<String> = l.trim_matches('|').split('|').map(|c| c.trim().to_string()).collect();
            cells.try_into().unwrap_or_else(|c: Vec<String>| panic!("a row of {} cells: {l}", c.len()))
        })
        .collect()
}

#[test]
fn the_opcode_table_in_protocol_md_matches_the_code() {
    let body = |name: Option<&str>| name.map(|n| if n == "Empty" { "(empty)" } else { n }.to_string());
    let opcode = |text: &str| u8::from_str_radix(text.trim_start_matches("0x"), 16).unwrap();
    let rows = opcode_table();
    let mut requests = Vec::new();
    let mut responses = Vec::new();
    for [request, req_op, req_body, response, resp_op, resp_body] in &rows {
        if request != "(any)" {
            let op = opcode(req_op);
            assert_eq!(Request::name_of(op), Some(request.as_str()), "{request}");
            assert_eq!(body(Request::body_name_of(op)).as_deref(), Some(req_body.as_str()), "{request}'s body");
            requests.push(op);
        }
        let op = opcode(resp_op);
        assert_eq!(Response::name_of(op), Some(response.as_str()), "{response}");
        assert_eq!(body(Response::body_name_of(op)).as_deref(), Some(resp_body.as_str()), "{response}'s body");
        responses.push(op);
    }
    requests.sort_unstable();
    responses.sort_unstable();
    let (mut known_requests, mut known_responses) = (Request::OPCODES.to_vec(), Response::OPCODES.to_vec());
    known_requests.sort_unstable();
    known_responses.sort_unstable();
    assert_eq!(requests, known_requests, "requests the table and the code disagree on");
    assert_eq!(responses, known_responses, "responses the table and the code disagree on");
}
