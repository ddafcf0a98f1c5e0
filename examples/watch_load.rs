//! WatchChanges load, driven by `bench/watch`.
//!
//! `watch_load during ADDRESS KEY WATCHERS now|beginning` opens WATCHERS
//! streams, each over its own connection, and prints `ready` once the server
//! has fixed every stream's start. It then reads from its standard input the
//! number of changes the database numbered meanwhile (the script counts them
//! when its writes are done), waits until every stream has received that many
//! (or nothing arrived for `STALL`), and prints each stream's count, the delay
//! from each change's `commit_time` to its arrival (same machine, same clock)
//! and the changes/s delivered. Exits non-zero when a stream received a
//! different number, a change twice, or ended.
//!
//! `watch_load streams ADDRESS VIEWER_KEY ADMIN_KEY SERVER_PID STREAMS CONNECTIONS RATE USER_IDS_FILE`
//! reads the server's VmRSS, opens STREAMS streams from now spread over
//! CONNECTIONS connections, reads VmRSS and the server's CPU while they idle,
//! then renames each user of USER_IDS_FILE (one id a line) with UpdateUser,
//! RATE calls a second, one change each, and waits until every stream has
//! received every change. Prints the delay p50/p99/max across all streams,
//! the RSS with and without the streams, and the server's CPU per delivered
//! event (utime + stime from /proc; CLK_TCK from the environment, else 100).

use std::{
    collections::HashSet,
    hash::{DefaultHasher, Hash, Hasher},
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime},
};

use roster::proto::{
    change_service_client::ChangeServiceClient, user_service_client::UserServiceClient,
    watch_changes_request::Start, watch_changes_response::Event, Change, UpdateUserRequest, User,
    WatchChangesRequest,
};
use tonic::{
    metadata::MetadataValue,
    transport::{Channel, Endpoint},
    Request, Streaming,
};

type Error = Box<dyn std::error::Error + Send + Sync>;
type Bearer = MetadataValue<tonic::metadata::Ascii>;

/// A stream that received nothing for this long is given up on.
const STALL: Duration = Duration::from_secs(15);
/// Once every stream has its count, how long to wait for changes too many.
const GRACE: Duration = Duration::from_secs(1);
/// Before reading the server's idle RSS and CPU: every stream has been set up
/// and has passed its first once-a-second check of the caller.
const SETTLE: Duration = Duration::from_secs(3);
/// The idle CPU is measured over this.
const IDLE: Duration = Duration::from_secs(5);

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let failed = match args.first().map(String::as_str) {
        Some("during") => during(&args[1..]).await?,
        Some("streams") => streams(&args[1..]).await?,
        _ => return Err("usage: watch_load during ADDRESS KEY WATCHERS now|beginning | watch_load streams ADDRESS VIEWER_KEY ADMIN_KEY SERVER_PID STREAMS CONNECTIONS RATE USER_IDS_FILE".into()),
    };
    if failed {
        std::process::exit(1);
    }
    Ok(())
}

/// What one stream received.
#[derive(Default)]
struct Tally {
    /// Arrival minus commit time, in milliseconds.
    delays_ms: Vec<f64>,
    /// Hashes of the cursors received, to tell a change sent twice.
    cursors: HashSet<u64>,
    duplicates: usize,
    first_commit: Option<SystemTime>,
    last_commit: Option<SystemTime>,
    last_arrival: Option<SystemTime>,
    /// Why the stream ended, when it did.
    ended: Option<String>,
}

#[derive(Default)]
struct Watched {
    tally: Mutex<Tally>,
    changes: AtomicUsize,
}

impl Watched {
    fn record(&self, change: &Change, arrival: SystemTime) {
        let commit = change
            .commit_time
            .as_ref()
            .map_or(SystemTime::UNIX_EPOCH, |t| {
                SystemTime::UNIX_EPOCH + Duration::new(t.seconds as u64, t.nanos as u32)
            });
        let delay_ms = match arrival.duration_since(commit) {
            Ok(delay) => delay.as_secs_f64() * 1e3,
            Err(ahead) => -ahead.duration().as_secs_f64() * 1e3,
        };
        let mut hasher = DefaultHasher::new();
        change.cursor.hash(&mut hasher);
        let mut tally = self.tally.lock().expect("tally lock");
        if !tally.cursors.insert(hasher.finish()) {
            tally.duplicates += 1;
        }
        tally.delays_ms.push(delay_ms);
        tally.first_commit.get_or_insert(commit);
        tally.last_commit = Some(commit);
        tally.last_arrival = Some(arrival);
        drop(tally);
        self.changes.fetch_add(1, Ordering::Relaxed);
    }
}

/// HTTP/2 windows that grow with the traffic, as Go's gRPC client sizes
/// them by default: with h2's fixed 64 KiB per connection, the streams
/// sharing a connection would wait for this client's window updates.
fn endpoint(address: &str) -> Result<Endpoint, Error> {
    Ok(Endpoint::from_shared(address.to_owned())?.http2_adaptive_window(true))
}

fn bearer(key: &str) -> Result<Bearer, Error> {
    Ok(format!("Bearer {key}").parse()?)
}

/// Opens a stream (the server has fixed its start when this returns) and
/// spawns its reader.
async fn open(
    channel: Channel,
    bearer: &Bearer,
    start: Option<Start>,
) -> Result<Arc<Watched>, Error> {
    let mut request = Request::new(WatchChangesRequest {
        start,
        ..Default::default()
    });
    request
        .metadata_mut()
        .insert("authorization", bearer.clone());
    let stream = ChangeServiceClient::new(channel)
        .watch_changes(request)
        .await?
        .into_inner();
    let watched = Arc::new(Watched::default());
    tokio::spawn(receive(stream, watched.clone()));
    Ok(watched)
}

async fn receive(
    mut stream: Streaming<roster::proto::WatchChangesResponse>,
    watched: Arc<Watched>,
) {
    let ended = loop {
        match stream.message().await {
            Ok(Some(response)) => match response.event {
                Some(Event::Change(change)) => watched.record(&change, SystemTime::now()),
                Some(Event::Heartbeat(_)) | None => {}
            },
            Ok(None) => break "the server ended the stream".to_owned(),
            Err(status) => break format!("{:?}: {}", status.code(), status.message()),
        }
    };
    watched.tally.lock().expect("tally lock").ended = Some(ended);
}

/// Waits until every stream has `expected` changes, or none arrived for
/// `STALL`, or every stream ended.
async fn wait_for(watched: &[Arc<Watched>], expected: usize) {
    let mut total = 0;
    let mut progress = Instant::now();
    loop {
        let counts: Vec<usize> = watched
            .iter()
            .map(|w| w.changes.load(Ordering::Relaxed))
            .collect();
        if counts.iter().all(|&count| count >= expected) {
            return;
        }
        let now: usize = counts.iter().sum();
        if now != total {
            total = now;
            progress = Instant::now();
        } else if progress.elapsed() > STALL {
            return;
        }
        if watched
            .iter()
            .all(|w| w.tally.lock().expect("tally lock").ended.is_some())
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Prints why each stream that is not exact is not; true when one is not.
fn check(watched: &[Arc<Watched>], expected: usize) -> bool {
    let mut failed = false;
    for (i, w) in watched.iter().enumerate() {
        let tally = w.tally.lock().expect("tally lock");
        let count = tally.delays_ms.len();
        if count != expected || tally.duplicates > 0 || tally.ended.is_some() {
            failed = true;
            println!(
                "FAIL: stream {i} received {count} changes ({} of them twice), the database numbered {expected}; ended: {}",
                tally.duplicates,
                tally.ended.as_deref().unwrap_or("no")
            );
        }
    }
    failed
}

/// The `p`th percentile of sorted values (nearest rank).
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    sorted[((p / 100.0) * (sorted.len() - 1) as f64).round() as usize]
}

fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.sort_by(f64::total_cmp);
    values
}

fn seconds_between(from: SystemTime, to: SystemTime) -> f64 {
    to.duration_since(from).map_or(0.0, |d| d.as_secs_f64())
}

async fn read_expected() -> Result<usize, Error> {
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await??;
    Ok(line.trim().parse()?)
}

async fn during(args: &[String]) -> Result<bool, Error> {
    let [address, key, watchers, start] = args else {
        return Err("during needs ADDRESS KEY WATCHERS now|beginning".into());
    };
    let watchers: usize = watchers.parse()?;
    let from_beginning = match start.as_str() {
        "now" => false,
        "beginning" => true,
        _ => return Err("the start is now or beginning".into()),
    };
    let endpoint = endpoint(address)?;
    let bearer = bearer(key)?;
    let mut watched = Vec::with_capacity(watchers);
    for _ in 0..watchers {
        let start = from_beginning.then_some(Start::FromBeginning(true));
        watched.push(open(endpoint.connect().await?, &bearer, start).await?);
    }
    let opened = SystemTime::now();
    println!("ready");
    let expected = read_expected().await?;
    wait_for(&watched, expected).await;
    tokio::time::sleep(GRACE).await;
    let failed = check(&watched, expected);
    report_during(&watched, from_beginning.then_some(opened));
    Ok(failed)
}

/// Per stream and in total: count, delay (from now only) and changes/s,
/// counted from the first commit (from now) or from the opening (`opened`,
/// from the beginning) to the stream's last arrival.
fn report_during(watched: &[Arc<Watched>], opened: Option<SystemTime>) {
    let tallies: Vec<_> = watched
        .iter()
        .map(|w| w.tally.lock().expect("tally lock"))
        .collect();
    let Some(first_commit) = tallies.iter().filter_map(|t| t.first_commit).min() else {
        println!("no change arrived");
        return;
    };
    let last_commit = tallies
        .iter()
        .filter_map(|t| t.last_commit)
        .max()
        .unwrap_or(first_commit);
    let last_arrival = tallies
        .iter()
        .filter_map(|t| t.last_arrival)
        .max()
        .unwrap_or(first_commit);
    let since = opened.unwrap_or(first_commit);
    let mut all = Vec::new();
    for (i, tally) in tallies.iter().enumerate() {
        let count = tally.delays_ms.len();
        let span = seconds_between(since, tally.last_arrival.unwrap_or(since));
        let rate = count as f64 / span;
        if opened.is_some() {
            println!("  watcher {i:>2}: {count} changes, {rate:>9.0} changes/s");
        } else {
            let delays = sorted(tally.delays_ms.clone());
            println!(
                "  watcher {i:>2}: {count} changes, delay p50 {:>7.1} ms  p99 {:>7.1} ms  max {:>7.1} ms, {rate:>7.0} changes/s",
                percentile(&delays, 50.0),
                percentile(&delays, 99.0),
                percentile(&delays, 100.0),
            );
            all.extend_from_slice(&delays);
        }
    }
    let total: usize = tallies.iter().map(|t| t.delays_ms.len()).sum();
    let span = seconds_between(since, last_arrival);
    if opened.is_none() {
        let all = sorted(all);
        let late = all.iter().filter(|&&delay| delay >= 1000.0).count();
        println!(
            "  all watchers: delay p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms; {late} arrivals ({:.2}%) 1 s or more after their commit",
            percentile(&all, 50.0),
            percentile(&all, 99.0),
            percentile(&all, 100.0),
            late as f64 * 100.0 / all.len() as f64,
        );
        let committing = seconds_between(first_commit, last_commit);
        let per_watcher = tallies.first().map_or(0, |t| t.delays_ms.len());
        println!(
            "  committed: {per_watcher} changes over {committing:.2} s (first to last commit) = {:.0} changes/s",
            per_watcher as f64 / committing
        );
    }
    println!(
        "  delivered: {total} changes to {} watchers in {span:.2} s = {:.0} changes/s in total, {:.0} per watcher",
        tallies.len(),
        total as f64 / span,
        total as f64 / span / tallies.len() as f64,
    );
}

/// The server's resident memory, in kB.
fn vm_rss_kb(pid: u32) -> Result<u64, Error> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = status
        .lines()
        .find(|line| line.starts_with("VmRSS:"))
        .ok_or("no VmRSS")?;
    Ok(line
        .split_whitespace()
        .nth(1)
        .ok_or("no VmRSS value")?
        .parse()?)
}

/// The server's user + system CPU time so far, in µs.
fn cpu_us(pid: u32) -> Result<f64, Error> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesized command name; utime and stime are the 14th and 15th.
    let after = stat.rsplit_once(") ").ok_or("unexpected /proc stat")?.1;
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    let per_second: f64 = std::env::var("CLK_TCK").map_or(Ok(100.0), |t| t.parse())?;
    Ok(ticks as f64 * 1e6 / per_second)
}

/// The server's CPU µs per second over `IDLE`.
async fn idle_cpu_us_per_s(pid: u32) -> Result<f64, Error> {
    let start = cpu_us(pid)?;
    tokio::time::sleep(IDLE).await;
    Ok((cpu_us(pid)? - start) / IDLE.as_secs_f64())
}

struct StreamsArgs {
    address: String,
    viewer: Bearer,
    admin: Bearer,
    pid: u32,
    streams: usize,
    connections: usize,
    rate: f64,
    users: Vec<String>,
}

impl StreamsArgs {
    fn parse(args: &[String]) -> Result<Self, Error> {
        let [address, viewer, admin, pid, streams, connections, rate, users] = args else {
            return Err("streams needs ADDRESS VIEWER_KEY ADMIN_KEY SERVER_PID STREAMS CONNECTIONS RATE USER_IDS_FILE".into());
        };
        let users: Vec<String> = std::fs::read_to_string(users)?
            .lines()
            .filter(|line| !line.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Self {
            address: address.clone(),
            viewer: bearer(viewer)?,
            admin: bearer(admin)?,
            pid: pid.parse()?,
            streams: streams.parse()?,
            connections: connections.parse::<usize>()?.max(1),
            rate: rate.parse()?,
            users,
        })
    }
}

async fn streams(args: &[String]) -> Result<bool, Error> {
    let args = StreamsArgs::parse(args)?;
    let endpoint = endpoint(&args.address)?;
    let rss_none = vm_rss_kb(args.pid)?;
    let idle_none = idle_cpu_us_per_s(args.pid).await?;
    let mut channels = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        // Each `connect` is a connection of its own; a clone shares it.
        channels.push(endpoint.connect().await?);
    }
    let mut watched = Vec::with_capacity(args.streams);
    for i in 0..args.streams {
        let channel = channels[i % args.connections].clone();
        watched.push(open(channel, &args.viewer, None).await?);
    }
    println!(
        "  {} streams open over {} connections ({} per connection)",
        args.streams,
        args.connections,
        args.streams.div_ceil(args.connections)
    );
    tokio::time::sleep(SETTLE).await;
    let rss_streams = vm_rss_kb(args.pid)?;
    let idle_us_per_s = idle_cpu_us_per_s(args.pid).await?;

    let cpu_start = cpu_us(args.pid)?;
    let client_start = cpu_us(std::process::id())?;
    let started = Instant::now();
    write(&endpoint, &args).await?;
    let writing = started.elapsed();
    wait_for(&watched, args.users.len()).await;
    let elapsed = started.elapsed();
    let cpu = cpu_us(args.pid)? - cpu_start;
    tokio::time::sleep(GRACE).await;
    let failed = check(&watched, args.users.len());
    let client_cpu = cpu_us(std::process::id())? - client_start;

    let delays = sorted(
        watched
            .iter()
            .flat_map(|w| w.tally.lock().expect("tally lock").delays_ms.clone())
            .collect(),
    );
    let events = delays.len();
    println!(
        "  {} changes made in {:.1} s ({:.0}/s); {events} events delivered, all in {:.1} s",
        args.users.len(),
        writing.as_secs_f64(),
        args.users.len() as f64 / writing.as_secs_f64(),
        elapsed.as_secs_f64(),
    );
    let late = delays.iter().filter(|&&delay| delay >= 1000.0).count();
    println!(
        "  delay across all streams: p50 {:.1} ms  p99 {:.1} ms  max {:.1} ms; {late} arrivals 1 s or more after their commit",
        percentile(&delays, 50.0),
        percentile(&delays, 99.0),
        percentile(&delays, 100.0),
    );
    println!(
        "  server RSS: {:.1} MiB with no stream, {:.1} MiB with {} idle streams = {:.1} kB per stream",
        rss_none as f64 / 1024.0,
        rss_streams as f64 / 1024.0,
        args.streams,
        (rss_streams as f64 - rss_none as f64) / args.streams as f64,
    );
    println!(
        "  server CPU idle: {:.1} ms/s with no stream, {:.1} ms/s with {} streams = {:.1} µs per stream per second",
        idle_none / 1e3,
        idle_us_per_s / 1e3,
        args.streams,
        (idle_us_per_s - idle_none) / args.streams as f64,
    );
    let net = cpu - idle_us_per_s * elapsed.as_secs_f64();
    println!(
        "  server CPU while delivering: {:.2} s = {:.2} µs per delivered event ({:.2} µs net of the idle cost; the {} writes' own cost included)",
        cpu / 1e6,
        cpu / events as f64,
        net / events as f64,
        args.users.len(),
    );
    println!(
        "  this client's CPU meanwhile: {:.2} s ({:.0}% of one core)",
        client_cpu / 1e6,
        client_cpu / 1e4 / elapsed.as_secs_f64(),
    );
    Ok(failed)
}

/// Renames each user once, `rate` calls a second, over a connection of its own.
/// Each call starts on time whatever the previous ones take, so the rate
/// holds while the server is busy delivering.
async fn write(endpoint: &Endpoint, args: &StreamsArgs) -> Result<(), Error> {
    let users = UserServiceClient::new(endpoint.connect().await?);
    let mut pace = tokio::time::interval(Duration::from_secs_f64(1.0 / args.rate));
    let mut calls = tokio::task::JoinSet::new();
    for (i, id) in args.users.iter().enumerate() {
        pace.tick().await;
        let mut request = Request::new(UpdateUserRequest {
            user: Some(User {
                id: id.clone(),
                last_name: format!("Watched {i}"),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["last_name".into()],
            }),
        });
        request
            .metadata_mut()
            .insert("authorization", args.admin.clone());
        let mut users = users.clone();
        calls.spawn(async move { users.update_user(request).await });
    }
    while let Some(call) = calls.join_next().await {
        call??;
    }
    Ok(())
}
