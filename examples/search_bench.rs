//! Times `ListUsers` searches through gRPC: `search_bench ADDRESS API_KEY TERM...`.
//! Each term is searched in turn until 100 calls have run; prints p50 and p95.
//! Driven by `bench/search`.

use std::time::{Duration, Instant};

use roster::proto::{user_service_client::UserServiceClient, ListUsersRequest};

const CALLS: usize = 100;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let address = args.next().ok_or("ADDRESS missing")?;
    let key = args.next().ok_or("API_KEY missing")?;
    let terms: Vec<String> = args.collect();
    if terms.is_empty() {
        return Err("give at least one search term".into());
    }
    let channel = tonic::transport::Channel::from_shared(address)?
        .connect()
        .await?;
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {key}").parse()?;
    let mut client =
        UserServiceClient::with_interceptor(channel, move |mut request: tonic::Request<()>| {
            request
                .metadata_mut()
                .insert("authorization", bearer.clone());
            Ok(request)
        });
    let mut latencies: Vec<Duration> = Vec::with_capacity(CALLS);
    let mut matched = 0;
    for call in 0..CALLS {
        let query = terms[call % terms.len()].clone();
        let started = Instant::now();
        let page = client
            .list_users(ListUsersRequest {
                query,
                ..Default::default()
            })
            .await?
            .into_inner();
        latencies.push(started.elapsed());
        matched += page.users.len();
    }
    latencies.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "grpc ListUsers: {CALLS} calls, p50 {:.2} ms, p95 {:.2} ms ({matched} users returned in all)",
        ms(latencies[CALLS / 2]),
        ms(latencies[CALLS * 95 / 100])
    );
    Ok(())
}
