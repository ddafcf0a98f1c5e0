//! ChangeService: the organization's changes as they commit.

use std::{sync::Arc, time::Duration};

use tokio::sync::{mpsc, watch};
use tonic::{Request, Response, Status};
use tracing::Instrument;

use super::{auth_layer::authorize_again, caller, convert::changes as convert};
use crate::{
    domain::{
        authentication::Authenticator,
        change_feed::{ChangeFeed, Watcher},
        changes::{ChangeFilter, DeliveredChange},
    },
    proto::{
        self,
        change_service_server::{ChangeService, SERVICE_NAME},
    },
};

/// How often a stream checks that its caller may still watch: a revoked key
/// or a user who can no longer sign in is cut off within this.
const RECHECK: Duration = Duration::from_secs(1);
/// Messages a stream may hold for a slow consumer before it stops reading.
const BUFFERED: usize = 64;

pub struct ChangeHandler {
    feed: Arc<ChangeFeed>,
    authenticator: Arc<Authenticator>,
    stopping: watch::Receiver<bool>,
}

impl ChangeHandler {
    pub fn new(
        feed: Arc<ChangeFeed>,
        authenticator: Arc<Authenticator>,
        stopping: watch::Receiver<bool>,
    ) -> Self {
        Self {
            feed,
            authenticator,
            stopping,
        }
    }
}

type Sender = mpsc::Sender<Result<proto::WatchChangesResponse, Status>>;

#[tonic::async_trait]
impl ChangeService for ChangeHandler {
    type WatchChangesStream =
        tokio_stream::wrappers::ReceiverStream<Result<proto::WatchChangesResponse, Status>>;

    async fn watch_changes(
        &self,
        request: Request<proto::WatchChangesRequest>,
    ) -> Result<Response<Self::WatchChangesStream>, Status> {
        let caller = caller(&request)?;
        // What the auth layer checked, kept to check again while the stream is open.
        let authorization = request
            .metadata()
            .clone()
            .into_headers()
            .remove(http::header::AUTHORIZATION);
        let (start, filter) = convert::watch_request(request.get_ref(), caller.organization_id)?;
        let watcher = self.feed.watch(caller.organization_id, start).await?;
        let (sender, receiver) = mpsc::channel(BUFFERED);
        let stream = Stream {
            watcher,
            filter,
            authenticator: self.authenticator.clone(),
            authorization,
            heartbeat: self.feed.settings().heartbeat,
            sender,
            stopping: self.stopping.clone(),
        };
        // In the call's span: its logs belong to the call.
        tokio::spawn(stream.run().instrument(tracing::Span::current()));
        Ok(Response::new(tokio_stream::wrappers::ReceiverStream::new(
            receiver,
        )))
    }
}

/// One open WatchChanges call.
struct Stream {
    watcher: Watcher,
    filter: ChangeFilter,
    authenticator: Arc<Authenticator>,
    authorization: Option<http::HeaderValue>,
    heartbeat: Duration,
    sender: Sender,
    stopping: watch::Receiver<bool>,
}

impl Stream {
    /// Sends changes, and a heartbeat when nothing was sent for a while,
    /// until the consumer goes, the caller may no longer watch, or the
    /// stream cannot go on (OUT_OF_RANGE, the database lost).
    async fn run(mut self) {
        // First a heartbeat with where the stream starts: a consumer that
        // loses the connection before the first change resumes from there
        // (from "now" as it was, not from a later now).
        if self
            .sender
            .send(Ok(convert::heartbeat(self.watcher.cursor())))
            .await
            .is_err()
        {
            return;
        }
        let mut quiet_since = tokio::time::Instant::now();
        loop {
            let next = tokio::select! {
                next = self.watcher.next_batch(RECHECK) => next,
                _ = self.sender.closed() => return,
                // A stopping server ends its streams at once rather than
                // holding its shutdown: the consumer resumes elsewhere.
                _ = stopped(&mut self.stopping) => {
                    let resume = Status::unavailable(
                        "this server is stopping: resume from your last cursor (on another replica)",
                    );
                    let _ = self.sender.send(Err(resume)).await;
                    return;
                }
            };
            if let Err(refused) = self.may_still_watch().await {
                let _ = self.sender.send(Err(refused)).await;
                return;
            }
            let sent = match next {
                Ok(Some(batch)) => self.send_batch(&batch).await.map(|sent| {
                    if sent > 0 {
                        quiet_since = tokio::time::Instant::now();
                    }
                }),
                Ok(None) if quiet_since.elapsed() >= self.heartbeat => {
                    quiet_since = tokio::time::Instant::now();
                    let cursor = self.watcher.cursor();
                    self.sender.send(Ok(convert::heartbeat(cursor))).await
                }
                Ok(None) => Ok(()),
                Err(error) => {
                    let _ = self.sender.send(Err(error.into())).await;
                    return;
                }
            };
            if sent.is_err() {
                return;
            }
        }
    }

    async fn send_batch(
        &self,
        batch: &[Arc<DeliveredChange>],
    ) -> Result<usize, mpsc::error::SendError<Result<proto::WatchChangesResponse, Status>>> {
        let organization_id = self.watcher.cursor().organization_id;
        let mut sent = 0;
        for delivered in batch {
            if self.filter.admits(&delivered.change) {
                // Waits while the consumer is slow: nothing more is read meanwhile.
                self.sender
                    .send(Ok(convert::change(delivered, organization_id)))
                    .await?;
                sent += 1;
            }
        }
        Ok(sent)
    }

    /// The auth layer's check of this method, again: the token still
    /// authenticates (not revoked or expired; a user who can still sign in)
    /// and still has the scope the method requires.
    async fn may_still_watch(&self) -> Result<(), Status> {
        let path = format!("/{SERVICE_NAME}/WatchChanges");
        authorize_again(&self.authenticator, &path, self.authorization.as_ref()).await
    }
}

/// Resolves once the server is stopping (the guard the watch hands out is
/// not `Send`, so it is dropped here).
async fn stopped(stopping: &mut watch::Receiver<bool>) {
    let _ = stopping.wait_for(|stopping| *stopping).await;
}
