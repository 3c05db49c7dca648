//! A rough probe of single-connection GET latency: one client, one request
//! at a time. The load generator in benches/ is the real measuring tool;
//! this is a quick check that needs nothing but a running daemon.
//!
//! `cargo run --release --example latency -- [SOCKET] [REQUESTS] [async|blocking]`

use std::time::Instant;

use sessiond_client::{Client, Error, Expiry, Options};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Error> {
    let mut args = std::env::args().skip(1);
    let socket = args.next().unwrap_or_else(|| "sessiond-data/sessiond.sock".into());
    let requests: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(20_000);
    let blocking = args.next().is_some_and(|mode| mode == "blocking");
    let client = Client::connect(Options::new(&socket)).await?;
    let fields: Vec<(String, Vec<u8>)> = (0..10).map(|i| (format!("field{i}"), vec![b'x'; 100])).collect();
    let key = client.create(fields, Expiry::Default).await?.key;
    let mut micros = Vec::with_capacity(requests);
    let start = Instant::now();
    if blocking {
        let client = sessiond_client::blocking::Client::connect(Options::new(&socket))?;
        for _ in 0..requests {
            let t = Instant::now();
            client.get(&key)?;
            micros.push(t.elapsed().as_secs_f64() * 1e6);
        }
    } else {
        for _ in 0..requests {
            let t = Instant::now();
            client.get(&key).await?;
            micros.push(t.elapsed().as_secs_f64() * 1e6);
        }
    }
    let total = start.elapsed().as_secs_f64();
    micros.sort_by(f64::total_cmp);
    let pct = |p: f64| micros[((micros.len() as f64 * p) as usize).min(micros.len() - 1)];
    println!(
        "{} client, {requests} sequential GETs of a ~1 KiB session: {:.0} req/s, p50 {:.1} us, p99 {:.1} us, max {:.1} us",
        if blocking { "blocking" } else { "async" },
        requests as f64 / total,
        pct(0.50),
        pct(0.99),
        micros[micros.len() - 1]
    );
    client.delete(&key).await?;
    Ok(())
}
