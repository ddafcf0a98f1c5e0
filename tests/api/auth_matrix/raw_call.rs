//! Calls any method of the contract by path with a protobuf body given as
//! bytes: one code path for unary and streaming methods alike, so the matrix
//! needs no generated client per method.

use std::time::Duration;

use prost::bytes::{Buf, BufMut};
use tonic::{
    codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder},
    service::interceptor::InterceptedService,
    transport::Channel,
    Code, Request, Status,
};

use super::contract::Rpc;
use crate::helpers::Bearer;

/// Messages pass through as the bytes of their protobuf encoding.
#[derive(Debug, Clone, Copy, Default)]
struct RawBytes;

impl Codec for RawBytes {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawBytes;
    type Decoder = RawBytes;

    fn encoder(&mut self) -> Self::Encoder {
        RawBytes
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawBytes
    }
}

impl Encoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawBytes {
    type Item = Vec<u8>;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining()).to_vec()))
    }
}

/// How a call ended, and the messages it answered before that.
pub struct Answer {
    pub code: Code,
    pub message: String,
    pub responses: Vec<Vec<u8>>,
}

/// A call that hangs is a failure of the matrix, not a hung test.
const CALL_DEADLINE: Duration = Duration::from_secs(10);
/// Enough of a server stream to see its status or what it would disclose.
const STREAM_MESSAGES_READ: usize = 64;
/// A stream that stays open this long without a message (WatchChanges
/// waiting for changes) was let in: it answered OK so far.
const STREAM_QUIET: Duration = Duration::from_secs(2);

/// Calls `rpc` with `body` (for a client stream: `body` as its only message
/// unless empty, then an empty stream).
pub async fn call(channel: &Channel, bearer: Bearer, rpc: &Rpc, body: Vec<u8>) -> Answer {
    match tokio::time::timeout(
        CALL_DEADLINE,
        call_without_deadline(channel, bearer, rpc, body),
    )
    .await
    {
        Ok(answer) => answer,
        Err(_) => Answer {
            code: Code::DeadlineExceeded,
            message: format!("no answer within {CALL_DEADLINE:?}"),
            responses: Vec::new(),
        },
    }
}

async fn call_without_deadline(
    channel: &Channel,
    bearer: Bearer,
    rpc: &Rpc,
    body: Vec<u8>,
) -> Answer {
    let mut grpc = tonic::client::Grpc::new(InterceptedService::new(channel.clone(), bearer));
    if let Err(error) = grpc.ready().await {
        return Answer {
            code: Code::Unavailable,
            message: format!("channel not ready: {error}"),
            responses: Vec::new(),
        };
    }
    let path = rpc.path.parse().expect("a method path");
    let outgoing: Vec<Vec<u8>> = if body.is_empty() {
        Vec::new()
    } else {
        vec![body.clone()]
    };
    let (responses, ended) = match (rpc.client_streaming, rpc.server_streaming) {
        (false, false) => single(grpc.unary(Request::new(body), path, RawBytes).await),
        (true, false) => single(
            grpc.client_streaming(Request::new(tokio_stream::iter(outgoing)), path, RawBytes)
                .await,
        ),
        (false, true) => {
            read_stream(
                grpc.server_streaming(Request::new(body), path, RawBytes)
                    .await,
            )
            .await
        }
        (true, true) => {
            let stream = Request::new(tokio_stream::iter(outgoing));
            read_stream(grpc.streaming(stream, path, RawBytes).await).await
        }
    };
    Answer {
        code: ended.as_ref().map_or(Code::Ok, Status::code),
        message: ended
            .map(|status| status.message().to_owned())
            .unwrap_or_default(),
        responses,
    }
}

fn single(result: Result<tonic::Response<Vec<u8>>, Status>) -> (Vec<Vec<u8>>, Option<Status>) {
    match result {
        Ok(response) => (vec![response.into_inner()], None),
        Err(status) => (Vec::new(), Some(status)),
    }
}

/// The first messages of a stream, and the status that ended it if it failed.
async fn read_stream(
    response: Result<tonic::Response<tonic::Streaming<Vec<u8>>>, Status>,
) -> (Vec<Vec<u8>>, Option<Status>) {
    let mut stream = match response {
        Ok(response) => response.into_inner(),
        Err(status) => return (Vec::new(), Some(status)),
    };
    let mut messages = Vec::new();
    while messages.len() < STREAM_MESSAGES_READ {
        match tokio::time::timeout(STREAM_QUIET, stream.message()).await {
            Ok(Ok(Some(message))) => messages.push(message),
            Ok(Ok(None)) | Err(_) => break,
            Ok(Err(status)) => return (messages, Some(status)),
        }
    }
    (messages, None)
}
