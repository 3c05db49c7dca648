//! actix-session 0.11.0's own `acceptance_test_suite` (its `test_helpers`
//! module, copied out of the published crate by build.rs) on
//! `SessiondStore`, against the real daemon: five scenarios under the
//! signed and the private cookie policy, with invalidation supported.

// The suite names actix-session's items by `crate::` paths; these give it
// the same paths here, through the crate's public API only.
mod config {
    pub use actix_session::config::*;
}
mod storage {
    pub use actix_session::storage::*;
}
pub use actix_session::{Session, SessionExt, SessionMiddleware};

#[allow(clippy::all, clippy::unwrap_used, clippy::expect_used, unused)]
mod suite {
    include!(concat!(env!("OUT_DIR"), "/actix_acceptance.rs"));
}
use suite::test_helpers;

#[actix_web::test]
async fn acceptance_test_suite() {
    let client = sessiond_tests::shared_daemon().client().await;
    test_helpers::acceptance_test_suite(move || sessiond_actix::SessiondStore::new(client.clone()), true).await;
}
