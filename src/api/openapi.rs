//! The OpenAPI 3.1 document of the operator API, built from the same calls that register
//! the routes, so the document describes exactly what the server serves.

use serde_json::{Map, Value, json};
use utoipa::openapi::RefOr;
use utoipa::openapi::schema::Schema;

/// Accumulates paths and component schemas while routes are registered.
#[derive(Debug, Default)]
pub struct DocBuilder {
    paths: Map<String, Value>,
    schemas: Map<String, Value>,
}

/// One operation's description.
pub struct Operation<'a> {
    pub summary: &'a str,
    pub tag: &'a str,
    pub parameters: Vec<Value>,
    /// Content type and schema of the request body, if any.
    pub request: Option<(&'a str, Value)>,
    /// Success status, description, and response content (type, schema).
    pub success: (u16, &'a str, Option<(&'a str, Value)>),
    /// Error statuses this operation can return (besides 401 and 500).
    pub errors: &'a [u16],
    /// False for the few unauthenticated endpoints.
    pub authenticated: bool,
}

impl DocBuilder {
    /// Registers a component schema and everything it refers to; returns a `$ref` to it.
    pub fn schema<T: utoipa::ToSchema>(&mut self) -> Value {
        let mut nested: Vec<(String, RefOr<Schema>)> = Vec::new();
        T::schemas(&mut nested);
        for (name, s) in nested {
            self.schemas
                .insert(name, serde_json::to_value(s).unwrap_or(Value::Null));
        }
        let name = T::name().to_string();
        self.schemas.insert(
            name.clone(),
            serde_json::to_value(T::schema()).unwrap_or(Value::Null),
        );
        json!({ "$ref": format!("#/components/schemas/{name}") })
    }

    /// Adds one operation.
    pub fn add(&mut self, method: &str, path: &str, op: Operation<'_>) {
        let mut responses = Map::new();
        let (code, desc, content) = op.success;
        let mut ok = json!({ "description": desc });
        if let Some((ct, schema)) = content {
            ok["content"] = json!({ ct: { "schema": schema } });
        }
        responses.insert(code.to_string(), ok);
        let mut errors: Vec<u16> = op.errors.to_vec();
        if op.authenticated {
            errors.extend([401, 403]);
        }
        errors.push(500);
        for e in errors {
            responses.insert(
                e.to_string(),
                json!({ "$ref": format!("#/components/responses/Problem{e}") }),
            );
        }
        let mut operation = json!({
            "summary": op.summary,
            "tags": [op.tag],
            "operationId": format!("{}_{}", method, path.trim_start_matches('/').replace(['/', '{', '}', '-'], "_")),
            "parameters": op.parameters,
            "responses": responses,
        });
        if let Some((ct, schema)) = op.request {
            operation["requestBody"] =
                json!({ "required": true, "content": { ct: { "schema": schema } } });
        }
        if !op.authenticated {
            operation["security"] = json!([]);
        }
        let entry = self
            .paths
            .entry(path.to_string())
            .or_insert_with(|| json!({}));
        entry[method] = operation;
    }

    /// The finished document.
    pub fn finish(mut self) -> Value {
        let problem = self.schema::<super::problem::Problem>();
        let mut responses = Map::new();
        for (code, why) in [
            (400, "Malformed request"),
            (401, "Missing or unknown bearer token"),
            (403, "The token's role may not do this"),
            (404, "No such object"),
            (409, "Conflicts with an existing object, or still in use"),
            (413, "Body larger than the configured limit"),
            (415, "Unsupported content type"),
            (422, "Well-formed but invalid; `field` names the culprit"),
            (500, "Internal error; quote the correlation id"),
        ] {
            responses.insert(
                format!("Problem{code}"),
                json!({ "description": why, "content": { "application/problem+json": { "schema": problem } } }),
            );
        }
        json!({
            "openapi": "3.1.0",
            "info": {
                "title": "Switchyard operator API",
                "version": env!("CARGO_PKG_VERSION"),
                "description": "Asset registry administration: accounts, sites, meters, DERs, certificate identities, programs, enrolments and groups."
            },
            "paths": self.paths,
            "components": {
                "schemas": self.schemas,
                "responses": responses,
                "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } }
            },
            "security": [ { "bearer": [] } ]
        })
    }
}

/// A query parameter description.
pub fn query_param(name: &str, description: &str, schema: Value) -> Value {
    json!({ "name": name, "in": "query", "required": false, "description": description, "schema": schema })
}

/// A path parameter description.
pub fn path_param(name: &str, description: &str) -> Value {
    json!({ "name": name, "in": "path", "required": true, "description": description, "schema": { "type": "string" } })
}
