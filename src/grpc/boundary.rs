//! The input boundary: every unary and server-streaming request is checked
//! here, before its handler, against the descriptor set already built for
//! reflection. The body must hold exactly one uncompressed gRPC message
//! within tonic's size limit; every field the contract knows must travel in
//! the wire type of its kind; every string field, wherever it sits (nested
//! messages, repeated fields, maps, future RPCs), must be UTF-8 without NUL
//! (PostgreSQL cannot store it in `text` or `jsonb`) and within its byte
//! cap; every enum field must hold a value the contract knows. A refusal is
//! `INVALID_ARGUMENT` naming each field path (`user.first_name`,
//! `update_mask.paths[2]`) or what is wrong with the framing, never the
//! `INTERNAL` of tonic's decoder.
//!
//! The check walks the protobuf wire bytes once with a table compiled at
//! start, allocating nothing unless something is wrong: a few hundred
//! nanoseconds for a typical request (`cargo run --release --example
//! boundary_cost`). Client-streaming methods (the import) are left to their
//! own reader.

use std::{
    collections::HashMap,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, Request};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::BodyExt;
use prost_reflect::{DescriptorPool, Kind, MessageDescriptor};
use tonic::{body::Body, Status};

use super::middleware::{Answer, Around, Next};

use crate::domain::{DomainError, FieldViolation};

/// Bytes any request string may hold unless `STRING_CAPS` says otherwise:
/// the longest value the domain accepts is a 1,000-character description
/// (at most 4,000 bytes of UTF-8).
pub const DEFAULT_MAX_STRING_BYTES: usize = 4096;

/// Justified exceptions to the default cap, by field name wherever it appears.
const STRING_CAPS: &[(&str, usize)] = &[
    // A search box: a longer pattern finds nothing more and only costs
    // trigram and LIKE work on every row it is matched against.
    ("query", 1024),
    // Idempotency keys are at most 128 ASCII characters (spec §3).
    ("request_id", 128),
];

/// Violations reported at most; the rest of a hostile request is not walked.
const MAX_VIOLATIONS: usize = 20;
/// As prost's own decoder: deeper nesting is refused.
const MAX_DEPTH: usize = 100;
/// tonic's default limit on a decoded message, which it would enforce anyway.
const MAX_MESSAGE_BYTES: usize = 4 * 1024 * 1024;
const GRPC_HEADER_BYTES: usize = 5;

/// The compiled check of every unary method's request.
#[derive(Debug)]
pub struct RequestBoundary {
    /// Full method path (`/roster.v1.UserService/GetUser`) → request schema.
    methods: HashMap<String, usize>,
    schemas: Vec<Schema>,
}

#[derive(Debug, Default)]
struct Schema {
    /// Every field the contract defines, sorted by field number; unknown
    /// fields are skipped as prost skips them.
    fields: Vec<FieldRule>,
}

#[derive(Debug)]
struct FieldRule {
    number: u32,
    name: Box<str>,
    repeated: bool,
    check: Check,
}

#[derive(Debug)]
enum Check {
    String {
        max_bytes: usize,
    },
    Message(usize),
    /// The numbers the contract defines, sorted.
    Enum(Box<[i32]>),
    /// Bytes: any content, length-delimited.
    Bytes,
    /// A number or bool: only its wire type is checked.
    Scalar(ScalarWire),
}

/// How a numeric kind travels (a repeated one may also be packed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ScalarWire {
    Varint,
    Fixed64,
    Fixed32,
}

impl ScalarWire {
    fn of(kind: &Kind) -> Option<Self> {
        Some(match kind {
            Kind::Int32
            | Kind::Int64
            | Kind::Uint32
            | Kind::Uint64
            | Kind::Sint32
            | Kind::Sint64
            | Kind::Bool => ScalarWire::Varint,
            Kind::Fixed64 | Kind::Sfixed64 | Kind::Double => ScalarWire::Fixed64,
            Kind::Fixed32 | Kind::Sfixed32 | Kind::Float => ScalarWire::Fixed32,
            _ => return None,
        })
    }

    fn wire_type(self) -> u64 {
        match self {
            ScalarWire::Varint => 0,
            ScalarWire::Fixed64 => 1,
            ScalarWire::Fixed32 => 5,
        }
    }
}

impl Check {
    /// The wire type a single value of the field travels in.
    fn wire_type(&self) -> u64 {
        match self {
            Check::String { .. } | Check::Message(_) | Check::Bytes => 2,
            Check::Enum(_) => 0,
            Check::Scalar(wire) => wire.wire_type(),
        }
    }

    /// A varint this field does not accept: an enum number it does not know.
    fn refuses_enum_value(&self, value: u64) -> bool {
        matches!(self, Check::Enum(known) if !known_enum(known, value))
    }
}

impl FieldRule {
    /// Whether the field may arrive in `wire_type`: its own, or packed for
    /// a repeated number or enum.
    fn travels_as(&self, wire_type: u64) -> bool {
        let packed = wire_type == 2
            && self.repeated
            && matches!(self.check, Check::Enum(_) | Check::Scalar(_));
        wire_type == self.check.wire_type() || packed
    }
}

/// Why a request is refused before its handler.
#[derive(Debug)]
pub enum Refusal {
    Fields(Vec<FieldViolation>),
    /// Not the protobuf encoding of the method's request (a field in the
    /// wrong wire type, truncated bytes, an invalid key).
    Malformed,
    /// The body is not exactly one checkable gRPC message.
    Framing(Framing),
}

/// What is wrong with the gRPC framing of a unary or server-streaming body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    Empty,
    Truncated,
    /// The compressed flag is set: the server accepts no compression.
    Compressed,
    TooLarge,
    MoreThanOneMessage,
}

impl Framing {
    fn violation(self) -> FieldViolation {
        let (code, description) = match self {
            Framing::Empty => ("EMPTY_REQUEST", "the request carries no message".to_owned()),
            Framing::Truncated => (
                "TRUNCATED_REQUEST",
                "the request body ends inside its message".to_owned(),
            ),
            Framing::Compressed => (
                "COMPRESSED_REQUEST",
                "compressed messages are not accepted; send it uncompressed".to_owned(),
            ),
            Framing::TooLarge => (
                "REQUEST_TOO_LARGE",
                format!("a request message must be at most {MAX_MESSAGE_BYTES} bytes"),
            ),
            Framing::MoreThanOneMessage => (
                "MORE_THAN_ONE_MESSAGE",
                "this method takes exactly one request message".to_owned(),
            ),
        };
        FieldViolation::new("", code, description)
    }
}

impl From<Refusal> for Status {
    fn from(refusal: Refusal) -> Self {
        let violations = match refusal {
            Refusal::Fields(violations) => violations,
            Refusal::Malformed => vec![FieldViolation::new(
                "",
                "MALFORMED_REQUEST",
                "the request is not a valid protobuf encoding of this method's request message",
            )],
            Refusal::Framing(framing) => vec![framing.violation()],
        };
        DomainError::InvalidArgument(violations).into()
    }
}

impl RequestBoundary {
    /// Compiles the checks of every unary method of the descriptor set.
    pub fn from_descriptor_set(encoded: &[u8]) -> anyhow::Result<Self> {
        let pool = DescriptorPool::decode(encoded)?;
        let mut boundary = Self {
            methods: HashMap::new(),
            schemas: Vec::new(),
        };
        let mut compiled = HashMap::new();
        for service in pool.services() {
            for method in service.methods() {
                if method.is_client_streaming() {
                    continue;
                }
                let schema = boundary.compile(&method.input(), &mut compiled);
                boundary.methods.insert(
                    format!("/{}/{}", service.full_name(), method.name()),
                    schema,
                );
            }
        }
        Ok(boundary)
    }

    fn compile(
        &mut self,
        message: &MessageDescriptor,
        compiled: &mut HashMap<String, usize>,
    ) -> usize {
        if let Some(&index) = compiled.get(message.full_name()) {
            return index;
        }
        // Reserve the slot first: messages may contain themselves (Struct).
        let index = self.schemas.len();
        self.schemas.push(Schema::default());
        compiled.insert(message.full_name().to_owned(), index);
        let mut fields = Vec::new();
        for field in message.fields() {
            let kind = field.kind();
            let check = match kind {
                Kind::String => Check::String {
                    max_bytes: string_cap(field.name()),
                },
                Kind::Bytes => Check::Bytes,
                Kind::Message(nested) => Check::Message(self.compile(&nested, compiled)),
                Kind::Enum(values) => {
                    let mut numbers: Vec<i32> = values.values().map(|v| v.number()).collect();
                    numbers.sort_unstable();
                    Check::Enum(numbers.into())
                }
                ref scalar => match ScalarWire::of(scalar) {
                    Some(wire) => Check::Scalar(wire),
                    None => continue,
                },
            };
            fields.push(FieldRule {
                number: field.number(),
                name: field.name().into(),
                repeated: field.is_list() || field.is_map(),
                check,
            });
        }
        fields.sort_by_key(|rule| rule.number);
        self.schemas[index].fields = fields;
        index
    }

    /// Whether `path` is a unary method this boundary checks.
    pub fn checks(&self, path: &str) -> bool {
        self.methods.contains_key(path)
    }

    /// Checks one encoded request message of the method at `path`; methods
    /// it does not know pass (routing answers them).
    pub fn check(&self, path: &str, message: &[u8]) -> Result<(), Refusal> {
        let Some(&schema) = self.methods.get(path) else {
            return Ok(());
        };
        let mut violations = Vec::new();
        self.walk(schema, message, None, 0, &mut violations)
            .map_err(|Malformed| Refusal::Malformed)?;
        if violations.is_empty() {
            Ok(())
        } else {
            Err(Refusal::Fields(violations))
        }
    }

    fn walk(
        &self,
        schema: usize,
        message: &[u8],
        parent: Option<&PathSegment<'_>>,
        depth: usize,
        violations: &mut Vec<FieldViolation>,
    ) -> Result<(), Malformed> {
        if depth > MAX_DEPTH {
            return Err(Malformed);
        }
        let fields = &self.schemas[schema].fields;
        let mut rest = message;
        while !rest.is_empty() && violations.len() < MAX_VIOLATIONS {
            let start = message.len() - rest.len();
            let key = read_varint(&mut rest)?;
            // As prost: a key is a u32 and field number 0 does not exist.
            if key > u64::from(u32::MAX) || key >> 3 == 0 {
                return Err(Malformed);
            }
            let number = (key >> 3) as u32;
            let wire_type = key & 7;
            let rule = fields
                .binary_search_by_key(&number, |rule| rule.number)
                .ok()
                .map(|at| &fields[at]);
            if rule.is_some_and(|rule| !rule.travels_as(wire_type)) {
                return Err(Malformed);
            }
            match wire_type {
                0 => {
                    let value = read_varint(&mut rest)?;
                    if let Some(rule) = rule.filter(|rule| rule.check.refuses_enum_value(value)) {
                        violations.push(unknown_enum(rule, message, start, 0, parent));
                    }
                }
                1 => skip(&mut rest, 8)?,
                5 => skip(&mut rest, 4)?,
                2 => {
                    let len = usize::try_from(read_varint(&mut rest)?).map_err(|_| Malformed)?;
                    if len > rest.len() {
                        return Err(Malformed);
                    }
                    let (value, after) = rest.split_at(len);
                    rest = after;
                    let Some(rule) = rule else { continue };
                    match &rule.check {
                        Check::String { max_bytes } => {
                            if let Some(violation) = string_violation(value, *max_bytes) {
                                let segment = segment(rule, message, start, 0, parent);
                                violations.push(violation.at(&segment));
                            }
                        }
                        Check::Message(nested) => {
                            let segment = segment(rule, message, start, 0, parent);
                            self.walk(*nested, value, Some(&segment), depth + 1, violations)?;
                        }
                        Check::Bytes => {}
                        Check::Scalar(wire) => check_packed(*wire, value)?,
                        // A packed repeated enum.
                        Check::Enum(known) => {
                            for position in unknown_packed_enum_values(known, value)? {
                                violations
                                    .push(unknown_enum(rule, message, start, position, parent));
                            }
                        }
                    }
                }
                _ => return Err(Malformed),
            }
        }
        Ok(())
    }
}

/// The cap of a string field by its name.
fn string_cap(name: &str) -> usize {
    STRING_CAPS
        .iter()
        .find(|(field, _)| *field == name)
        .map_or(DEFAULT_MAX_STRING_BYTES, |(_, cap)| *cap)
}

#[derive(Debug)]
struct Malformed;

fn read_varint(bytes: &mut &[u8]) -> Result<u64, Malformed> {
    prost::encoding::decode_varint(bytes).map_err(|_| Malformed)
}

fn skip(bytes: &mut &[u8], count: usize) -> Result<(), Malformed> {
    if bytes.len() < count {
        return Err(Malformed);
    }
    bytes.advance(count);
    Ok(())
}

/// A packed run must hold whole values, as prost's decoder demands.
fn check_packed(wire: ScalarWire, mut packed: &[u8]) -> Result<(), Malformed> {
    match wire {
        ScalarWire::Varint => {
            while !packed.is_empty() {
                read_varint(&mut packed)?;
            }
            Ok(())
        }
        ScalarWire::Fixed64 if packed.len() % 8 == 0 => Ok(()),
        ScalarWire::Fixed32 if packed.len() % 4 == 0 => Ok(()),
        _ => Err(Malformed),
    }
}

/// The positions of the unknown values in a packed repeated enum.
fn unknown_packed_enum_values(known: &[i32], mut packed: &[u8]) -> Result<Vec<usize>, Malformed> {
    let mut unknown = Vec::new();
    let mut position = 0;
    while !packed.is_empty() {
        if !known_enum(known, read_varint(&mut packed)?) {
            unknown.push(position);
        }
        position += 1;
    }
    Ok(unknown)
}

fn known_enum(known: &[i32], raw: u64) -> bool {
    // An int32 travels as its sign-extended 64 bits: truncation restores it.
    known.binary_search(&(raw as i32)).is_ok()
}

/// What is wrong with a string's bytes, if anything; the value is never echoed.
struct StringProblem {
    code: &'static str,
    description: String,
}

impl StringProblem {
    fn at(self, segment: &PathSegment<'_>) -> FieldViolation {
        FieldViolation::new(segment.render(), self.code, self.description)
    }
}

fn string_violation(value: &[u8], max_bytes: usize) -> Option<StringProblem> {
    if value.len() > max_bytes {
        return Some(StringProblem {
            code: "TOO_LONG",
            description: format!("must be at most {max_bytes} bytes"),
        });
    }
    if value.contains(&0) {
        return Some(StringProblem {
            code: "INVALID_CHARACTER",
            description: "must not contain the NUL character (U+0000)".to_owned(),
        });
    }
    if std::str::from_utf8(value).is_err() {
        return Some(StringProblem {
            code: "INVALID_UTF8",
            description: "must be valid UTF-8".to_owned(),
        });
    }
    None
}

fn unknown_enum(
    rule: &FieldRule,
    message: &[u8],
    start: usize,
    position: usize,
    parent: Option<&PathSegment<'_>>,
) -> FieldViolation {
    FieldViolation::new(
        segment(rule, message, start, position, parent).render(),
        "UNKNOWN_ENUM_VALUE",
        "is not a value this API defines",
    )
}

/// One step of a field path, rendered only when something is wrong: the
/// index of a repeated element is counted then, never on the good path.
struct PathSegment<'a> {
    parent: Option<&'a PathSegment<'a>>,
    rule: &'a FieldRule,
    /// The message holding the field, and where the field starts in it.
    message: &'a [u8],
    start: usize,
    /// The value's position inside a packed run.
    position: usize,
}

impl PathSegment<'_> {
    fn render(&self) -> String {
        let mut path = self
            .parent
            .map(|parent| format!("{}.", parent.render()))
            .unwrap_or_default();
        path.push_str(&self.rule.name);
        if self.rule.repeated {
            let index = elements_before(self.message, self.start, self.rule) + self.position;
            path.push_str(&format!("[{index}]"));
        }
        path
    }
}

fn segment<'a>(
    rule: &'a FieldRule,
    message: &'a [u8],
    start: usize,
    position: usize,
    parent: Option<&'a PathSegment<'a>>,
) -> PathSegment<'a> {
    PathSegment {
        parent,
        rule,
        message,
        start,
        position,
    }
}

/// Elements of `rule`'s field encoded before byte `end` (packed runs count each value).
fn elements_before(message: &[u8], end: usize, rule: &FieldRule) -> usize {
    let mut rest = &message[..end];
    let mut count = 0;
    while let Ok(key) = read_varint(&mut rest) {
        let same = key >> 3 == u64::from(rule.number);
        let skipped = match key & 7 {
            0 => read_varint(&mut rest).map(|_| ()),
            1 => skip(&mut rest, 8),
            5 => skip(&mut rest, 4),
            2 => match read_varint(&mut rest) {
                Ok(len) if (len as usize) <= rest.len() => {
                    let (value, after) = rest.split_at(len as usize);
                    if same && matches!(rule.check, Check::Enum(_)) {
                        let mut packed = value;
                        while read_varint(&mut packed).is_ok() {
                            count += 1;
                        }
                        rest = after;
                        continue;
                    }
                    rest = after;
                    Ok(())
                }
                _ => Err(Malformed),
            },
            _ => Err(Malformed),
        };
        if skipped.is_err() {
            break;
        }
        if same {
            count += 1;
        }
    }
    count
}

/// The tower layer running the boundary before every unary handler.
#[derive(Clone)]
pub struct BoundaryLayer {
    boundary: Arc<RequestBoundary>,
}

impl BoundaryLayer {
    pub fn new(boundary: Arc<RequestBoundary>) -> Self {
        Self { boundary }
    }
}

impl Around for BoundaryLayer {
    fn around<S: Next>(&self, request: Request<Body>, mut next: S) -> Answer<S::Error> {
        if !self.boundary.checks(request.uri().path()) {
            return Box::pin(next.call(request));
        }
        let boundary = self.boundary.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let mut body = Box::pin(body);
            let read = match only_message(&mut body).await {
                Ok(read) => read,
                // The client's stream broke: nothing is left to answer.
                Err(_) => {
                    return Ok(Status::cancelled("the request body ended in error").into_http())
                }
            };
            let (buffered, trailers) = match read {
                Ok(read) => read,
                Err(framing) => return Ok(Status::from(Refusal::Framing(framing)).into_http()),
            };
            let message = buffered.slice(GRPC_HEADER_BYTES..);
            if let Err(refusal) = boundary.check(parts.uri.path(), &message) {
                return Ok(Status::from(refusal).into_http());
            }
            // The whole body was read: it goes on as it came.
            let replayed = Replayed {
                buffered: Some(buffered),
                trailers,
            };
            next.call(Request::from_parts(parts, Body::new(replayed)))
                .await
        })
    }
}

/// Reads the whole body, which must be exactly one uncompressed gRPC
/// message within tonic's limit (unary and server-streaming methods take
/// one). Returns its bytes (header included) and any trailers; a body
/// sending more is refused as soon as its first extra byte arrives.
async fn only_message<B>(
    body: &mut Pin<Box<B>>,
) -> Result<Result<(Bytes, Option<HeaderMap>), Framing>, tonic::codegen::StdError>
where
    B: HttpBody<Data = Bytes>,
    B::Error: Into<tonic::codegen::StdError>,
{
    // Usually the whole message is one frame and nothing is copied.
    let mut single = Bytes::new();
    let mut joined: Option<BytesMut> = None;
    let mut trailers = None;
    loop {
        let read: &[u8] = joined.as_deref().unwrap_or(&single);
        let mut message_len = None;
        if read.len() >= GRPC_HEADER_BYTES {
            let len = u32::from_be_bytes([read[1], read[2], read[3], read[4]]) as usize;
            if read[0] != 0 {
                return Ok(Err(Framing::Compressed));
            }
            if len > MAX_MESSAGE_BYTES {
                return Ok(Err(Framing::TooLarge));
            }
            if read.len() > GRPC_HEADER_BYTES + len {
                return Ok(Err(Framing::MoreThanOneMessage));
            }
            message_len = Some(len);
        }
        let Some(frame) = body.frame().await else {
            return Ok(match message_len {
                _ if read.is_empty() => Err(Framing::Empty),
                Some(len) if read.len() == GRPC_HEADER_BYTES + len => {
                    Ok((joined.map_or(single, BytesMut::freeze), trailers))
                }
                _ => Err(Framing::Truncated),
            });
        };
        let data = match frame.map_err(Into::into)?.into_data() {
            Ok(data) => data,
            Err(frame) => {
                trailers = frame.into_trailers().ok();
                continue;
            }
        };
        if trailers.is_some() && !data.is_empty() {
            return Ok(Err(Framing::MoreThanOneMessage));
        }
        match joined.as_mut() {
            Some(all) => all.extend_from_slice(&data),
            None if single.is_empty() => single = data,
            None => {
                let mut all = BytesMut::from(&single[..]);
                all.extend_from_slice(&data);
                joined = Some(all);
            }
        }
    }
}

/// A request body the boundary read whole, handed on as it came.
struct Replayed {
    buffered: Option<Bytes>,
    trailers: Option<HeaderMap>,
}

impl HttpBody for Replayed {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        if let Some(buffered) = self.buffered.take() {
            return Poll::Ready(Some(Ok(Frame::data(buffered))));
        }
        Poll::Ready(
            self.trailers
                .take()
                .map(|trailers| Ok(Frame::trailers(trailers))),
        )
    }

    fn is_end_stream(&self) -> bool {
        self.buffered.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.buffered.as_ref().map_or(0, |b| b.len() as u64))
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::proto::{self, FILE_DESCRIPTOR_SET};

    const LIST_USERS: &str = "/roster.v1.UserService/ListUsers";

    fn boundary() -> RequestBoundary {
        RequestBoundary::from_descriptor_set(FILE_DESCRIPTOR_SET).unwrap()
    }

    fn fields(refusal: Refusal) -> Vec<(String, String)> {
        match refusal {
            Refusal::Fields(violations) => violations
                .into_iter()
                .map(|v| (v.field, v.code.into_owned()))
                .collect(),
            other => panic!("expected field violations, got {other:?}"),
        }
    }

    #[test]
    fn a_valid_request_passes() {
        let request = proto::ListUsersRequest {
            query: "joão".into(),
            statuses: vec![proto::UserStatus::Active as i32],
            ..Default::default()
        };
        assert!(boundary()
            .check(LIST_USERS, &request.encode_to_vec())
            .is_ok());
    }

    #[test]
    fn invalid_utf8_names_the_field_instead_of_failing_the_decoder() {
        // Field 3 (`query`), length-delimited, two bytes that are not UTF-8.
        let refusal = boundary()
            .check(LIST_USERS, &[0x1a, 0x02, 0xff, 0xfe])
            .unwrap_err();
        assert_eq!(fields(refusal), [("query".into(), "INVALID_UTF8".into())]);
    }

    #[test]
    fn truncated_bytes_are_malformed() {
        let refusal = boundary()
            .check(LIST_USERS, &[0x1a, 0x05, b'a'])
            .unwrap_err();
        assert!(matches!(refusal, Refusal::Malformed));
    }

    #[test]
    fn unpacked_repeated_enums_are_indexed_like_packed_ones() {
        // `statuses` (field 4) as three unpacked varints: 1, 2, 99.
        let refusal = boundary()
            .check(LIST_USERS, &[0x20, 0x01, 0x20, 0x02, 0x20, 99])
            .unwrap_err();
        assert_eq!(
            fields(refusal),
            [("statuses[2]".into(), "UNKNOWN_ENUM_VALUE".into())]
        );
    }

    #[test]
    fn a_field_in_the_wrong_wire_type_is_malformed() {
        const LOGIN: &str = "/roster.v1.AuthService/Login";
        let boundary = boundary();
        // `organization` (a string) as a varint: prost's decoder would fail.
        assert!(matches!(
            boundary.check(LOGIN, &[0x08, 0x01]),
            Err(Refusal::Malformed)
        ));
        // `statuses` (a repeated enum) as a fixed32; `page_size` (int32) length-delimited.
        for bytes in [&[0x25, 1, 0, 0, 0][..], &[0x0a, 0x00]] {
            assert!(matches!(
                boundary.check(LIST_USERS, bytes),
                Err(Refusal::Malformed)
            ));
        }
        // Packed is a repeated number's other wire type, but its values must be whole.
        assert!(boundary
            .check(LIST_USERS, &[0x22, 0x02, 0x01, 0x02])
            .is_ok());
        assert!(matches!(
            boundary.check(LIST_USERS, &[0x22, 0x01, 0x80]),
            Err(Refusal::Malformed)
        ));
        // Field number 0 and a key beyond 32 bits do not exist.
        assert!(matches!(
            boundary.check(LIST_USERS, &[0x00, 0x01]),
            Err(Refusal::Malformed)
        ));
        assert!(matches!(
            boundary.check(LIST_USERS, &[0x80, 0x80, 0x80, 0x80, 0x10, 0x01]),
            Err(Refusal::Malformed)
        ));
        // Unknown fields pass in any wire type, as prost skips them.
        assert!(boundary.check(LOGIN, &[0xf8, 0x07, 0x01]).is_ok());
    }

    #[test]
    fn client_streaming_methods_are_left_to_their_reader() {
        let boundary = boundary();
        assert!(!boundary.checks("/roster.v1.ImportService/ImportUsers"));
        assert!(boundary.checks("/roster.v1.UserService/ExportUsers"));
    }
}
