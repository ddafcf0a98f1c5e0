//! Times `ListUsers` searches through gRPC:
//! `search_bench ADDRESS API_KEY ORDER_BY TERM...` (ORDER_BY empty for the
//! default `create_time desc`, or `last_name`). Each term is searched in turn
//! until 100 calls or 15 seconds have run; prints p50, p95 and what the last
//! call matched. Driven by `bench/search`.

use std::time::{Duration, Instant};

use roster::proto::{user_service_client::UserServiceClient, ListUsersRequest};

const CALLS: usize = 100;
const BUDGET: Duration = Duration::from_secs(15);

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let address = args.next().ok_or("ADDRESS missing")?;
    let key = args.next().ok_or("API_KEY missing")?;
    let order_by = args.next().ok_or("ORDER_BY missing (may be empty)")?;
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
    let mut last_page = None;
    let started_all = Instant::now();
    for call in 0..CALLS {
        if started_all.elapsed() > BUDGET {
            break;
        }
        let started = Instant::now();
        let page = client
            .list_users(ListUsersRequest {
                query: terms[call % terms.len()].clone(),
                order_by: order_by.clone(),
                ..Default::default()
            })
            .await?
            .into_inner();
        latencies.push(started.elapsed());
        last_page = Some(page);
    }
    latencies.sort();
    let calls = latencies.len();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let page = last_page.ok_or("no call ran")?;
    println!(
        "grpc    {calls:>3} calls  p50 {:>8.2} ms  p95 {:>8.2} ms  ({} users on the page, total_size {}{})",
        ms(latencies[calls / 2]),
        ms(latencies[calls * 95 / 100]),
        page.users.len(),
        page.total_size,
        if page.total_size_estimated { " estimated" } else { "" }
    );
    Ok(())
}
