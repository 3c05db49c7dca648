//! tower-sessions 0.15.0's own route tests (the `route_tests!` macro from its
//! `tests/common/mod.rs`, copied out of the published crate by build.rs)
//! through an axum `Router` and `SessionManagerLayer` on `SessiondStore`,
//! against the real daemon; and `expired`, in the same style.

#[macro_use]
#[allow(clippy::all, clippy::unwrap_used, clippy::expect_used, unused)]
mod common {
    include!(concat!(env!("OUT_DIR"), "/tower_route_tests.rs"));
}

#[allow(clippy::all, clippy::unwrap_used, clippy::expect_used)]
mod sessiond_store {
    use axum::Router;
    use sessiond_tower::SessiondStore;
    use tower_sessions::SessionManagerLayer;

    use crate::common::build_app;

    /// As a user would configure it: the store told the layer's idle age.
    async fn app(max_age: Option<Duration>, domain: Option<String>) -> Router {
        let client = sessiond_tests::shared_daemon().client().await;
        let mut store = SessiondStore::new(client);
        if let Some(max_age) = max_age {
            store = store.on_inactivity(max_age);
        }
        build_app(SessionManagerLayer::new(store).with_secure(true), max_age, domain)
    }

    route_tests!(app);

    /// A session past its idle age is gone, for the layer and in the daemon.
    #[tokio::test]
    async fn expired() {
        let app = app(Some(Duration::seconds(1)), None).await;
        let req = Request::builder().uri("/insert").body(Body::empty()).unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        let session_cookie = get_session_cookie(res.headers()).unwrap();
        let cookie = session_cookie.encoded().to_string();
        let key = session_cookie.value().to_owned();

        let req = Request::builder().uri("/get_value").header(header::COOKIE, &cookie).body(Body::empty()).unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(body_string(res.into_body()).await, "Some(Number(42))");

        tokio::time::sleep(std::time::Duration::from_millis(1500)).await;

        let req = Request::builder().uri("/get_value").header(header::COOKIE, &cookie).body(Body::empty()).unwrap();
        let res = app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        assert_eq!(body_string(res.into_body()).await, "None");
        let client = sessiond_tests::shared_daemon().client().await;
        assert!(!client.exists(&key).await.unwrap(), "the daemon still has the expired session");
    }
}
