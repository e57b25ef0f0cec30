//! Request bodies checked against the OpenADR 3.1.0 schemas themselves (the served
//! document, [`super::document`]), before serde decodes them: every type, length, pattern,
//! enum, `required` and non-nullable member is refused exactly where the document says,
//! and the answer names the member at fault.
//!
//! The document is OpenAPI 3.0; its schemas become JSON Schema draft 4 by turning
//! `nullable: true` into a `null` alternative (the tests use the same conversion).

use super::error::OadrError;
use serde_json::{Value, json};
use std::sync::OnceLock;

/// The request schemas the API accepts.
#[derive(Debug, Clone, Copy)]
pub enum RequestSchema {
    Program,
    Event,
    Report,
    Subscription,
    Ven,
    Resource,
}

impl RequestSchema {
    fn name(self) -> &'static str {
        match self {
            RequestSchema::Program => "programRequest",
            RequestSchema::Event => "eventRequest",
            RequestSchema::Report => "reportRequest",
            RequestSchema::Subscription => "subscriptionRequest",
            RequestSchema::Ven => "venRequest",
            RequestSchema::Resource => "resourceRequest",
        }
    }
}

/// OpenAPI 3.0 `nullable` to JSON Schema.
pub fn denullable(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for (_, child) in map.iter_mut() {
                denullable(child);
            }
            if map.remove("nullable") == Some(Value::Bool(true)) {
                if let Some(Value::String(t)) = map.get("type").cloned() {
                    map.insert("type".into(), json!([t, "null"]));
                    if let Some(Value::Array(e)) = map.get_mut("enum") {
                        e.push(Value::Null);
                    }
                } else {
                    let inner = Value::Object(std::mem::take(map));
                    map.insert("anyOf".into(), json!([inner, {"type": "null"}]));
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(denullable),
        _ => {}
    }
}

struct Validators(Vec<(&'static str, jsonschema::Validator)>);

fn validators() -> &'static Validators {
    static V: OnceLock<Validators> = OnceLock::new();
    V.get_or_init(|| {
        let mut components = super::document()["components"].clone();
        denullable(&mut components);
        let all = [
            "programRequest",
            "eventRequest",
            "reportRequest",
            "subscriptionRequest",
            "BlVenRequest",
            "VenVenRequest",
            "BlResourceRequest",
            "VenResourceRequest",
        ];
        Validators(
            all.iter()
                .map(|name| {
                    let root = json!({
                        "$ref": format!("#/components/schemas/{name}"),
                        "components": components,
                    });
                    let v = jsonschema::options()
                        .with_draft(jsonschema::Draft::Draft4)
                        .should_validate_formats(true)
                        .build(&root)
                        .expect("the embedded OpenADR 3 schemas compile");
                    (*name, v)
                })
                .collect(),
        )
    })
}

/// Checks `body` against the request schema; 400 naming the first member at fault.
///
/// `venRequest` and `resourceRequest` are a oneOf told apart by `objectType`; the branch it
/// names is checked, so that errors point into that branch rather than at the oneOf.
pub fn check(schema: RequestSchema, body: &Value) -> Result<(), OadrError> {
    let branches: &[(&str, &str)] = match schema {
        RequestSchema::Ven => &[
            ("BL_VEN_REQUEST", "BlVenRequest"),
            ("VEN_VEN_REQUEST", "VenVenRequest"),
        ],
        RequestSchema::Resource => &[
            ("BL_RESOURCE_REQUEST", "BlResourceRequest"),
            ("VEN_RESOURCE_REQUEST", "VenResourceRequest"),
        ],
        _ => &[],
    };
    let name = if branches.is_empty() {
        schema.name()
    } else {
        let kind = body.get("objectType").and_then(Value::as_str);
        match branches.iter().find(|(k, _)| Some(*k) == kind) {
            Some((_, n)) => n,
            None => {
                let allowed: Vec<&str> = branches.iter().map(|(k, _)| *k).collect();
                return Err(OadrError::invalid(
                    "objectType",
                    format!("must be one of {}", allowed.join(", ")),
                ));
            }
        }
    };
    let v = &validators()
        .0
        .iter()
        .find(|(n, _)| *n == name)
        .expect("every request schema is built")
        .1;
    let Some(err) = v.iter_errors(body).next() else {
        return Ok(());
    };
    let mut field = pointer_to_field(&err.instance_path().to_string());
    if let jsonschema::error::ValidationErrorKind::Required { property } = err.kind()
        && let Some(p) = property.as_str()
    {
        if !field.is_empty() {
            field.push('.');
        }
        field.push_str(p);
    }
    Err(OadrError::invalid(
        if field.is_empty() {
            "body".into()
        } else {
            field
        },
        format!("does not match the {name} schema: {err}"),
    ))
}

/// `/intervals/0/payloads/1` -> `intervals[0].payloads[1]`.
fn pointer_to_field(pointer: &str) -> String {
    let mut out = String::new();
    for seg in pointer.split('/').filter(|s| !s.is_empty()) {
        if seg.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{seg}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&seg.replace("~1", "/").replace("~0", "~"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_what_the_schema_refuses() {
        let ok = json!({"clientName": "c", "objectOperations": []});
        check(RequestSchema::Subscription, &ok).unwrap();
        let mut bad = ok.clone();
        bad["programID"] = Value::Null;
        let e = check(RequestSchema::Subscription, &bad).unwrap_err();
        assert_eq!((e.status(), e.0.field.as_deref()), (400, Some("programID")));
        let e = check(
            RequestSchema::Event,
            &json!({"programID": "p", "intervals": [{"id": 0, "payloads": [{"type": "", "values": []}]}]}),
        )
        .unwrap_err();
        assert_eq!(e.0.field.as_deref(), Some("intervals[0].payloads[0].type"));
        // Nullable members accept null.
        check(
            RequestSchema::Program,
            &json!({"programName": "p", "targets": null}),
        )
        .unwrap();
        check(
            RequestSchema::Ven,
            &json!({"objectType": "VEN_VEN_REQUEST", "venName": "v"}),
        )
        .unwrap();
        assert!(
            check(
                RequestSchema::Ven,
                &json!({"objectType": "VEN", "venName": "v"})
            )
            .is_err()
        );
    }
}
