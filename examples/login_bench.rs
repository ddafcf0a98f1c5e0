//! Login benchmark, driven by `bench/login`.
//!
//! `login_bench hash PASSWORD` prints an Argon2id hash of PASSWORD at the
//! server's parameters, to seed users.
//!
//! `login_bench run ADDRESS API_KEY USER_ID ORGANIZATION PASSWORD USERNAME... [CONCURRENCY SECONDS]`
//! times one hash alone (the Argon2 ceiling is cores / that time), then
//! `GetUser` alone, then again while CONCURRENCY tasks sign the given users
//! in as fast as the server answers for SECONDS. Prints the p50/p99 of both,
//! logins per second against the ceiling, and logins refused because the
//! hash queue was full.

use std::time::{Duration, Instant};

use roster::domain::password::{Password, PasswordHasher};
use roster::proto::{
    auth_service_client::AuthServiceClient, user_service_client::UserServiceClient, GetUserRequest,
    LoginRequest,
};
use tokio::sync::watch;
use tonic::transport::Channel;

const IDLE_CALLS: usize = 2000;
/// 200 GetUser calls per second.
const PROBE_EVERY: Duration = Duration::from_millis(5);
const HASH_SAMPLES: usize = 21;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("hash") => hash(args.get(1).ok_or("PASSWORD missing")?).await,
        Some("run") => run(&args[1..]).await,
        _ => Err("usage: login_bench hash PASSWORD | login_bench run ADDRESS API_KEY USER_ID ORGANIZATION PASSWORD USERNAME... [CONCURRENCY SECONDS]".into()),
    }
}

async fn hash(password: &str) -> Result<(), Box<dyn std::error::Error>> {
    let hasher = PasswordHasher::new(1, 0)?;
    println!("{}", hasher.hash(&Password::new(password)).await?);
    Ok(())
}

/// The median time of one hash on one thread.
async fn single_hash_time() -> Result<Duration, Box<dyn std::error::Error>> {
    let hasher = PasswordHasher::new(1, 0)?;
    let password = Password::new("Bench@Hash2026");
    let mut times = Vec::with_capacity(HASH_SAMPLES);
    for _ in 0..HASH_SAMPLES {
        let started = Instant::now();
        hasher.hash(&password).await?;
        times.push(started.elapsed());
    }
    times.sort();
    Ok(times[HASH_SAMPLES / 2])
}

struct RunArgs {
    address: String,
    key: String,
    user_id: String,
    organization: String,
    password: String,
    usernames: Vec<String>,
    concurrency: usize,
    seconds: u64,
}

impl RunArgs {
    fn parse(args: &[String]) -> Result<Self, Box<dyn std::error::Error>> {
        let [address, key, user_id, organization, password, rest @ ..] = args else {
            return Err(
                "run needs ADDRESS API_KEY USER_ID ORGANIZATION PASSWORD USERNAME...".into(),
            );
        };
        // Trailing numbers are the concurrency and the duration.
        let (usernames, numbers): (Vec<&String>, Vec<&String>) =
            rest.iter().partition(|arg| arg.parse::<u64>().is_err());
        let number = |index: usize, default: u64| -> Result<u64, Box<dyn std::error::Error>> {
            Ok(numbers.get(index).map_or(Ok(default), |n| n.parse())?)
        };
        if usernames.is_empty() {
            return Err("give at least one USERNAME".into());
        }
        Ok(Self {
            address: address.clone(),
            key: key.clone(),
            user_id: user_id.clone(),
            organization: organization.clone(),
            password: password.clone(),
            usernames: usernames.into_iter().cloned().collect(),
            concurrency: number(0, 16)? as usize,
            seconds: number(1, 20)?,
        })
    }
}

async fn run(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let args = RunArgs::parse(args)?;
    // Timed first, while the server is idle.
    let hash_time = single_hash_time().await?;
    let channel = Channel::from_shared(args.address.clone())?
        .connect()
        .await?;
    let bearer: tonic::metadata::MetadataValue<_> = format!("Bearer {}", args.key).parse()?;
    let users = UserServiceClient::new(channel);
    let request = GetUserRequest {
        user_id: args.user_id.clone(),
        ..Default::default()
    };
    let get_user = || {
        let mut call = tonic::Request::new(request.clone());
        call.metadata_mut().insert("authorization", bearer.clone());
        let mut users = users.clone();
        async move { users.get_user(call).await.map(|_| ()) }
    };

    // Warm the connection and the server's caches first.
    for _ in 0..200 {
        get_user().await?;
    }
    let mut idle = probe(get_user, PROBE_EVERY * IDLE_CALLS as u32).await?;

    // The flood: each task signs in again as soon as it is answered. Logins
    // go over their own connection, as from other services.
    let login_channel = Channel::from_shared(args.address.clone())?
        .connect()
        .await?;
    let (stop, stopped) = watch::channel(false);
    let flood_began = Instant::now();
    let mut flooders = Vec::with_capacity(args.concurrency);
    for task in 0..args.concurrency {
        let mut auth = AuthServiceClient::new(login_channel.clone());
        let mut stopped = stopped.clone();
        let login = LoginRequest {
            organization: args.organization.clone(),
            username: args.usernames[task % args.usernames.len()].clone(),
            password: args.password.clone(),
        };
        flooders.push(tokio::spawn(async move {
            let (mut signed_in, mut refused) = (0_u64, 0_u64);
            while !*stopped.borrow_and_update() {
                match auth.login(login.clone()).await {
                    Ok(_) => signed_in += 1,
                    Err(status) if status.code() == tonic::Code::ResourceExhausted => {
                        refused += 1;
                        // A refused caller backs off briefly, as a client would.
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                    Err(status) => return Err(status),
                }
            }
            Ok((signed_in, refused))
        }));
    }
    // Let the hash queue fill before measuring.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut flooded = probe(get_user, Duration::from_secs(args.seconds)).await?;
    stop.send(true)?;
    let flood_time = flood_began.elapsed();
    let (mut signed_in, mut refused) = (0, 0);
    for flooder in flooders {
        let (ok, no) = flooder.await??;
        signed_in += ok;
        refused += no;
    }

    let (idle_p50, idle_p99) = percentiles(&mut idle);
    let (flood_p50, flood_p99) = percentiles(&mut flooded);
    println!(
        "GetUser idle: {} calls, p50 {idle_p50:.2} ms, p99 {idle_p99:.2} ms",
        idle.len()
    );
    println!(
        "GetUser during {} concurrent logins: {} calls, p50 {flood_p50:.2} ms, p99 {flood_p99:.2} ms",
        args.concurrency,
        flooded.len()
    );
    println!(
        "p99 during the flood / idle p99 = {:.2}",
        flood_p99 / idle_p99
    );
    let rate = signed_in as f64 / flood_time.as_secs_f64();
    println!(
        "logins: {signed_in} in {:.1} s = {rate:.1}/s; {refused} refused with RESOURCE_EXHAUSTED",
        flood_time.as_secs_f64(),
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let ceiling = cores as f64 / hash_time.as_secs_f64();
    println!(
        "single Argon2id hash: {:.1} ms (median of {HASH_SAMPLES}); ceiling {cores} cores / hash time = {ceiling:.1} logins/s",
        ms(hash_time)
    );
    // The server's hashing threads, as it reads them.
    let workers = std::env::var("ROSTER_PASSWORD_HASH_WORKERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(PasswordHasher::default_workers);
    println!(
        "logins/s / ceiling = {:.2}; the server hashes on {workers} thread(s) of {cores} cores, leaving the rest to other calls, so {:.2} is its own ceiling",
        rate / ceiling,
        workers as f64 / cores as f64
    );
    Ok(())
}

/// GetUser every `PROBE_EVERY` for `duration`, as a steady caller would
/// (a back-to-back loop would itself keep a core busy); the latency of each.
async fn probe<F: std::future::Future<Output = Result<(), tonic::Status>>>(
    get_user: impl Fn() -> F,
    duration: Duration,
) -> Result<Vec<Duration>, tonic::Status> {
    let mut latencies = Vec::new();
    let mut ticks = tokio::time::interval(PROBE_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let began = Instant::now();
    while began.elapsed() < duration {
        ticks.tick().await;
        let started = Instant::now();
        get_user().await?;
        latencies.push(started.elapsed());
    }
    Ok(latencies)
}

fn percentiles(latencies: &mut [Duration]) -> (f64, f64) {
    latencies.sort();
    let at = |fraction: f64| {
        ms(latencies[((latencies.len() as f64 * fraction) as usize).min(latencies.len() - 1)])
    };
    (at(0.50), at(0.99))
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1000.0
}
