//! What this service provider does (RFC 7644 §4), advertised truthfully:
//! Users only (Groups come later), PATCH, filters, ETags, bulk; no
//! sorting, no password changes.

use serde_json::{json, Value};

use super::{
    bulk::{MAX_OPERATIONS, MAX_PAYLOAD_SIZE},
    MAX_RESULTS, SCHEMA_ENTERPRISE_USER, SCHEMA_LIST, SCHEMA_USER,
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
        "sort": { "supported": false },
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
    vec![json!({
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
    })]
}

pub fn schemas(base_url: &str) -> Vec<Value> {
    let string = |name: &str, description: &str, required: bool, uniqueness: &str| {
        json!({
            "name": name, "type": "string", "multiValued": false, "description": description,
            "required": required, "caseExact": false, "mutability": "readWrite",
            "returned": "default", "uniqueness": uniqueness,
        })
    };
    let multi_valued = |name: &str, description: &str, required: bool| {
        json!({
            "name": name, "type": "complex", "multiValued": true, "description": description,
            "required": required, "mutability": "readWrite", "returned": "default",
            "uniqueness": "none",
            "subAttributes": [
                string("value", "The value (Roster keeps one, the primary)", required, "none"),
                {
                    "name": "type", "type": "string", "multiValued": false,
                    "description": "Always `work`; values of other types are not kept",
                    "required": false, "caseExact": false, "canonicalValues": ["work"],
                    "mutability": "readWrite", "returned": "default", "uniqueness": "none",
                },
                {
                    "name": "primary", "type": "boolean", "multiValued": false,
                    "description": "Always true", "required": false,
                    "mutability": "readWrite", "returned": "default",
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
            multi_valued("emails", "The user's email (one, the primary)", true),
            multi_valued("phoneNumbers", "The user's phone number (one, the primary)", false),
            {
                "name": "active", "type": "boolean", "multiValued": false,
                "description": "Roster's admin state: ACTIVE (true) or INACTIVE (false)",
                "required": false, "mutability": "readWrite", "returned": "default",
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
    vec![user, enterprise]
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
