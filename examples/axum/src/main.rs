//! An axum app whose sessions live in sessiond, through tower-sessions and
//! `sessiond_tower::SessiondStore`: a visit counter kept in the session, a
//! login that rotates the session id, and a "your active sessions" page
//! where the signed-in user ends any of their sessions, or all but this one.
//!
//! With the daemon running (`cargo run --release -p sessiond` at the
//! repository root, as the README says), run from the repository root:
//!
//! ```sh
//! cargo run -p sessiond-example-axum
//! ```
//!
//! and open <http://127.0.0.1:3000>. `SESSIOND_SOCKET` names the daemon's
//! socket (default `sessiond-data/sessiond.sock`, where the daemon serves by
//! default), `LISTEN` the address to serve on.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Form, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use sessiond_client::SessionInfo;
use sessiond_tower::SessiondStore;
use time::Duration;
use tower_sessions::{Expiry, Session, SessionManagerLayer};

const DEFAULT_SOCKET: &str = "sessiond-data/sessiond.sock";
const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
/// The session entry naming the signed-in user; the store makes it the
/// session's owner, so the daemon can list and revoke a user's sessions.
const USER: &str = "user_id";
const COUNTER: &str = "counter";
/// The one password this demo accepts, for any username.
const PASSWORD: &str = "demo";

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sessiond-example-axum: {message}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    let socket = std::env::var("SESSIOND_SOCKET").unwrap_or_else(|_| DEFAULT_SOCKET.to_owned());
    let listen = std::env::var("LISTEN").unwrap_or_else(|_| DEFAULT_LISTEN.to_owned());
    let client = sessiond_client::Client::connect(sessiond_client::Options::new(&socket)).await.map_err(|e| {
        let why = match e {
            sessiond_client::Error::Io(io) => io.to_string(),
            e => e.to_string(),
        };
        format!("cannot reach sessiond at {socket}: {why} (is the daemon running? SESSIOND_SOCKET names its socket)")
    })?;
    let max_age = Duration::hours(2);
    let store = SessiondStore::new(client).on_inactivity(max_age).with_owner_field(USER);
    let sessions = SessionManagerLayer::new(store.clone())
        .with_secure(false) // plain HTTP on loopback; keep the default (true) behind HTTPS
        .with_expiry(Expiry::OnInactivity(max_age))
        .with_always_save(true);
    // The cookie is SameSite=Strict (tower-sessions' default), so no other
    // site can make a browser post these forms with it.
    let app = Router::new()
        .route("/", get(home))
        .route("/login", get(login_page).post(login))
        .route("/logout", post(logout))
        .route("/sessions", get(sessions_page))
        .route("/sessions/revoke", post(revoke))
        .route("/sessions/revoke-others", post(revoke_others))
        .layer(sessions)
        .with_state(store);
    let listener =
        tokio::net::TcpListener::bind(&listen).await.map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!("listening on http://{listen}");
    axum::serve(listener, app).await.map_err(|e| format!("serving on {listen}: {e}"))
}

/// A failure of the session or the daemon: logged, and answered with a 500
/// that says no more.
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Self(e.to_string())
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        eprintln!("request failed: {}", self.0);
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error: the session store failed").into_response()
    }
}

type Result<T, E = Failure> = std::result::Result<T, E>;

async fn home(session: Session) -> Result<Html<String>> {
    let count = session.get::<u64>(COUNTER).await?.unwrap_or(0) + 1;
    session.insert(COUNTER, count).await?;
    let who = match session.get::<String>(USER).await? {
        Some(user) => format!(
            "<p>Signed in as <b>{}</b>. <a href=\"/sessions\">Your active sessions</a></p>{LOGOUT}",
            escape(&user)
        ),
        None => "<p>Not signed in. <a href=\"/login\">Sign in</a></p>".to_owned(),
    };
    Ok(page("Home", &format!("<p>You have loaded this page {count} time(s) in this session.</p>{who}")))
}

const LOGOUT: &str = r#"<form method="post" action="/logout"><button>Sign out</button></form>"#;

async fn login_page() -> Html<String> {
    page("Sign in", &login_form(""))
}

fn login_form(error: &str) -> String {
    format!(
        r#"{error}<p>Any username works, with the password <code>demo</code>.</p>
<form method="post" action="/login">
<p><label>Username <input name="username" required maxlength="64"></label></p>
<p><label>Password <input name="password" type="password" required></label></p>
<p><button>Sign in</button></p>
</form>"#
    )
}

#[derive(Deserialize)]
struct Login {
    username: String,
    password: String,
}

async fn login(session: Session, Form(form): Form<Login>) -> Result<Response> {
    let username = form.username.trim();
    if username.is_empty() || username.len() > 64 || form.password != PASSWORD {
        let body = page("Sign in", &login_form("<p><b>Wrong username or password.</b></p>"));
        return Ok((StatusCode::UNAUTHORIZED, body).into_response());
    }
    // A new session id at login: an id planted in the browser before
    // (session fixation) is worthless after it.
    session.cycle_id().await?;
    session.insert(USER, username).await?;
    Ok(Redirect::to("/sessions").into_response())
}

async fn logout(session: Session) -> Result<Redirect> {
    session.flush().await?;
    Ok(Redirect::to("/"))
}

async fn sessions_page(State(store): State<SessiondStore>, session: Session) -> Result<Response> {
    let Some(user) = session.get::<String>(USER).await? else {
        return Ok(Redirect::to("/login").into_response());
    };
    let current = current_handle(&store, &session).await?;
    let now = now_ms();
    let mut rows = String::new();
    for s in user_sessions(&store, &user).await? {
        let action = if current.as_deref() == Some(s.handle.as_str()) {
            "this browser".to_owned()
        } else {
            format!(
                r#"<form method="post" action="/sessions/revoke"><input type="hidden" name="handle" value="{}"><button>End it</button></form>"#,
                escape(&s.handle)
            )
        };
        rows += &format!(
            "<tr><td>{} ago</td><td>{} ago</td><td>in {}</td><td>{}</td><td>{}</td><td>{action}</td></tr>\n",
            span(now.saturating_sub(s.created_ms)),
            span(now.saturating_sub(s.last_active_ms)),
            span(s.expires_at_ms.saturating_sub(now)),
            escape(s.ip.as_deref().unwrap_or("-")),
            escape(s.user_agent.as_deref().unwrap_or("-")),
        );
    }
    let body = format!(
        r#"<p>Signed in as <b>{}</b>.</p>
<table border="1" cellpadding="4">
<tr><th>Started</th><th>Last active</th><th>Expires</th><th>IP</th><th>Browser</th><th></th></tr>
{rows}</table>
<p>(This example records no IP or browser; <code>Client::set_meta</code> would.)</p>
<form method="post" action="/sessions/revoke-others"><button>Sign out everywhere else</button></form>
{LOGOUT}"#,
        escape(&user)
    );
    Ok(page("Your active sessions", &body).into_response())
}

#[derive(Deserialize)]
struct Revoke {
    handle: String,
}

async fn revoke(State(store): State<SessiondStore>, session: Session, Form(form): Form<Revoke>) -> Result<Redirect> {
    let Some(user) = session.get::<String>(USER).await? else {
        return Ok(Redirect::to("/login"));
    };
    // Only a handle from the user's own list: a handle sent by hand must
    // never end someone else's session.
    if user_sessions(&store, &user).await?.iter().any(|s| s.handle == form.handle) {
        store.client().revoke(&form.handle).await?;
    }
    Ok(Redirect::to("/sessions"))
}

async fn revoke_others(State(store): State<SessiondStore>, session: Session) -> Result<Redirect> {
    let Some(user) = session.get::<String>(USER).await? else {
        return Ok(Redirect::to("/login"));
    };
    let Some(current) = current_handle(&store, &session).await? else {
        return Ok(Redirect::to("/login"));
    };
    store.client().revoke_user(&user, Some(&current)).await?;
    Ok(Redirect::to("/sessions"))
}

/// The public handle of this request's session: the daemon's listings show
/// handles, never keys. The key is the tower-sessions id.
async fn current_handle(store: &SessiondStore, session: &Session) -> Result<Option<String>> {
    let Some(id) = session.id() else { return Ok(None) };
    match store.client().get(&id.to_string()).await {
        Ok(s) => Ok(Some(s.handle)),
        Err(sessiond_client::Error::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// All of a user's live sessions, most recently active first.
async fn user_sessions(store: &SessiondStore, user: &str) -> Result<Vec<SessionInfo>> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.client().list_user_page(user, 0, after.as_deref()).await?;
        all.extend(page.sessions);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(all),
        }
    }
}

fn page(title: &str, body: &str) -> Html<String> {
    Html(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title} - sessiond + axum</title></head>\n\
         <body><h1>{title}</h1>\n{body}\n<p><a href=\"/\">Home</a> | <a href=\"/sessions\">Your sessions</a></p>\n\
         </body></html>\n"
    ))
}

/// Text made safe to put in HTML, in an element or a quoted attribute.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A span of milliseconds, roughly, for people.
fn span(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min", s / 60),
        3600..86400 => format!("{} h {} min", s / 3600, s % 3600 / 60),
        _ => format!("{} d", s / 86400),
    }
}
