//! The RPCs of the contract as the descriptor set describes them: path,
//! streaming, the scope their doc comment ends with, and request bodies
//! built field by field from the request message's descriptor.

use std::collections::HashMap;

use prost::Message;
use prost_types::{
    field_descriptor_proto::{Label, Type},
    DescriptorProto, EnumDescriptorProto, FieldDescriptorProto, FileDescriptorSet,
};

const PACKAGE: &str = "roster.v1";

/// The access an RPC's doc comment says it needs (`... Scope: ADMIN.`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Required {
    Public,
    AnyToken,
    SignedIn,
    Viewer,
    Admin,
    OrganizationAdmin,
    /// Any token: a user acts on themself; acting on anyone else needs
    /// ADMIN, which the handler checks against the user named.
    OwnOrAdmin,
}

/// The exact sentences a doc comment may end with, and what each means.
const SCOPE_SENTENCES: &[(&str, Required)] = &[
    ("Scope: public.", Required::Public),
    ("Scope: any token.", Required::AnyToken),
    ("Scope: signed-in.", Required::SignedIn),
    ("Scope: VIEWER.", Required::Viewer),
    ("Scope: ADMIN.", Required::Admin),
    (
        "Scope: ADMIN (organization administrators).",
        Required::OrganizationAdmin,
    ),
    (
        "Scope: ADMIN, or signed-in for oneself.",
        Required::OwnOrAdmin,
    ),
];

/// One RPC of the contract.
pub struct Rpc {
    /// `/roster.v1.UserService/GetUser`
    pub path: String,
    /// `UserService/GetUser`, for the failure table.
    pub name: String,
    pub client_streaming: bool,
    pub server_streaming: bool,
    /// What the comment says, or why it could not be read.
    pub required: Result<Required, String>,
    /// Full name of the request message (`.roster.v1.GetUserRequest`).
    pub input_type: String,
}

/// The kinds of resource an id field can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Resource {
    Organization,
    User,
    Group,
    Unit,
    Profile,
    ApiKey,
    ImportJob,
    /// A user's session (an access token).
    Session,
    /// A user's `external_id`: not a UUID, but it names a user all the same.
    ExternalId,
}

/// What a string id field refers to: `*_id` / `*_ids` by its name, `id` by
/// the message holding it; `Ok(None)` for a field that names no resource,
/// an error for an id field the matrix cannot place (teach it).
fn resource_of(message_name: &str, field_name: &str) -> Result<Option<Resource>, String> {
    if field_name == "id" {
        return Ok(Some(match message_name {
            "Organization" => Resource::Organization,
            "User" => Resource::User,
            "Group" => Resource::Group,
            "Unit" => Resource::Unit,
            "Profile" => Resource::Profile,
            "ApiKey" => Resource::ApiKey,
            "ImportJob" => Resource::ImportJob,
            "Session" => Resource::Session,
            // A user named by any key (mirror_user, source_user…).
            "UserKey" => Resource::User,
            _ => {
                return Err(format!(
                    "`{message_name}.id` names no known kind of resource: teach the matrix which"
                ))
            }
        }));
    }
    let Some(stem) = field_name
        .strip_suffix("_ids")
        .or_else(|| field_name.strip_suffix("_id"))
    else {
        return Ok(None);
    };
    let last_word = stem.rsplit('_').next().unwrap_or(stem);
    Ok(Some(match (stem, last_word) {
        // An idempotency key the client chooses.
        ("request", _) => return Ok(None),
        // A user's own attribute, set rather than looked up.
        ("external", _) if message_name == "User" => return Ok(None),
        ("external", _) => Resource::ExternalId,
        ("api_key", _) => Resource::ApiKey,
        // Audit filters: a user is both an actor and a target.
        ("actor" | "target", _) => Resource::User,
        (_, "user") => Resource::User,
        (_, "group") => Resource::Group,
        (_, "unit") => Resource::Unit,
        (_, "profile") => Resource::Profile,
        (_, "job") => Resource::ImportJob,
        (_, "session") => Resource::Session,
        (_, "organization") => Resource::Organization,
        _ => {
            return Err(format!(
                "id field `{message_name}.{field_name}` names no known kind of resource: teach the matrix which"
            ))
        }
    }))
}

/// Values that get a request past validation to the lookup of its ids,
/// by field name (the same name means the same thing across the contract).
/// `{n}` makes names unique per request.
const PLAUSIBLE_TEXT: &[(&str, &str)] = &[
    ("name", "Matrix {n}"),
    ("product", "Matrix"),
    ("first_name", "Matrix"),
    ("last_name", "Caller {n}"),
    ("email", "matrix.{n}@globex.test"),
];
const PLAUSIBLE_ENUM_VALUE: &[(&str, &str)] = &[
    // `unit_ids` are filled: the scope that uses them.
    ("unit_scope", "UNIT_SCOPE_UNITS"),
    ("kind", "UNIT_KIND_BRANCH"),
    ("status", "USER_STATUS_ACTIVE"),
    ("mode", "MIRROR_MODE_ADD"),
];
const FIELD_MASK: &str = ".google.protobuf.FieldMask";

/// An id field of a request, by its path (`group.unit_ids`).
#[derive(Debug, Clone)]
pub struct IdField {
    pub path: String,
    pub resource: Resource,
    /// A repeated field names a batch, whose unknown items may be reported one by one.
    pub repeated: bool,
}

pub struct Contract {
    pub rpcs: Vec<Rpc>,
    messages: HashMap<String, DescriptorProto>,
    enums: HashMap<String, EnumDescriptorProto>,
    /// Leading comment of each field, by (message full name, field name).
    field_comments: HashMap<(String, String), String>,
}

impl Contract {
    pub fn load() -> Self {
        let set = FileDescriptorSet::decode(roster::proto::FILE_DESCRIPTOR_SET)
            .expect("the descriptor set built by build.rs");
        let mut rpcs = Vec::new();
        let mut messages = HashMap::new();
        let mut enums = HashMap::new();
        let mut field_comments = HashMap::new();
        for file in &set.file {
            let package = file.package();
            let comments: HashMap<&[i32], &str> = file
                .source_code_info
                .iter()
                .flat_map(|info| &info.location)
                .map(|location| (location.path.as_slice(), location.leading_comments()))
                .collect();
            let mut found = Found {
                messages: &mut messages,
                field_comments: &mut field_comments,
                comments: &comments,
            };
            for (index, message) in file.message_type.iter().enumerate() {
                // FileDescriptorProto.message_type = 4.
                found.collect(&format!(".{package}"), message, vec![4, index as i32]);
            }
            for enumeration in &file.enum_type {
                enums.insert(
                    format!(".{package}.{}", enumeration.name()),
                    enumeration.clone(),
                );
            }
            if package != PACKAGE {
                continue;
            }
            for (service_index, service) in file.service.iter().enumerate() {
                for (method_index, method) in service.method.iter().enumerate() {
                    // FileDescriptorProto.service = 6, ServiceDescriptorProto.method = 2.
                    let location = [6, service_index as i32, 2, method_index as i32];
                    let comment = comments.get(location.as_slice()).copied().unwrap_or("");
                    rpcs.push(Rpc {
                        path: format!("/{package}.{}/{}", service.name(), method.name()),
                        name: format!("{}/{}", service.name(), method.name()),
                        client_streaming: method.client_streaming(),
                        server_streaming: method.server_streaming(),
                        required: required_by(comment),
                        input_type: method.input_type().to_owned(),
                    });
                }
            }
        }
        Self {
            rpcs,
            messages,
            enums,
            field_comments,
        }
    }

    /// Every id field of `rpc`'s request, nested messages included.
    pub fn id_fields(&self, rpc: &Rpc) -> Result<Vec<IdField>, String> {
        let mut fields = Vec::new();
        self.collect_id_fields(&rpc.input_type, "", 0, false, &mut fields)?;
        Ok(fields)
    }

    fn collect_id_fields(
        &self,
        type_name: &str,
        prefix: &str,
        depth: usize,
        id_names_it: bool,
        into: &mut Vec<IdField>,
    ) -> Result<(), String> {
        let message = self.message(type_name)?;
        for field in &message.field {
            if !self.is_input(type_name, field, id_names_it) {
                continue;
            }
            let path = format!("{prefix}{}", field.name());
            match field.r#type() {
                Type::String => {
                    if let Some(resource) = resource_of(message.name(), field.name())? {
                        into.push(IdField {
                            path,
                            resource,
                            repeated: field.label() == Label::Repeated,
                        });
                    }
                }
                Type::Message if is_ours(field.type_name()) && depth < MAX_DEPTH => {
                    let first = into.len();
                    self.collect_id_fields(
                        field.type_name(),
                        &format!("{path}."),
                        depth + 1,
                        self.id_names(type_name, field),
                        into,
                    )?;
                    // An id inside each item of a list is reported per item too.
                    if field.label() == Label::Repeated {
                        into[first..].iter_mut().for_each(|id| id.repeated = true);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// `rpc`'s request with plausible values and each id field given by
    /// `id_for(path, resource)` (left empty on `None`); of two alternative
    /// fields or members of a oneof, the one holding `target` (a path) is kept.
    pub fn request(
        &self,
        rpc: &Rpc,
        id_for: &dyn Fn(&str, Resource) -> Option<String>,
        target: &str,
        serial: usize,
    ) -> Result<Vec<u8>, String> {
        let at = Encoding {
            prefix: "",
            depth: 0,
            id_names_it: false,
            target,
        };
        Ok(self.encode(&rpc.input_type, at, id_for, serial)?.0)
    }

    /// The encoded message and the names of the fields set in it but its
    /// `id` (what an `update_mask` beside it names).
    fn encode(
        &self,
        type_name: &str,
        at: Encoding<'_>,
        id_for: &dyn Fn(&str, Resource) -> Option<String>,
        serial: usize,
    ) -> Result<(Vec<u8>, Vec<String>), String> {
        let Encoding {
            prefix,
            depth,
            id_names_it,
            target,
        } = at;
        let message = self.message(type_name)?;
        let mut values: Vec<(&FieldDescriptorProto, Vec<u8>)> = Vec::new();
        let mut nested_set_fields = Vec::new();
        for field in &message.field {
            if !self.is_input(type_name, field, id_names_it) {
                continue;
            }
            let path = format!("{prefix}{}", field.name());
            let value = match field.r#type() {
                Type::String => match resource_of(message.name(), field.name())? {
                    Some(resource) => id_for(&path, resource).map(String::into_bytes),
                    None => PLAUSIBLE_TEXT
                        .iter()
                        .find(|(name, _)| *name == field.name())
                        .map(|(_, text)| text.replace("{n}", &serial.to_string()).into_bytes()),
                },
                Type::Enum => PLAUSIBLE_ENUM_VALUE
                    .iter()
                    .find(|(name, _)| *name == field.name())
                    .and_then(|(_, value)| self.enum_number(field.type_name(), value))
                    .map(|number| {
                        let mut varint = Vec::new();
                        encode_varint(number as u64, &mut varint);
                        varint
                    }),
                Type::Message if is_ours(field.type_name()) && depth < MAX_DEPTH => {
                    let nested_prefix = format!("{path}.");
                    let at = Encoding {
                        prefix: &nested_prefix,
                        depth: depth + 1,
                        id_names_it: self.id_names(type_name, field),
                        target,
                    };
                    let (nested, set_fields) =
                        self.encode(field.type_name(), at, id_for, serial)?;
                    nested_set_fields.extend(set_fields);
                    (!nested.is_empty()).then_some(nested)
                }
                _ => None,
            };
            if let Some(value) = value {
                values.push((field, value));
            }
        }
        if let Some(mask) = message
            .field
            .iter()
            .find(|field| field.type_name() == FIELD_MASK && field.name() == "update_mask")
        {
            // The mask names what the resource beside it got.
            let mut paths = Vec::new();
            for path in &nested_set_fields {
                encode_length_delimited(1, path.as_bytes(), &mut paths);
            }
            if !paths.is_empty() {
                values.push((mask, paths));
            }
        }
        // Only one member of a oneof may be set: the one holding the target,
        // then an id, so that a lookup by id is not shadowed by a plausible
        // alternative.
        let mut body = Vec::new();
        let mut oneofs_set = Vec::new();
        let holds_target = |name: &str| {
            let path = format!("{prefix}{name}");
            target == path || target.starts_with(&format!("{path}."))
        };
        let is_id = |field: &FieldDescriptorProto| {
            matches!(resource_of(message.name(), field.name()), Ok(Some(_)))
        };
        values.sort_by_key(|(field, _)| (!holds_target(field.name()), !is_id(field)));
        let set_fields = values
            .iter()
            .map(|(field, _)| field.name().to_owned())
            .filter(|name| name != "id" && name != "update_mask")
            .collect();
        // A field documented as another's alternative ("As mirror_user_id,
        // by … (give one of the two)") is left out when that one is set.
        let alternative_of = |field: &FieldDescriptorProto| -> Option<String> {
            let comment = self.comment(type_name, field.name()).trim_start();
            let other = comment.strip_prefix("As ")?.split([',', ' ']).next()?;
            comment
                .contains("give one of the two")
                .then(|| other.to_owned())
        };
        let given: Vec<String> = values.iter().map(|(f, _)| f.name().to_owned()).collect();
        let mut left_out = Vec::new();
        for (field, _) in &values {
            if let Some(other) = alternative_of(field).filter(|other| given.contains(other)) {
                left_out.push(if holds_target(field.name()) {
                    other
                } else {
                    field.name().to_owned()
                });
            }
        }
        values.retain(|(field, _)| !left_out.iter().any(|name| name == field.name()));
        for (field, value) in values {
            if let Some(oneof) = field.oneof_index {
                if oneofs_set.contains(&oneof) {
                    continue;
                }
                oneofs_set.push(oneof);
            }
            // Enums are varints (wire type 0), everything else here is
            // length-delimited; a repeated field gets one value, enough to name a resource.
            if field.r#type() == Type::Enum {
                encode_varint((field.number() as u64) << 3, &mut body);
                body.extend_from_slice(&value);
            } else {
                encode_length_delimited(field.number(), &value, &mut body);
            }
        }
        Ok((body, set_fields))
    }

    /// Whether a client sets `field` here: not output only, except a
    /// resource's `id` where the request says it names the resource.
    fn is_input(&self, type_name: &str, field: &FieldDescriptorProto, id_names_it: bool) -> bool {
        !self
            .comment(type_name, field.name())
            .contains("Output only")
            || (field.name() == "id" && id_names_it)
    }

    /// Whether the comment of message field `field` says "`field.id` names …".
    fn id_names(&self, type_name: &str, field: &FieldDescriptorProto) -> bool {
        self.comment(type_name, field.name())
            .contains(&format!("`{}.id` names", field.name()))
    }

    fn comment(&self, type_name: &str, field_name: &str) -> &str {
        self.field_comments
            .get(&(type_name.to_owned(), field_name.to_owned()))
            .map_or("", String::as_str)
    }

    fn message(&self, type_name: &str) -> Result<&DescriptorProto, String> {
        self.messages
            .get(type_name)
            .ok_or_else(|| format!("message {type_name} is not in the descriptor set"))
    }

    fn enum_number(&self, type_name: &str, value_name: &str) -> Option<i32> {
        self.enums
            .get(type_name)?
            .value
            .iter()
            .find(|value| value.name() == value_name)
            .map(|value| value.number())
    }
}

/// Where `encode` is in the request: the path so far, how deep, whether the
/// enclosing field's `id` names its resource, and the path an answer is
/// about (kept over its alternative).
#[derive(Clone, Copy)]
struct Encoding<'a> {
    prefix: &'a str,
    depth: usize,
    id_names_it: bool,
    target: &'a str,
}

/// Nesting followed into request messages; the contract's requests are shallow.
const MAX_DEPTH: usize = 4;

fn is_ours(type_name: &str) -> bool {
    type_name.starts_with(&format!(".{PACKAGE}."))
}

/// Messages and field comments of one file, gathered by walking its
/// descriptors with their source locations.
struct Found<'a> {
    messages: &'a mut HashMap<String, DescriptorProto>,
    field_comments: &'a mut HashMap<(String, String), String>,
    comments: &'a HashMap<&'a [i32], &'a str>,
}

impl Found<'_> {
    fn collect(&mut self, scope: &str, message: &DescriptorProto, location: Vec<i32>) {
        let name = format!("{scope}.{}", message.name());
        // DescriptorProto.field = 2, DescriptorProto.nested_type = 3.
        for (index, field) in message.field.iter().enumerate() {
            let path = [location.as_slice(), &[2, index as i32]].concat();
            if let Some(comment) = self.comments.get(path.as_slice()) {
                self.field_comments.insert(
                    (name.clone(), field.name().to_owned()),
                    (*comment).to_owned(),
                );
            }
        }
        for (index, nested) in message.nested_type.iter().enumerate() {
            let path = [location.as_slice(), &[3, index as i32]].concat();
            self.collect(&name, nested, path);
        }
        self.messages.insert(name, message.clone());
    }
}

/// The scope of a doc comment whose last sentence is one of `SCOPE_SENTENCES`.
fn required_by(comment: &str) -> Result<Required, String> {
    let comment = comment.split_whitespace().collect::<Vec<_>>().join(" ");
    SCOPE_SENTENCES
        .iter()
        .find(|(sentence, _)| comment.ends_with(sentence))
        .map(|(_, required)| *required)
        .ok_or_else(|| {
            let tail: String = comment
                .chars()
                .rev()
                .take(60)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            format!("doc comment does not end with a known scope sentence: \"…{tail}\"")
        })
}

/// Protobuf wire format of one length-delimited field (wire type 2).
fn encode_length_delimited(number: i32, value: &[u8], into: &mut Vec<u8>) {
    encode_varint(((number as u64) << 3) | 2, into);
    encode_varint(value.len() as u64, into);
    into.extend_from_slice(value);
}

fn encode_varint(mut value: u64, into: &mut Vec<u8>) {
    while value >= 0x80 {
        into.push((value as u8) | 0x80);
        value >>= 7;
    }
    into.push(value as u8);
}

#[test]
fn a_comment_without_a_known_scope_sentence_is_not_understood() {
    assert_eq!(
        required_by("Lists groups. Scope: VIEWER."),
        Ok(Required::Viewer)
    );
    assert_eq!(
        required_by("Creates a unit. Scope: ADMIN (organization\n administrators)."),
        Ok(Required::OrganizationAdmin)
    );
    for comment in [
        "",
        "Lists groups.",
        "Lists groups. Scope: viewer.",
        "Scope: ADMIN. Then something else.",
        "Scope: ADMIN, organization administrators only.",
    ] {
        assert!(required_by(comment).is_err(), "{comment:?}");
    }
}

#[test]
fn every_string_id_field_names_a_kind_of_resource_or_is_known_not_to() {
    let cases = [
        ("CloneUserRequest", "source_user_id", Some(Resource::User)),
        ("MirrorUserRequest", "target_user_ids", Some(Resource::User)),
        (
            "SendActivationEmailRequest",
            "import_job_id",
            Some(Resource::ImportJob),
        ),
        ("RevokeApiKeyRequest", "api_key_id", Some(Resource::ApiKey)),
        (
            "RevokeUserSessionsRequest",
            "session_id",
            Some(Resource::Session),
        ),
        (
            "LookupUserRequest",
            "external_id",
            Some(Resource::ExternalId),
        ),
        ("Group", "id", Some(Resource::Group)),
        ("User", "external_id", None),
        ("CreateUserRequest", "request_id", None),
        ("User", "first_name", None),
    ];
    for (message, field, resource) in cases {
        assert_eq!(
            resource_of(message, field),
            Ok(resource),
            "{message}.{field}"
        );
    }
    assert!(resource_of("CreateUserRequest", "tenant_id").is_err());
    assert!(resource_of("Invoice", "id").is_err());
}
