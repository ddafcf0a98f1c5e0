//! Prints what the request boundary (`grpc::boundary`) costs per check:
//! `cargo run --release --example boundary_cost`. No assertion: a number to
//! compare with GetUser's ~160 µs of server CPU.

use std::{hint::black_box, time::Instant};

use prost::Message;
use roster::{
    grpc::boundary::RequestBoundary,
    proto::{self, FILE_DESCRIPTOR_SET},
};

const CHECKS: u32 = 200_000;

fn main() -> anyhow::Result<()> {
    let boundary = RequestBoundary::from_descriptor_set(FILE_DESCRIPTOR_SET)?;
    let get_user = proto::GetUserRequest {
        user_id: uuid::Uuid::now_v7().to_string(),
        ..Default::default()
    }
    .encode_to_vec();
    let create_user = proto::CreateUserRequest {
        user: Some(proto::User {
            first_name: "Maria".into(),
            last_name: "da Conceição Álvares".into(),
            email: "maria.alvares@acme.com.br".into(),
            phone: "+5511999998888".into(),
            external_id: "HR-000123".into(),
            ..Default::default()
        }),
        group_ids: (0..5).map(|_| uuid::Uuid::now_v7().to_string()).collect(),
        request_id: "create-maria-1".into(),
        ..Default::default()
    }
    .encode_to_vec();
    for (method, message) in [
        ("/roster.v1.UserService/GetUser", &get_user),
        ("/roster.v1.UserService/CreateUser", &create_user),
    ] {
        let started = Instant::now();
        for _ in 0..CHECKS {
            black_box(
                boundary
                    .check(black_box(method), black_box(message))
                    .is_ok(),
            );
        }
        let per_check = started.elapsed().as_nanos() / u128::from(CHECKS);
        println!(
            "{method}: {per_check} ns per check ({} bytes)",
            message.len()
        );
    }
    Ok(())
}
