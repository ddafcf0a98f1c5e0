//! Holds idle gRPC connections open: `idle_connections ADDRESS COUNT`.
//! Opens COUNT separate HTTP/2 connections, makes one health check on each
//! so the server has set the connection up, prints `ready COUNT`, then keeps
//! them idle until its standard input closes. Driven by `bench/read`, which
//! reads the server's memory meanwhile.

use std::io::Read;

use tonic::transport::Endpoint;
use tonic_health::pb::{health_client::HealthClient, HealthCheckRequest};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let address = args.next().ok_or("ADDRESS missing")?;
    let count: usize = args.next().ok_or("COUNT missing")?.parse()?;
    let endpoint = Endpoint::from_shared(address)?;
    let mut held = Vec::with_capacity(count);
    for _ in 0..count {
        // Each `connect` is a connection of its own; a clone would share it.
        let mut health = HealthClient::new(endpoint.connect().await?);
        health.check(HealthCheckRequest::default()).await?;
        held.push(health);
    }
    println!("ready {}", held.len());
    // The connections' tasks run on this runtime, so wait off it.
    tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await??;
    drop(held);
    Ok(())
}
