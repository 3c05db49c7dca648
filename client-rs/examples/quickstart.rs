//! The client example from the README: create a session at login, read and
//! update it on later requests, rotate its key, log out.
//!
//! Run a daemon (`cargo run --release -p sessiond`), then:
//! `cargo run --release --example quickstart`

use sessiond_client::{Client, Error, Expiry, Options};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let client = Client::connect(Options::new("sessiond-data/sessiond.sock")).await?;

    // A visitor arrives: create a session, put its key in the cookie.
    let created = client.create([("cart", "3 items")], Expiry::IdleSecs(30 * 60)).await?;
    let mut key = created.key;

    // Login: rotate the key (against session fixation), then record the user.
    key = client.cycle(&key).await?.key;
    client.patch(&key, [("user_id", "42")], Vec::new(), None).await?;

    // A later request: read the session, counting it as activity.
    let session = client.get_touch(&key).await?;
    println!("user {:?}, {} fields, version {}", session.fields.get("user_id"), session.fields.len(), session.version);

    // Logout.
    client.delete(&key).await?;
    assert!(matches!(client.get(&key).await, Err(Error::NotFound)));
    Ok(())
}
