//! The OpenAPI 3.1 document, generated from the route table and the kinds' JSON schemas.

use flotilla_core::kinds::{KindRegistry, Scope};
use serde_json::{Map, Value, json};

use crate::routes::RouteDoc;

/// Moves schemars' `$defs` into `components.schemas` and points `$ref`s there.
fn hoist_defs(mut schema: Value, components: &mut Map<String, Value>) -> Value {
    if let Some(Value::Object(defs)) = schema.as_object_mut().and_then(|o| o.remove("$defs")) {
        for (name, def) in defs {
            let def = hoist_defs(def, components);
            components.insert(name, def);
        }
    }
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
    }
    rewrite_refs(&mut schema);
    schema
}

fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(reference)) = map.get_mut("$ref")
                && let Some(name) = reference.strip_prefix("#/$defs/")
            {
                *reference = format!("#/components/schemas/{name}");
            }
            map.values_mut().for_each(rewrite_refs);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

fn object_schema(kind: &str, scope: Scope, spec: Value) -> Value {
    let mut metadata_required = vec!["name"];
    if scope == Scope::Project {
        metadata_required.push("project");
    }
    json!({
        "type": "object",
        "required": ["apiVersion", "kind", "metadata"],
        "properties": {
            "apiVersion": {"type": "string", "const": flotilla_core::API_VERSION},
            "kind": {"type": "string", "const": kind},
            "metadata": {"allOf": [{"$ref": "#/components/schemas/ObjectMeta"}], "required": metadata_required},
            "spec": spec,
            "status": {"type": "object", "readOnly": true}
        }
    })
}

/// Builds the document.
pub fn document(routes: &[RouteDoc], kinds: &KindRegistry) -> Value {
    let mut components = Map::new();
    components.insert(
        "Error".into(),
        json!({"type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string", "description": "Machine-readable error code, e.g. Invalid, Conflict, Forbidden"},
            "message": {"type": "string"},
            "details": {"description": "For Invalid: a list of {path, message}; for Conflict: the versions"}}}),
    );
    components.insert(
        "ObjectMeta".into(),
        json!({"type": "object", "properties": {
            "name": {"type": "string", "maxLength": 63},
            "project": {"type": "string"},
            "uid": {"type": "string", "readOnly": true},
            "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            "annotations": {"type": "object", "additionalProperties": {"type": "string"}},
            "resourceVersion": {"type": "string"},
            "generation": {"type": "integer", "readOnly": true},
            "creationTimestamp": {"type": "string", "format": "date-time", "readOnly": true},
            "updateTimestamp": {"type": "string", "format": "date-time", "readOnly": true}}}),
    );
    components.insert(
        "LoginRequest".into(),
        json!({"type": "object", "required": ["username", "password"], "properties": {
            "username": {"type": "string"}, "password": {"type": "string", "format": "password"},
            "mode": {"type": "string", "enum": ["session", "token"]},
            "tokenName": {"type": "string"}, "ttlDays": {"type": "integer"}}}),
    );
    for info in kinds.iter() {
        let spec = hoist_defs(info.spec_schema.clone(), &mut components);
        components.insert(info.kind.to_string(), object_schema(info.kind, info.scope, spec));
    }
    let mut paths = Map::new();
    for route in routes {
        let mut parameters: Vec<Value> = route
            .path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')))
            .map(|name| json!({"name": name, "in": "path", "required": true, "schema": {"type": "string"}}))
            .collect();
        parameters.extend(
            route.query.iter().map(|(name, description)| json!({"name": name, "in": "query", "description": description, "schema": {"type": "string"}})),
        );
        let success = match &route.response {
            Some(schema) => json!({"description": "success", "content": {"application/json": {"schema": schema}}}),
            None => json!({"description": "success"}),
        };
        let error = json!({"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}});
        let mut operation = json!({
            "operationId": route.operation_id,
            "summary": route.summary,
            "tags": [route.tag],
            "parameters": parameters,
            "responses": { route.status.to_string(): success, "default": error },
        });
        if let Some(schema) = &route.request {
            operation["requestBody"] = json!({"required": true, "content": {
                "application/json": {"schema": schema}, "application/yaml": {"schema": schema}}});
        }
        if !route.authenticated {
            operation["security"] = json!([]);
        }
        let entry = paths.entry(route.path.clone()).or_insert_with(|| json!({}));
        entry[route.method] = operation;
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Flotilla API", "version": env!("CARGO_PKG_VERSION"),
                 "description": "The control plane of the Flotilla container platform."},
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "token": {"type": "http", "scheme": "bearer", "description": "API token (flt_…)"},
                "session": {"type": "apiKey", "in": "cookie", "name": crate::auth::SESSION_COOKIE}
            }
        },
        "security": [{"token": []}, {"session": []}]
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ref_resolves_inside_the_document() {
        let kinds = KindRegistry::builtin();
        let routes = crate::routes::routes(&kinds);
        let doc = document(&routes.docs, &kinds);
        let text = doc.to_string();
        assert!(!text.contains("#/$defs/"), "schemars refs were not rewritten");
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let mut refs = Vec::new();
        collect_refs(&doc, &mut refs);
        for reference in refs {
            let name = reference.strip_prefix("#/components/schemas/").expect("component ref");
            assert!(schemas.contains_key(name), "dangling ref {reference}");
        }
        assert!(doc["paths"]["/api/v1/projects/{project}/environments/{name}"]["put"].is_object());
        assert!(doc["paths"]["/api/v1/workspaces"]["get"].is_object());
    }

    fn collect_refs(value: &Value, refs: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                if let Some(Value::String(r)) = map.get("$ref") {
                    refs.push(r.clone());
                }
                map.values().for_each(|v| collect_refs(v, refs));
            }
            Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
            _ => {}
        }
    }
}
