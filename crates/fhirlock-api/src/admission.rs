//! Admission without an apiserver: the CRD's own schema and CEL rules, evaluated locally.
//!
//! `fhirlock plan -f` and `fhirlock audit -f` run without a cluster, so they check a manifest here
//! exactly as `kubectl apply` would: structural checks (unknown fields, required fields, enums,
//! bounds) in the apiserver's wording, then the CEL rules through kube's evaluator, on the same
//! generated schema that `crds/` holds. The test suite runs the invalid corpus through both this
//! and the real apiserver and requires the same verdicts.

use kube::core::cel::Validator;
use serde_json::{Map, Value};

/// The `openAPIV3Schema` of the served version.
pub fn schema() -> Value {
    let crd = crate::crds().remove(0);
    let version = crd.spec.versions.into_iter().next().expect("one version");
    let schema = version
        .schema
        .and_then(|s| s.open_api_v3_schema)
        .expect("a schema");
    serde_json::to_value(schema).expect("a schema serializes")
}

/// Every reason the apiserver would reject `object` (as a create, or as an update from `old`),
/// each as `<field path>: <message>`. Empty when it would be admitted.
pub fn validate(object: &Value, old: Option<&Value>) -> Vec<String> {
    let schema = schema();
    let mut errors = Vec::new();
    structural(&schema, object, "", &mut errors);
    if !errors.is_empty() {
        // Like the apiserver: CEL runs only on structurally valid objects.
        return errors;
    }
    if let Err(e) = Validator::new().validate(&schema, object, old) {
        errors.extend(e.into_vec().into_iter().map(|e| {
            if e.field_path.is_empty() {
                e.message
            } else {
                format!("{}: Invalid value: {}", e.field_path, e.message)
            }
        }));
    }
    errors
}

/// The apiserver's structural checks, in its wording: null, type, enum, then the bounds and
/// children for the value's kind.
fn structural(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
            errors.push(format!(
                "{}: Invalid value: \"null\": must not be null",
                at(path)
            ));
        }
        return;
    }
    let ty = schema.get("type").and_then(Value::as_str);
    let type_ok = match ty {
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        Some("string") => value.is_string(),
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("boolean") => value.is_boolean(),
        _ => true,
    };
    if !type_ok {
        errors.push(format!(
            "{}: Invalid value: \"{}\": {} in body must be of type {}",
            at(path),
            kind(value),
            at(path),
            ty.unwrap_or("")
        ));
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let list: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
        errors.push(format!(
            "{}: Unsupported value: {}: supported values: {}",
            at(path),
            value,
            list.join(", ")
        ));
    }
    match value {
        Value::String(s) => string_bounds(schema, s, path, errors),
        Value::Number(n) => number_bounds(schema, n.as_f64().unwrap_or_default(), path, errors),
        Value::Array(items) => array(schema, items, path, errors),
        Value::Object(map) => object(schema, map, path, errors),
        _ => {}
    }
}

fn bound(schema: &Value, key: &str) -> Option<f64> {
    schema.get(key).and_then(Value::as_f64)
}

fn string_bounds(schema: &Value, s: &str, path: &str, errors: &mut Vec<String>) {
    if let Some(max) = bound(schema, "maxLength")
        && s.chars().count() as f64 > max
    {
        errors.push(format!(
            "{}: Too long: may not be more than {max} bytes",
            at(path)
        ));
    }
    if let Some(min) = bound(schema, "minLength")
        && (s.chars().count() as f64) < min
    {
        errors.push(format!(
            "{}: Invalid value: \"{s}\": {} in body should be at least {min} chars long",
            at(path),
            at(path)
        ));
    }
}

fn number_bounds(schema: &Value, n: f64, path: &str, errors: &mut Vec<String>) {
    if let Some(max) = bound(schema, "maximum")
        && n > max
    {
        errors.push(format!(
            "{}: Invalid value: {n}: {} in body should be less than or equal to {max}",
            at(path),
            at(path)
        ));
    }
    if let Some(min) = bound(schema, "minimum")
        && n < min
    {
        errors.push(format!(
            "{}: Invalid value: {n}: {} in body should be greater than or equal to {min}",
            at(path),
            at(path)
        ));
    }
}

fn array(schema: &Value, items: &[Value], path: &str, errors: &mut Vec<String>) {
    if let Some(max) = bound(schema, "maxItems")
        && items.len() as f64 > max
    {
        errors.push(format!(
            "{}: Too many: {}: must have at most {max} items",
            at(path),
            items.len()
        ));
    }
    if let Some(item_schema) = schema.get("items") {
        for (i, item) in items.iter().enumerate() {
            structural(item_schema, item, &format!("{path}[{i}]"), errors);
        }
    }
}

/// Required fields first, then each field against its schema; a field the schema does not name
/// is unknown unless the object preserves unknown fields.
fn object(schema: &Value, map: &Map<String, Value>, path: &str, errors: &mut Vec<String>) {
    let props = schema.get("properties").and_then(Value::as_object);
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    // apiVersion, kind and metadata are the apiserver's own, not the CRD schema's.
    let builtin = |k: &str| path.is_empty() && matches!(k, "apiVersion" | "kind" | "metadata");
    for req in schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
    {
        if !map.contains_key(req) {
            errors.push(format!("{}: Required value", join(path, req)));
        }
    }
    for (k, v) in map {
        let child = join(path, k);
        match props.and_then(|p| p.get(k)) {
            Some(s) => structural(s, v, &child, errors),
            None if props.is_some() && !preserve && !builtin(k) => {
                errors.push(format!("unknown field \"{child}\""));
            }
            None => {}
        }
    }
}

/// The path as the apiserver prints it; the object itself is `<root>`.
fn at(path: &str) -> String {
    if path.is_empty() {
        "<root>".to_owned()
    } else {
        path.to_owned()
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Object(_) => "object",
        Value::Array(_) => "array",
        Value::String(_) => "string",
        Value::Number(_) => "number",
        Value::Bool(_) => "boolean",
        Value::Null => "null",
    }
}
