//! What the adapters do beyond the frameworks' suites, each where they
//! differ from the frameworks' other stores: field-wise saves, no
//! resurrection, sliding expiry without writes, owners.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use sessiond_client::{Client, Expiry};
use time::Duration;
use tower_sessions::{Expiry as TowerExpiry, Session};

async fn client() -> Client {
    sessiond_tests::shared_daemon().client().await
}

fn session(store: &sessiond_tower::SessiondStore, id: Option<tower_sessions::session::Id>) -> Session {
    Session::new(id, Arc::new(store.clone()), None)
}

/// A fresh session holding `a = 1`, saved; returns its id.
async fn seeded(store: &sessiond_tower::SessiondStore) -> tower_sessions::session::Id {
    let s = session(store, None);
    s.insert("a", 1).await.unwrap();
    s.save().await.unwrap();
    s.id().unwrap()
}

#[tokio::test]
async fn tower_requests_that_change_different_entries_both_keep_their_change() {
    let client = client().await;
    let store = sessiond_tower::SessiondStore::new(client.clone());
    let id = seeded(&store).await;

    // Two requests load the session before either saves.
    let first = session(&store, Some(id));
    let second = session(&store, Some(id));
    assert_eq!(first.get::<i32>("a").await.unwrap(), Some(1));
    assert_eq!(second.get::<i32>("a").await.unwrap(), Some(1));
    first.insert("x", 10).await.unwrap();
    second.insert("y", 20).await.unwrap();
    first.save().await.unwrap();
    second.save().await.unwrap();

    let stored = client.get(&id.to_string()).await.unwrap();
    let names: Vec<&str> = stored.fields.keys().map(String::as_str).collect();
    assert_eq!(names, ["a", "x", "y"], "a whole-record save would have lost x");

    // A removal by one request and an insert by another both hold too.
    let first = session(&store, Some(id));
    let second = session(&store, Some(id));
    first.load().await.unwrap();
    second.load().await.unwrap();
    first.remove::<i32>("x").await.unwrap();
    second.insert("z", 30).await.unwrap();
    first.save().await.unwrap();
    second.save().await.unwrap();
    let stored = client.get(&id.to_string()).await.unwrap();
    let names: Vec<&str> = stored.fields.keys().map(String::as_str).collect();
    assert_eq!(names, ["a", "y", "z"]);
    assert_eq!(stored.fields["z"], b"30");
}

#[tokio::test]
async fn tower_a_save_never_brings_back_a_session_ended_meanwhile() {
    let client = client().await;
    let store = sessiond_tower::SessiondStore::new(client.clone()).with_owner_field("user_id");
    let s = session(&store, None);
    s.insert("user_id", "mallory-victim").await.unwrap();
    s.save().await.unwrap();
    let id = s.id().unwrap();
    assert_eq!(client.list_user("mallory-victim").await.unwrap().len(), 1);

    let request = session(&store, Some(id));
    request.load().await.unwrap();
    // Logged out everywhere while the request runs.
    assert_eq!(client.revoke_user("mallory-victim", None).await.unwrap(), 1);
    request.insert("cart", 3).await.unwrap();
    request.save().await.expect("the miss is logged, not an error");

    assert!(!client.exists(&id.to_string()).await.unwrap());
    assert!(client.list_user("mallory-victim").await.unwrap().is_empty());
    assert!(session(&store, Some(id)).get::<i32>("cart").await.unwrap().is_none());
}

#[tokio::test]
async fn tower_on_inactivity_slides_on_loads_and_an_unchanged_save_writes_nothing() {
    let client = client().await;
    let max_age = Duration::minutes(10);
    let store = sessiond_tower::SessiondStore::new(client.clone()).on_inactivity(max_age);
    let s = Session::new(None, Arc::new(store.clone()), Some(TowerExpiry::OnInactivity(max_age)));
    s.insert("a", 1).await.unwrap();
    s.save().await.unwrap();
    let key = s.id().unwrap().to_string();
    let before = client.get(&key).await.unwrap();
    assert_eq!(before.expiry, Expiry::IdleSecs(600));

    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    // A request that only reads, saved as `with_always_save(true)` does.
    let request = Session::new(s.id(), Arc::new(store.clone()), Some(TowerExpiry::OnInactivity(max_age)));
    assert_eq!(request.get::<i32>("a").await.unwrap(), Some(1));
    request.save().await.unwrap();

    let after = client.get(&key).await.unwrap();
    assert!(after.expires_at_ms >= before.expires_at_ms + 1000, "the load counted as activity");
    assert_eq!(after.version, before.version, "nothing was written");

    // A date that is not `max_age` from now is an absolute one.
    let at = time::OffsetDateTime::now_utc() + Duration::days(3);
    request.set_expiry(Some(TowerExpiry::AtDateTime(at)));
    request.save().await.unwrap();
    let after = client.get(&key).await.unwrap();
    let at_ms = u64::try_from(at.unix_timestamp_nanos() / 1_000_000).unwrap();
    assert_eq!(after.expiry, Expiry::At(at_ms));
    assert_eq!(after.version, before.version + 1, "the expiry went in one write");
}

#[tokio::test]
async fn tower_the_owner_field_binds_and_clears_the_owner_in_the_save() {
    let client = client().await;
    let store = sessiond_tower::SessiondStore::new(client.clone()).with_owner_field("user_id");
    let s = session(&store, None);
    s.insert("counter", 1).await.unwrap();
    s.save().await.unwrap();
    let key = s.id().unwrap().to_string();
    assert_eq!(client.get(&key).await.unwrap().user, None);

    let login = session(&store, s.id());
    login.insert("user_id", 4242).await.unwrap();
    login.save().await.unwrap();
    let stored = client.get(&key).await.unwrap();
    assert_eq!(stored.user.as_deref(), Some("4242"));
    let listed = client.list_user("4242").await.unwrap();
    assert_eq!(listed.iter().map(|i| i.handle.as_str()).collect::<Vec<_>>(), [stored.handle.as_str()]);

    let logout = session(&store, s.id());
    logout.remove::<i64>("user_id").await.unwrap();
    logout.save().await.unwrap();
    assert_eq!(client.get(&key).await.unwrap().user, None);
    assert!(client.list_user("4242").await.unwrap().is_empty());
}

mod actix {
    use actix_session::config::{PersistentSession, TtlExtensionPolicy};
    use actix_session::{Session, SessionMiddleware};
    use actix_web::cookie::{Cookie, Key};
    use actix_web::{App, HttpResponse, test, web};
    use sessiond_actix::SessiondStore;

    use super::client;

    fn middleware(store: SessiondStore, key: &Key, policy: TtlExtensionPolicy) -> SessionMiddleware<SessiondStore> {
        SessionMiddleware::builder(store, key.clone())
            .cookie_secure(false)
            .session_lifecycle(
                PersistentSession::default()
                    .session_ttl(actix_web::cookie::time::Duration::minutes(10))
                    .session_ttl_extension_policy(policy),
            )
            .build()
    }

    fn session_cookie(res: &actix_web::dev::ServiceResponse) -> Cookie<'static> {
        res.response().cookies().find(|c| c.name() == "id").expect("a session cookie").into_owned()
    }

    /// The handler's own store, to end the session while the request runs.
    async fn login(session: Session, user: web::Path<String>) -> HttpResponse {
        session.insert("user_id", user.into_inner()).unwrap();
        HttpResponse::Ok().finish()
    }

    async fn count(session: Session) -> HttpResponse {
        let n = session.get::<u32>("n").unwrap().unwrap_or(0) + 1;
        session.insert("n", n).unwrap();
        HttpResponse::Ok().body(n.to_string())
    }

    async fn look(session: Session) -> HttpResponse {
        HttpResponse::Ok().body(format!("{:?}", session.get::<String>("user_id").unwrap()))
    }

    async fn ended_meanwhile(session: Session, store: web::Data<SessiondStore>) -> HttpResponse {
        let user = session.get::<String>("user_id").unwrap().unwrap();
        store.client().revoke_user(&user, None).await.unwrap();
        session.insert("cart", 3).unwrap();
        HttpResponse::Ok().finish()
    }

    #[actix_web::test]
    async fn an_update_of_a_session_ended_meanwhile_makes_no_session() {
        let store = SessiondStore::new(client().await).with_owner_field("user_id");
        let key = Key::generate();
        let app = test::init_service(
            App::new()
                .app_data(web::Data::new(store.clone()))
                .wrap(middleware(store.clone(), &key, TtlExtensionPolicy::OnStateChanges))
                .route("/login/{user}", web::post().to(login))
                .route("/cart", web::post().to(ended_meanwhile))
                .route("/look", web::get().to(look)),
        )
        .await;
        let res = test::call_service(&app, test::TestRequest::post().uri("/login/trudy-victim").to_request()).await;
        assert!(res.status().is_success());
        let cookie = session_cookie(&res);
        assert_eq!(store.client().list_user("trudy-victim").await.unwrap().len(), 1);

        let res =
            test::call_service(&app, test::TestRequest::post().uri("/cart").cookie(cookie.clone()).to_request()).await;
        assert!(res.status().is_success(), "{}", res.status());
        assert!(
            store.client().list_user("trudy-victim").await.unwrap().is_empty(),
            "the ended session was brought back"
        );
        let res = test::call_service(&app, test::TestRequest::get().uri("/look").cookie(cookie).to_request()).await;
        assert_eq!(test::read_body(res).await, "None");
    }

    #[actix_web::test]
    async fn ttl_on_every_request_moves_the_expiry_and_counting_works() {
        let store = SessiondStore::new(client().await).with_owner_field("user_id");
        let key = Key::generate();
        let app = test::init_service(
            App::new()
                .wrap(middleware(store.clone(), &key, TtlExtensionPolicy::OnEveryRequest))
                .route("/login/{user}", web::post().to(login))
                .route("/count", web::post().to(count))
                .route("/look", web::get().to(look)),
        )
        .await;
        let res = test::call_service(&app, test::TestRequest::post().uri("/login/walter").to_request()).await;
        let cookie = session_cookie(&res);
        let res =
            test::call_service(&app, test::TestRequest::post().uri("/count").cookie(cookie.clone()).to_request()).await;
        let cookie = res.response().cookies().find(|c| c.name() == "id").map_or(cookie, |c| c.into_owned());
        assert_eq!(test::read_body(res).await, "1");
        let before = store.client().list_user("walter").await.unwrap();
        assert_eq!(before.len(), 1);

        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        let res = test::call_service(&app, test::TestRequest::get().uri("/look").cookie(cookie).to_request()).await;
        assert_eq!(test::read_body(res).await, "Some(\"walter\")");
        let after = store.client().list_user("walter").await.unwrap();
        assert!(after[0].expires_at_ms >= before[0].expires_at_ms + 1000, "update_ttl moved the expiry");
        assert!(after[0].last_active_ms > before[0].last_active_ms);
    }

    /// `update_ttl` is a TOUCH: the expiry moves, the data and its version
    /// do not.
    #[actix_web::test]
    async fn update_ttl_rewrites_no_data() {
        use actix_session::storage::SessionStore as _;

        let store = SessiondStore::new(client().await);
        let ttl = actix_web::cookie::time::Duration::minutes(10);
        let state = [("n".to_owned(), "1".to_owned())].into_iter().collect();
        let key = store.save(state, &ttl).await.unwrap();
        let before = store.client().get(key.as_ref()).await.unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
        store.update_ttl(&key, &ttl).await.unwrap();
        let after = store.client().get(key.as_ref()).await.unwrap();
        assert!(after.expires_at_ms >= before.expires_at_ms + 1000, "the expiry moved");
        assert_eq!((after.version, &after.fields), (before.version, &before.fields), "nothing was written");
    }
}
