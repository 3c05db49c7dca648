//! sessionctl: the sessiond admin command line.
//!
//! Exit codes: 0 success, 1 other errors, 2 usage errors, 3 session not
//! found, 4 token or sealed cookie rejected. Errors are one line on stderr.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use serde_json::{Value, json};
use sessiond_client::blocking::Client;
use sessiond_client::{Error, ErrorCode, Expiry, Meta, Options, Session, SessionInfo, TlsFiles};

const EXIT_FAILURE: u8 = 1;
const EXIT_NOT_FOUND: u8 = 3;
const EXIT_REJECTED: u8 = 4;

#[derive(Debug, Parser)]
#[command(name = "sessionctl", version, about = "Administer a sessiond daemon over its Unix socket or TLS")]
struct Cli {
    /// The daemon: a socket path (or unix:PATH), or tls://HOST:PORT with
    /// --tls-dir or the three --tls-* files.
    #[arg(long, env = "SESSIOND_SOCKET", default_value = "sessiond-data/sessiond.sock", value_name = "URL")]
    socket: String,
    /// A directory with ca.pem, client.pem and client.key, as `sessiond tls
    /// init` writes them.
    #[arg(long, env = "SESSIOND_TLS_DIR", value_name = "DIR")]
    tls_dir: Option<PathBuf>,
    /// The CA that signed the daemon's certificate (PEM).
    #[arg(long, value_name = "FILE", requires_all = ["tls_cert", "tls_key"], conflicts_with = "tls_dir")]
    tls_ca: Option<PathBuf>,
    /// This client's certificate (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_ca")]
    tls_cert: Option<PathBuf>,
    /// This client's key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_ca")]
    tls_key: Option<PathBuf>,
    /// Print results as JSON.
    #[arg(long, global = true)]
    json: bool,
    /// Seconds to wait for each answer.
    #[arg(long, default_value_t = 5, value_name = "SECS")]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

// Keys, handles, transfer tokens and sealed values are base64url, so one in
// 64 starts with `-`: every argument that takes one allows a leading hyphen,
// or clap would read it as an unknown flag.
#[derive(Debug, Subcommand)]
enum Command {
    /// Check that the daemon answers.
    Ping,
    /// Create a session and print its key.
    Create {
        /// A field to store, as NAME=VALUE (repeatable).
        #[arg(long = "set", value_name = "NAME=VALUE", value_parser = parse_field)]
        set: Vec<(String, String)>,
        #[command(flatten)]
        expiry: ExpiryArgs,
        /// The owner's user id.
        #[arg(long, value_name = "USER")]
        user: Option<String>,
        /// The client's IP address.
        #[arg(long, value_name = "IP")]
        ip: Option<String>,
        /// The client's user agent.
        #[arg(long = "ua", value_name = "AGENT")]
        user_agent: Option<String>,
    },
    /// Print a session's fields and metadata.
    Get {
        #[arg(allow_hyphen_values = true)]
        key: String,
        /// Count the read as activity.
        #[arg(long)]
        touch: bool,
    },
    /// Print whether a live session exists (exit 3 if not).
    Exists {
        #[arg(allow_hyphen_values = true)]
        key: String,
    },
    /// Set fields, leaving others as they are.
    Set {
        #[arg(allow_hyphen_values = true)]
        key: String,
        #[arg(required = true, value_name = "NAME=VALUE", value_parser = parse_field)]
        fields: Vec<(String, String)>,
        /// Only if the session is at this version.
        #[arg(long, value_name = "VERSION")]
        if_version: Option<u64>,
    },
    /// Remove fields.
    Unset {
        #[arg(allow_hyphen_values = true)]
        key: String,
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        #[arg(long, value_name = "VERSION")]
        if_version: Option<u64>,
    },
    /// Replace all of a session's data.
    Replace {
        #[arg(allow_hyphen_values = true)]
        key: String,
        #[arg(value_name = "NAME=VALUE", value_parser = parse_field)]
        fields: Vec<(String, String)>,
        #[arg(long, value_name = "VERSION")]
        if_version: Option<u64>,
    },
    /// Count activity, extending an idle session.
    Touch {
        #[arg(allow_hyphen_values = true)]
        key: String,
    },
    /// Delete a session (exit 3 if it did not exist).
    Delete {
        #[arg(allow_hyphen_values = true)]
        key: String,
    },
    /// Move a session to a new key and print it; the old key stops working.
    Cycle {
        #[arg(allow_hyphen_values = true)]
        key: String,
        /// Make this user the owner, in the same step (a login).
        #[arg(long, value_name = "USER")]
        user: Option<String>,
    },
    /// Update the IP address and user agent a session is used from.
    Meta {
        #[arg(allow_hyphen_values = true)]
        key: String,
        #[arg(long, value_name = "IP")]
        ip: Option<String>,
        #[arg(long = "ua", value_name = "AGENT")]
        user_agent: Option<String>,
    },
    /// List a user's live sessions: handle, activity, IP, user agent, place.
    List {
        #[arg(long, value_name = "USER")]
        user: String,
    },
    /// End one session by handle, or all of a user's (but one); print how many ended.
    Revoke {
        #[arg(long, value_name = "USER", conflicts_with = "handle", required_unless_present = "handle")]
        user: Option<String>,
        /// With --user: the handle of a session to keep.
        #[arg(long, value_name = "HANDLE", requires = "user", allow_hyphen_values = true)]
        keep: Option<String>,
        #[arg(long, value_name = "HANDLE", allow_hyphen_values = true)]
        handle: Option<String>,
    },
    /// Replace a session's expiry policy (Django's set_expiry).
    Expire {
        #[arg(allow_hyphen_values = true)]
        key: String,
        #[command(flatten)]
        expiry: ExpiryArgs,
    },
    /// Remove expired sessions now and print how many.
    Sweep,
    /// Hand sessions to other sites with transfer tokens.
    #[command(subcommand)]
    Transfer(TransferCommand),
    /// Seal data into an encrypted cookie value and print it.
    Seal {
        #[arg(required = true, value_name = "NAME=VALUE", value_parser = parse_field)]
        fields: Vec<(String, String)>,
        #[arg(long = "cookie", value_name = "NAME")]
        cookie: String,
        #[arg(long, value_name = "HOST")]
        host: String,
        /// Idle lifetime in seconds (default: the daemon's).
        #[arg(long, value_name = "SECS")]
        ttl: Option<u32>,
        #[arg(long, value_name = "USER")]
        user: Option<String>,
    },
    /// Open a sealed cookie and print its fields (exit 4 if rejected).
    Unseal {
        #[arg(allow_hyphen_values = true)]
        value: String,
        #[arg(long = "cookie", value_name = "NAME")]
        cookie: String,
        #[arg(long, value_name = "HOST")]
        host: String,
    },
    /// Revoke a sealed cookie's session for good (exit 4 if the value is rejected).
    RevokeSealed {
        #[arg(allow_hyphen_values = true)]
        value: String,
        #[arg(long = "cookie", value_name = "NAME")]
        cookie: String,
        #[arg(long, value_name = "HOST")]
        host: String,
    },
    /// Manage the daemon's key ring.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print the daemon's counters.
    Stats {
        /// In the Prometheus text format, histograms included.
        #[arg(long)]
        prometheus: bool,
    },
}

#[derive(Debug, Subcommand)]
enum TransferCommand {
    /// Print one line per destination: the host, a space, the token.
    Issue {
        #[arg(allow_hyphen_values = true)]
        key: String,
        #[arg(long = "from", value_name = "HOST")]
        from: String,
        /// Destinations (default: every other configured site).
        #[arg(long = "to", value_name = "HOST", num_args = 1..)]
        to: Vec<String>,
    },
    /// Print the session key to set as this host's cookie (exit 4 if rejected).
    Redeem {
        #[arg(allow_hyphen_values = true)]
        token: String,
        #[arg(long, value_name = "HOST")]
        host: String,
        /// The key of the session this host's cookie holds now.
        #[arg(long, value_name = "KEY", allow_hyphen_values = true)]
        current: Option<String>,
        /// Replace the current session even if it holds data.
        #[arg(long)]
        always_replace: bool,
    },
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Make a fresh key the active one; print its id.
    Rotate,
}

/// An expiry policy; none of the options means the daemon's default.
#[derive(Debug, clap::Args)]
#[group(multiple = false)]
struct ExpiryArgs {
    /// Expire after this many idle seconds.
    #[arg(long, value_name = "SECS")]
    idle: Option<u32>,
    /// Expire at this Unix time (seconds), whatever the activity.
    #[arg(long, value_name = "UNIX_SECS")]
    at: Option<u64>,
    /// The cookie should end with the browser; the daemon applies its default age.
    #[arg(long)]
    browser_close: bool,
}

impl ExpiryArgs {
    fn policy(&self) -> Expiry {
        match (self.idle, self.at, self.browser_close) {
            (Some(secs), _, _) => Expiry::IdleSecs(secs),
            (_, Some(at), _) => Expiry::At(at.saturating_mul(1000)),
            (_, _, true) => Expiry::BrowserClose,
            _ => Expiry::Default,
        }
    }
}

fn parse_field(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("expected NAME=VALUE, got {s:?}")),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let tls = match (&cli.tls_dir, &cli.tls_ca, &cli.tls_cert, &cli.tls_key) {
        (Some(dir), ..) => Some(TlsFiles::in_dir(dir)),
        (None, Some(ca), Some(cert), Some(key)) => {
            Some(TlsFiles { ca: ca.clone(), cert: cert.clone(), key: key.clone() })
        }
        _ => None,
    };
    let result = Options::parse(&cli.socket, tls.as_ref())
        .map(|o| o.timeout(Duration::from_secs(cli.timeout)))
        .and_then(Client::connect)
        .and_then(|client| run(&client, cli.command, cli.json));
    match result {
        Ok(code) => code,
        Err(Error::NotFound) => {
            eprintln!("sessionctl: session not found");
            ExitCode::from(EXIT_NOT_FOUND)
        }
        Err(e) if e.code() == Some(ErrorCode::TokenRejected) => {
            eprintln!("sessionctl: token rejected");
            ExitCode::from(EXIT_REJECTED)
        }
        Err(e) => {
            eprintln!("sessionctl: {e}");
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

fn run(client: &Client, command: Command, as_json: bool) -> Result<ExitCode, Error> {
    let out = Output { json: as_json };
    match command {
        Command::Ping => {
            client.ping()?;
            out.print("pong", json!({"ok": true}));
        }
        Command::Create { set, expiry, user, ip, user_agent } => {
            let c = client.create_with_meta(set, expiry.policy(), Meta { user, ip, user_agent })?;
            out.created(&c);
        }
        Command::Get { key, touch } => {
            let session = if touch { client.get_touch(&key)? } else { client.get(&key)? };
            print_session(&out, &session);
        }
        Command::Exists { key } => {
            let exists = client.exists(&key)?;
            out.print(if exists { "true" } else { "false" }, json!({"exists": exists}));
            if !exists {
                return Ok(ExitCode::from(EXIT_NOT_FOUND));
            }
        }
        Command::Set { key, fields, if_version } => {
            let w = client.patch(&key, fields, Vec::new(), if_version)?;
            out.written(w);
        }
        Command::Unset { key, names, if_version } => {
            let w = client.patch(&key, Vec::<(String, String)>::new(), names, if_version)?;
            out.written(w);
        }
        Command::Replace { key, fields, if_version } => {
            let w = client.replace(&key, fields, if_version)?;
            out.written(w);
        }
        Command::Touch { key } => out.written(client.touch(&key)?),
        Command::Delete { key } => {
            if !client.delete(&key)? {
                return Err(Error::NotFound);
            }
            out.print("deleted", json!({"deleted": true}));
        }
        Command::Cycle { key, user } => {
            let c = match user {
                Some(user) => client.cycle_bind(&key, &user)?,
                None => client.cycle(&key)?,
            };
            out.created(&c);
        }
        Command::Meta { key, ip, user_agent } => {
            out.written(client.set_meta(&key, ip.as_deref(), user_agent.as_deref())?)
        }
        Command::List { user } => print_listing(&out, &client.list_user(&user)?),
        Command::Revoke { user, keep, handle } => {
            let count = match (user, handle) {
                (Some(user), _) => client.revoke_user(&user, keep.as_deref())?,
                (None, Some(handle)) => client.revoke(&handle)?,
                (None, None) => unreachable!("clap requires --user or --handle"),
            };
            out.print(&format!("revoked {count}"), json!({"revoked": count}));
        }
        Command::Expire { key, expiry } => out.written(client.set_expiry(&key, expiry.policy())?),
        Command::Sweep => {
            let removed = client.sweep()?;
            out.print(&format!("removed {removed}"), json!({"removed": removed}));
        }
        Command::Transfer(TransferCommand::Issue { key, from, to }) => {
            let to: Vec<&str> = to.iter().map(String::as_str).collect();
            let tokens = client.issue_transfer(&key, &from, &to, None)?;
            let text: Vec<String> = tokens.iter().map(|t| format!("{} {}", t.host, t.token)).collect();
            let value: Vec<Value> = tokens.iter().map(|t| json!({"host": t.host, "token": t.token})).collect();
            out.print(&text.join("\n"), Value::Array(value));
        }
        Command::Transfer(TransferCommand::Redeem { token, host, current, always_replace }) => {
            let r = client.redeem_transfer(&token, &host, current.as_deref(), always_replace, None)?;
            out.print(&r.key, json!({"key": r.key, "replaced": r.replaced}));
        }
        Command::Seal { fields, cookie, host, ttl, user } => {
            let expiry = ttl.map_or(Expiry::Default, Expiry::IdleSecs);
            let sealed = client.seal(fields, expiry, user.as_deref(), &cookie, &host)?;
            out.print(&sealed.value, json!({"value": sealed.value, "expires_at_ms": sealed.expires_at_ms}));
        }
        Command::Unseal { value, cookie, host } => {
            let u = client.unseal(&value, &cookie, &host)?;
            let mut text: Vec<String> =
                u.fields.iter().map(|f| format!("{}={}", f.name, String::from_utf8_lossy(&f.value))).collect();
            text.push(format!("# sid {} expires_at_ms {}", u.sid, u.expires_at_ms));
            let fields: serde_json::Map<String, Value> =
                u.fields.iter().map(|f| (f.name.clone(), json!(String::from_utf8_lossy(&f.value)))).collect();
            let value = json!({"fields": fields, "user": u.user, "sid": u.sid, "expires_at_ms": u.expires_at_ms, "reseal": u.reseal});
            out.print(&text.join("\n"), value);
        }
        Command::RevokeSealed { value, cookie, host } => {
            client.revoke_sealed(&value, &cookie, &host)?;
            out.print("revoked", json!({"revoked": true}));
        }
        Command::Keys(KeysCommand::Rotate) => {
            let kid = client.rotate_keys()?;
            out.print(&format!("{kid:08x}"), json!({"active_kid": format!("{kid:08x}")}));
        }
        Command::Stats { prometheus: true } => print!("{}", sessiond_client::prometheus::render(&client.metrics()?)),
        Command::Stats { prometheus: false } => {
            let counters = client.stats()?;
            let text: Vec<String> = counters.iter().map(|c| format!("{} {}", c.name, c.value)).collect();
            let map: serde_json::Map<String, Value> = counters.into_iter().map(|c| (c.name, json!(c.value))).collect();
            out.print(&text.join("\n"), Value::Object(map));
        }
    }
    Ok(ExitCode::SUCCESS)
}

struct Output {
    json: bool,
}

impl Output {
    fn print(&self, text: &str, value: Value) {
        if self.json {
            println!("{value}");
        } else {
            println!("{text}");
        }
    }

    fn created(&self, c: &sessiond_client::Created) {
        let value = json!({"key": c.key, "handle": c.handle, "version": c.version, "expires_at_ms": c.expires_at_ms});
        self.print(&c.key, value);
    }

    fn written(&self, w: sessiond_client::Written) {
        self.print(&format!("version {}", w.version), json!({"version": w.version, "expires_at_ms": w.expires_at_ms}));
    }
}

/// Text: one NAME=VALUE line per field (values that are not UTF-8 as
/// `0x` hex), then a `#` line of metadata. JSON: everything.
fn print_session(out: &Output, s: &Session) {
    let shown = |v: &[u8]| match std::str::from_utf8(v) {
        Ok(text) => text.to_owned(),
        Err(_) => format!("0x{}", hex::encode(v)),
    };
    let mut text: Vec<String> = s.fields.iter().map(|(k, v)| format!("{k}={}", shown(v))).collect();
    let policy = match s.expiry {
        Expiry::Default => "default".to_owned(),
        Expiry::IdleSecs(secs) => format!("idle {secs}s"),
        Expiry::At(ms) => format!("at {ms}"),
        Expiry::BrowserClose => "browser-close".to_owned(),
    };
    text.push(format!(
        "# version {} created_ms {} modified_ms {} last_active_ms {} expires_at_ms {} ttl_ms {} expiry {policy}",
        s.version, s.created_ms, s.modified_ms, s.last_active_ms, s.expires_at_ms, s.ttl_ms
    ));
    let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
    text.push(format!(
        "# handle {} user {} ip {} user_agent {:?}",
        s.handle,
        or_dash(&s.user),
        or_dash(&s.ip),
        or_dash(&s.user_agent)
    ));
    let fields: serde_json::Map<String, Value> = s.fields.iter().map(|(k, v)| (k.clone(), json!(shown(v)))).collect();
    let value = json!({
        "fields": fields,
        "version": s.version,
        "created_ms": s.created_ms,
        "modified_ms": s.modified_ms,
        "last_active_ms": s.last_active_ms,
        "expires_at_ms": s.expires_at_ms,
        "ttl_ms": s.ttl_ms,
        "handle": s.handle,
        "user": s.user,
        "ip": s.ip,
        "user_agent": s.user_agent,
        "expiry": match s.expiry {
            Expiry::Default => json!("default"),
            Expiry::IdleSecs(secs) => json!({"idle_secs": secs}),
            Expiry::At(ms) => json!({"at_ms": ms}),
            Expiry::BrowserClose => json!("browser_close"),
        },
    });
    out.print(&text.join("\n"), value);
}

/// Text: one line per session, tab-separated: handle, last activity and
/// creation (Unix ms), IP, location, user agent. JSON: an array.
fn print_listing(out: &Output, sessions: &[SessionInfo]) {
    let dash = |v: Option<&str>| v.unwrap_or("-").to_owned();
    let place = |s: &SessionInfo| {
        s.location.as_ref().map_or("-".to_owned(), |l| {
            [l.city.as_deref(), l.country.as_deref().or(l.country_code.as_deref())]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ")
        })
    };
    let text: Vec<String> = sessions
        .iter()
        .map(|s| {
            let ip = dash(s.ip.as_deref());
            let ua = dash(s.user_agent.as_deref());
            format!("{}\t{}\t{}\t{ip}\t{}\t{ua}", s.handle, s.last_active_ms, s.created_ms, place(s))
        })
        .collect();
    let value: Vec<Value> = sessions
        .iter()
        .map(|s| {
            json!({
                "handle": s.handle,
                "created_ms": s.created_ms,
                "last_active_ms": s.last_active_ms,
                "expires_at_ms": s.expires_at_ms,
                "ip": s.ip,
                "user_agent": s.user_agent,
                "location": s.location.as_ref().map(|l| json!({
                    "country_code": l.country_code, "country": l.country, "city": l.city,
                })),
            })
        })
        .collect();
    out.print(&text.join("\n"), Value::Array(value));
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A base64url key, token, handle or sealed value starts with `-` one
    /// time in 64; clap must take it as a value, not as an unknown flag.
    const DASHED: &str = "-Dashed_value";

    fn parse(args: &[&str]) -> Command {
        let argv = std::iter::once("sessionctl").chain(args.iter().copied());
        match Cli::try_parse_from(argv) {
            Ok(cli) => cli.command,
            Err(e) => panic!("{args:?} did not parse: {e}"),
        }
    }

    #[test]
    fn values_that_start_with_a_dash_are_values() {
        let cases: &[&[&str]] = &[
            &["get", DASHED],
            &["exists", DASHED],
            &["set", DASHED, "a=1"],
            &["unset", DASHED, "a"],
            &["replace", DASHED, "a=1"],
            &["touch", DASHED],
            &["delete", DASHED],
            &["cycle", DASHED, "--user", "u"],
            &["meta", DASHED, "--ip", "10.0.0.1"],
            &["expire", DASHED, "--idle", "60"],
            &["revoke", "--handle", DASHED],
            &["revoke", "--user", "u", "--keep", DASHED],
            &["unseal", DASHED, "--cookie", "c", "--host", "h"],
            &["revoke-sealed", DASHED, "--cookie", "c", "--host", "h"],
            &["transfer", "issue", DASHED, "--from", "h"],
            &["transfer", "redeem", DASHED, "--host", "h"],
            &["transfer", "redeem", "t", "--host", "h", "--current", DASHED],
        ];
        for args in cases {
            let parsed = format!("{:?}", parse(args));
            assert!(parsed.contains(&format!("{DASHED:?}")), "{args:?} parsed as {parsed}");
        }
    }

    #[test]
    fn flags_around_a_dashed_value_are_still_flags() {
        for args in [["get", DASHED, "--touch"], ["get", "--touch", DASHED]] {
            match parse(&args) {
                Command::Get { key, touch } => assert_eq!((key.as_str(), touch), (DASHED, true), "{args:?}"),
                other => panic!("{args:?} parsed as {other:?}"),
            }
        }
        match parse(&["transfer", "issue", DASHED, "--from", "a", "--to", "b", "c"]) {
            Command::Transfer(TransferCommand::Issue { key, from, to }) => {
                assert_eq!((key.as_str(), from.as_str(), to), (DASHED, "a", vec!["b".to_owned(), "c".to_owned()]));
            }
            other => panic!("parsed as {other:?}"),
        }
    }
}
