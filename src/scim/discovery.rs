//! What this service provider does (RFC 7644 §4), advertised truthfully:
//! Users and Groups (with Roster's group extension), PATCH, filters,
//! sorting, ETags, bulk; no password changes.

use serde_json::{json, Value};

use super::{
    bulk::{MAX_OPERATIONS, MAX_PAYLOAD_SIZE},
    MAX_RESULTS, SCHEMA_ENTERPRISE_USER, SCHEMA_GROUP, SCHEMA_LIST, SCHEMA_ROSTER_GROUP,
    SCHEMA_USER,
};

const SCHEMA_SERVICE_PROVIDER_CONFIG: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
const SCHEMA_RESOURCE_TYPE: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

pub fn service_provider_config(base_url: &str) -> Value {
    json!({
        "schemas": [SCHEMA_SERVICE_PROVIDER_CONFIG],
        "patch": { "supported": true },
        "bulk": { "supported": true, "maxOperations": MAX_OPERATIONS, "maxPayloadSize": MAX_PAYLOAD_SIZE },
        "filter": { "supported": true, "maxResults": MAX_RESULTS },
        "changePassword": { "supported": false },
        "sort": { "supported": true },
        "etag": { "supported": true },
        "authenticationSchemes": [{
            "type": "oauthbearertoken",
            "name": "API key",
            "description": "A Roster API key as the bearer token: VIEWER keys read, ADMIN keys write.",
            "primary": true,
        }],
        "meta": {
            "resourceType": "ServiceProviderConfig",
            "location": format!("{base_url}/ServiceProviderConfig"),
        },
    })
}

pub fn resource_types(base_url: &str) -> Vec<Value> {
    let user = json!({
        "schemas": [SCHEMA_RESOURCE_TYPE],
        "id": "User",
        "name": "User",
        "endpoint": "/Users",
        "description": "A person of the organization",
        "schema": SCHEMA_USER,
        "schemaExtensions": [{ "schema": SCHEMA_ENTERPRISE_USER, "required": false }],
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{base_url}/ResourceTypes/User"),
        },
    });
    let group = json!({
        "schemas": [SCHEMA_RESOURCE_TYPE],
        "id": "Group",
        "name": "Group",
        "endpoint": "/Groups",
        "description": "A Roster group: a product profile on some units, and its members (users)",
        "schema": SCHEMA_GROUP,
        // Every group holds it (a create without it takes the defaults).
        "schemaExtensions": [{ "schema": SCHEMA_ROSTER_GROUP, "required": true }],
        "meta": {
            "resourceType": "ResourceType",
            "location": format!("{base_url}/ResourceTypes/Group"),
        },
    });
    vec![user, group]
}

pub fn schemas(base_url: &str) -> Vec<Value> {
    let string = |name: &str, description: &str, required: bool, uniqueness: &str| {
        json!({
            "name": name, "type": "string", "multiValued": false, "description": description,
            "required": required, "caseExact": false, "mutability": "readWrite",
            "returned": "default", "uniqueness": uniqueness,
        })
    };
    // No `primary`: Roster keeps one value, so it would tell nothing; a
    // provider's `primary` picks which of its entries Roster keeps.
    let multi_valued = |name: &str, description: &str, required: bool, value: &str| {
        json!({
            "name": name, "type": "complex", "multiValued": true, "description": description,
            "required": required, "mutability": "readWrite", "returned": "default",
            "uniqueness": "none",
            "subAttributes": [
                string("value", value, required, "none"),
                {
                    "name": "type", "type": "string", "multiValued": false,
                    "description": "Always `work`; values of other types are not kept",
                    "required": false, "caseExact": false, "canonicalValues": ["work"],
                    "mutability": "readWrite", "returned": "default", "uniqueness": "none",
                },
            ],
        })
    };
    let user = json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": SCHEMA_USER,
        "name": "User",
        "description": "A Roster user",
        "attributes": [
            string("userName", "Roster's username; unique in the organization", true, "server"),
            {
                "name": "name", "type": "complex", "multiValued": false,
                "description": "The person's name", "required": true,
                "mutability": "readWrite", "returned": "default",
                "subAttributes": [
                    string("givenName", "First name", true, "none"),
                    string("familyName", "Last name", true, "none"),
                ],
            },
            multi_valued(
                "emails",
                "The user's email (one, the primary)",
                true,
                "An email address",
            ),
            multi_valued(
                "phoneNumbers",
                "The user's phone number (one, the primary)",
                false,
                "E.164: + then the country code and number (+5511999998888); spaces, dashes, \
                 dots, parentheses and a `tel:` prefix are ignored; a number without its \
                 country code is refused (400 invalidValue)",
            ),
            {
                "name": "active", "type": "boolean", "multiValued": false,
                "description": "Roster's admin state: ACTIVE (true) or INACTIVE (false); \
                    always held (true when a create leaves it out), so it cannot be removed",
                "required": true, "mutability": "readWrite", "returned": "default",
            },
        ],
        "meta": {
            "resourceType": "Schema",
            "location": format!("{base_url}/Schemas/{SCHEMA_USER}"),
        },
    });
    let enterprise = json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": SCHEMA_ENTERPRISE_USER,
        "name": "EnterpriseUser",
        "description": "Enterprise user: the employee number only, kept in the custom attribute `employee_number`",
        "attributes": [
            string("employeeNumber", "The custom attribute `employee_number` (define it to use it)", false, "none"),
        ],
        "meta": {
            "resourceType": "Schema",
            "location": format!("{base_url}/Schemas/{SCHEMA_ENTERPRISE_USER}"),
        },
    });
    vec![
        user,
        enterprise,
        group_schema(base_url),
        roster_group_schema(base_url),
    ]
}

fn group_schema(base_url: &str) -> Value {
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": SCHEMA_GROUP,
        "name": "Group",
        "description": "A Roster group. Its externalId (the provider's id for it) is unique in the organization, compared case-exactly",
        "attributes": [
            {
                "name": "displayName", "type": "string", "multiValued": false,
                "description": "The group's name; unique in the organization ignoring case",
                "required": true, "caseExact": false, "mutability": "readWrite",
                "returned": "default", "uniqueness": "server",
            },
            {
                "name": "members", "type": "complex", "multiValued": true,
                "description": "The users in the group (groups do not nest); PUT replaces them all",
                "required": false, "mutability": "readWrite", "returned": "default",
                "uniqueness": "none",
                "subAttributes": [
                    {
                        "name": "value", "type": "string", "multiValued": false,
                        "description": "The user's id", "required": true, "caseExact": false,
                        "mutability": "immutable", "returned": "default", "uniqueness": "none",
                    },
                    {
                        "name": "$ref", "type": "reference", "referenceTypes": ["User"],
                        "multiValued": false, "description": "The user's URI", "required": false,
                        "caseExact": false, "mutability": "immutable", "returned": "default",
                        "uniqueness": "none",
                    },
                    {
                        "name": "type", "type": "string", "multiValued": false,
                        "description": "Always User", "required": false, "caseExact": false,
                        "canonicalValues": ["User"], "mutability": "immutable",
                        "returned": "default", "uniqueness": "none",
                    },
                ],
            },
        ],
        "meta": {
            "resourceType": "Schema",
            "location": format!("{base_url}/Schemas/{SCHEMA_GROUP}"),
        },
    })
}

fn roster_group_schema(base_url: &str) -> Value {
    json!({
        "schemas": [SCHEMA_SCHEMA],
        "id": SCHEMA_ROSTER_GROUP,
        "name": "RosterGroup",
        "description": "What a Roster group grants: a product profile on some organizational units. \
            A group created without profileId takes the organization setting scim_default_profile_id \
            (UpdateOrganizationSettings); with neither, the create is refused. \
            Without unitScope and unitIds it grants the profile on all units",
        "attributes": [
            // Required as `active` is for users: always held, so a remove
            // only puts the default back; a create may leave them out.
            {
                "name": "profileId", "type": "string", "multiValued": false,
                "description": "The id of the profile the group grants (a profile of the organization); \
                    always held: a create without it takes scim_default_profile_id, and a remove puts that back",
                "required": true, "caseExact": false, "mutability": "readWrite",
                "returned": "default", "uniqueness": "none",
            },
            {
                "name": "unitScope", "type": "string", "multiValued": false,
                "description": "Where the profile applies: ALL_UNITS (default), UNITS (those of unitIds) or NO_UNIT; \
                    always held: a create without it takes ALL_UNITS (UNITS when unitIds are named), and a remove puts ALL_UNITS back",
                "required": true, "caseExact": true,
                "canonicalValues": ["ALL_UNITS", "UNITS", "NO_UNIT"],
                "mutability": "readWrite", "returned": "default", "uniqueness": "none",
            },
            {
                "name": "unitIds", "type": "string", "multiValued": true,
                "description": "The ids of the units the profile applies to; naming some makes unitScope UNITS",
                "required": false, "caseExact": false, "mutability": "readWrite",
                "returned": "default", "uniqueness": "none",
            },
        ],
        "meta": {
            "resourceType": "Schema",
            "location": format!("{base_url}/Schemas/{SCHEMA_ROSTER_GROUP}"),
        },
    })
}

/// A list answer of every item (discovery lists are small and unpaged).
pub fn list(items: Vec<Value>) -> Value {
    json!({
        "schemas": [SCHEMA_LIST],
        "totalResults": items.len(),
        "startIndex": 1,
        "itemsPerPage": items.len(),
        "Resources": items,
    })
}
