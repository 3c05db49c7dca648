//! An actix-web app whose sessions live in sessiond, through actix-session
//! and `sessiond_actix::SessiondStore`: a visit counter kept in the session,
//! a login that renews the session key, and a "your active sessions" page
//! where the signed-in user ends any of their sessions, or all of them.
//!
//! With the daemon running (`cargo run --release -p sessiond` at the
//! repository root, as the README says), run from the repository root:
//!
//! ```sh
//! cargo run -p sessiond-example-actix
//! ```
//!
//! and open <http://127.0.0.1:3001>. `SESSIOND_SOCKET` names the daemon's
//! socket (default `sessiond-data/sessiond.sock`, where the daemon serves by
//! default), `LISTEN` the address to serve on.

use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use actix_session::{Session, SessionMiddleware};
use actix_web::cookie::Key;
use actix_web::http::header;
use actix_web::{App, HttpResponse, HttpServer, web};
use serde::Deserialize;
use sessiond_actix::SessiondStore;
use sessiond_client::SessionInfo;

const DEFAULT_SOCKET: &str = "sessiond-data/sessiond.sock";
const DEFAULT_LISTEN: &str = "127.0.0.1:3001";
/// The session entry naming the signed-in user; the store makes it the
/// session's owner, so the daemon can list and revoke a user's sessions.
const USER: &str = "user_id";
const COUNTER: &str = "counter";
/// The one password this demo accepts, for any username.
const PASSWORD: &str = "demo";

#[actix_web::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("sessiond-example-actix: {message}");
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
    let store = SessiondStore::new(client).with_owner_field(USER);
    // The key that encrypts the session cookie. Made afresh here, so a
    // restart signs everyone out; a real app loads it from its secrets.
    let key = Key::generate();
    // The cookie is SameSite=Lax (actix-session's default), so no other
    // site can make a browser post these forms with it.
    let server = HttpServer::new(move || {
        App::new()
            .wrap(
                SessionMiddleware::builder(store.clone(), key.clone())
                    .cookie_secure(false) // plain HTTP on loopback; keep the default (true) behind HTTPS
                    .build(),
            )
            .app_data(web::Data::new(store.clone()))
            .route("/", web::get().to(home))
            .route("/login", web::get().to(login_page))
            .route("/login", web::post().to(login))
            .route("/logout", web::post().to(logout))
            .route("/sessions", web::get().to(sessions_page))
            .route("/sessions/revoke", web::post().to(revoke))
            .route("/sessions/revoke-others", web::post().to(revoke_all))
    })
    .bind(listen.as_str())
    .map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    println!("listening on http://{listen}");
    server.run().await.map_err(|e| format!("serving on {listen}: {e}"))
}

type Result<T, E = actix_web::Error> = std::result::Result<T, E>;

/// A failure of the daemon: logged, and answered with a 500 that says no
/// more.
fn failed(e: impl std::fmt::Display) -> actix_web::Error {
    eprintln!("request failed: {e}");
    actix_web::error::ErrorInternalServerError("internal error: the session store failed")
}

async fn home(session: Session) -> Result<HttpResponse> {
    let count = session.get::<u64>(COUNTER)?.unwrap_or(0) + 1;
    session.insert(COUNTER, count)?;
    let who = match session.get::<String>(USER)? {
        Some(user) => format!(
            "<p>Signed in as <b>{}</b>. <a href=\"/sessions\">Your active sessions</a></p>{LOGOUT}",
            escape(&user)
        ),
        None => "<p>Not signed in. <a href=\"/login\">Sign in</a></p>".to_owned(),
    };
    Ok(page("Home", &format!("<p>You have loaded this page {count} time(s) in this session.</p>{who}")))
}

const LOGOUT: &str = r#"<form method="post" action="/logout"><button>Sign out</button></form>"#;

async fn login_page() -> HttpResponse {
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

async fn login(session: Session, form: web::Form<Login>) -> Result<HttpResponse> {
    let username = form.username.trim();
    if username.is_empty() || username.len() > 64 || form.password != PASSWORD {
        let mut response = page("Sign in", &login_form("<p><b>Wrong username or password.</b></p>"));
        *response.status_mut() = actix_web::http::StatusCode::UNAUTHORIZED;
        return Ok(response);
    }
    // A new session key at login: a key planted in the browser before
    // (session fixation) is worthless after it.
    session.renew();
    session.insert(USER, username)?;
    Ok(redirect("/sessions"))
}

async fn logout(session: Session) -> HttpResponse {
    session.purge();
    redirect("/")
}

async fn sessions_page(store: web::Data<SessiondStore>, session: Session) -> Result<HttpResponse> {
    let Some(user) = session.get::<String>(USER)? else {
        return Ok(redirect("/login"));
    };
    let now = now_ms();
    let mut rows = String::new();
    for s in user_sessions(&store, &user).await? {
        rows += &format!(
            r#"<tr><td>{} ago</td><td>{} ago</td><td>in {}</td><td>{}</td><td>{}</td><td><form method="post" action="/sessions/revoke"><input type="hidden" name="handle" value="{}"><button>End it</button></form></td></tr>
"#,
            span(now.saturating_sub(s.created_ms)),
            span(now.saturating_sub(s.last_active_ms)),
            span(s.expires_at_ms.saturating_sub(now)),
            escape(s.ip.as_deref().unwrap_or("-")),
            escape(s.user_agent.as_deref().unwrap_or("-")),
            escape(&s.handle),
        );
    }
    let body = format!(
        r#"<p>Signed in as <b>{}</b>.</p>
<p>actix-session does not show the app its session key, so this page cannot tell which of these sessions is
this browser's: ending one may sign you out here, and the button below ends them all, this one included.</p>
<table border="1" cellpadding="4">
<tr><th>Started</th><th>Last active</th><th>Expires</th><th>IP</th><th>Browser</th><th></th></tr>
{rows}</table>
<p>(This example records no IP or browser; <code>Client::set_meta</code> would.)</p>
<form method="post" action="/sessions/revoke-others"><button>Sign out everywhere</button></form>
{LOGOUT}"#,
        escape(&user)
    );
    Ok(page("Your active sessions", &body))
}

#[derive(Deserialize)]
struct Revoke {
    handle: String,
}

async fn revoke(store: web::Data<SessiondStore>, session: Session, form: web::Form<Revoke>) -> Result<HttpResponse> {
    let Some(user) = session.get::<String>(USER)? else {
        return Ok(redirect("/login"));
    };
    // Only a handle from the user's own list: a handle sent by hand must
    // never end someone else's session.
    if user_sessions(&store, &user).await?.iter().any(|s| s.handle == form.handle) {
        store.client().revoke(&form.handle).await.map_err(failed)?;
    }
    Ok(redirect("/sessions"))
}

/// Ends all of the user's sessions, this one included: this app cannot
/// name its own session to keep it (see the sessions page).
async fn revoke_all(store: web::Data<SessiondStore>, session: Session) -> Result<HttpResponse> {
    let Some(user) = session.get::<String>(USER)? else {
        return Ok(redirect("/login"));
    };
    store.client().revoke_user(&user, None).await.map_err(failed)?;
    session.purge();
    Ok(redirect("/"))
}

/// All of a user's live sessions, most recently active first.
async fn user_sessions(store: &SessiondStore, user: &str) -> Result<Vec<SessionInfo>> {
    let mut all = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let page = store.client().list_user_page(user, 0, after.as_deref()).await.map_err(failed)?;
        all.extend(page.sessions);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(all),
        }
    }
}

fn redirect(to: &str) -> HttpResponse {
    HttpResponse::SeeOther().insert_header((header::LOCATION, to)).finish()
}

fn page(title: &str, body: &str) -> HttpResponse {
    HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{title} - sessiond + actix-web</title></head>\n\
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
