//! The client of the failover test (`tests/failover/run`).
//!
//! `failover_writer ADDRESSES API_KEY SECONDS ACKED_FILE` creates users one
//! after another for SECONDS through the comma-separated servers in turn,
//! each with a `request_id`; a call that fails is retried with the same
//! request id (on the next server) until it is answered, as the Go and Java
//! clients do, so a create whose outcome was unknown is never made twice.
//! Each acknowledged user is read back at once. Every fifth create asks for
//! an invitation email (the outbox's side of the test). It writes the email
//! of every acknowledged user to ACKED_FILE, those invited also to
//! ACKED_FILE.invited, and prints the counts, the longest time without an
//! acknowledgement (the write outage), and the failures seen by gRPC code.

use std::{
    collections::BTreeMap,
    time::{Duration, Instant},
};

use roster::proto::{
    user_service_client::UserServiceClient, CreateUserRequest, GetUserRequest, User,
};
use tonic::{metadata::MetadataValue, transport::Channel, Code, Request};

const CALL_DEADLINE: Duration = Duration::from_secs(2);
const RETRY_AFTER: Duration = Duration::from_millis(100);
/// One create in this many sends an invitation.
const INVITE_EVERY: usize = 5;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [addresses, key, seconds, acked_file] = args.as_slice() else {
        return Err("usage: failover_writer ADDRESSES API_KEY SECONDS ACKED_FILE".into());
    };
    let mut clients = Vec::new();
    for address in addresses.split(',') {
        let channel = Channel::from_shared(format!("http://{address}"))?.connect_lazy();
        clients.push(UserServiceClient::new(channel));
    }
    let bearer: MetadataValue<_> = format!("Bearer {key}").parse()?;
    let run_for = Duration::from_secs(seconds.parse()?);
    let started = Instant::now();
    let mut last_ack = Instant::now();
    let mut longest_gap = Duration::ZERO;
    let mut failures: BTreeMap<String, u64> = BTreeMap::new();
    let mut acked = Vec::new();
    let mut invited = Vec::new();
    let mut turn = 0;
    while started.elapsed() < run_for {
        let number = acked.len();
        let email = format!("writer.{number}@failover.test");
        let request_id = format!("failover-writer-{number}");
        let invite = number % INVITE_EVERY == 0;
        // The same request until it is answered: a retry returns the first result.
        let user_id = loop {
            let servers = clients.len();
            let client = &mut clients[turn % servers];
            turn += 1;
            match create(client, &bearer, &email, &request_id, invite).await {
                Ok(user_id) => break user_id,
                Err(code) => {
                    *failures.entry(format!("create {code:?}")).or_default() += 1;
                    tokio::time::sleep(RETRY_AFTER).await;
                }
            }
        };
        longest_gap = longest_gap.max(last_ack.elapsed());
        last_ack = Instant::now();
        if invite {
            invited.push(email.clone());
        }
        acked.push(email);
        // Read back what was acknowledged, on the other server.
        let servers = clients.len();
        let client = &mut clients[turn % servers];
        if let Err(code) = read(client, &bearer, &user_id).await {
            *failures.entry(format!("read {code:?}")).or_default() += 1;
        }
    }
    std::fs::write(acked_file, acked.join("\n") + "\n")?;
    std::fs::write(format!("{acked_file}.invited"), invited.join("\n") + "\n")?;
    println!(
        "acknowledged creates: {} ({} with an invitation)",
        acked.len(),
        invited.len()
    );
    println!(
        "longest time without an acknowledgement: {:.1} s",
        longest_gap.as_secs_f64()
    );
    for (what, count) in failures {
        println!("failed calls, {what}: {count}");
    }
    Ok(())
}

async fn create(
    client: &mut UserServiceClient<Channel>,
    bearer: &MetadataValue<tonic::metadata::Ascii>,
    email: &str,
    request_id: &str,
    invite: bool,
) -> Result<String, Code> {
    let user = User {
        first_name: "Fail".into(),
        last_name: "Over".into(),
        email: email.into(),
        ..Default::default()
    };
    let mut request = Request::new(CreateUserRequest {
        user: Some(user),
        send_invitation: Some(invite),
        request_id: request_id.into(),
        ..Default::default()
    });
    request.set_timeout(CALL_DEADLINE);
    request
        .metadata_mut()
        .insert("authorization", bearer.clone());
    let created = client.create_user(request).await.map_err(|s| s.code())?;
    Ok(created.into_inner().user.map(|u| u.id).unwrap_or_default())
}

async fn read(
    client: &mut UserServiceClient<Channel>,
    bearer: &MetadataValue<tonic::metadata::Ascii>,
    user_id: &str,
) -> Result<(), Code> {
    let mut request = Request::new(GetUserRequest {
        user_id: user_id.into(),
        ..Default::default()
    });
    request.set_timeout(CALL_DEADLINE);
    request
        .metadata_mut()
        .insert("authorization", bearer.clone());
    client.get_user(request).await.map_err(|s| s.code())?;
    Ok(())
}
