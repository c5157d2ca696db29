//! Rules on a write body that hold before any resource logic: ARM's tag limits, on every resource
//! type, and the closed value sets (enums) of the fields the emulator serves, taken from
//! Microsoft's generated models. Pure functions of the resource type and the body.
//!
//! Read-only fields are *not* refused here: ARM's RPC has resource providers ignore read-only
//! properties in a PUT body, so the emulator drops them (`enrich::strip_read_only`); the body
//! checker in `tests/emulator-conformance/check_bodies.py` still flags a client that sends them.

mod enums;

use serde_json::{Value, json};

use crate::error::ArmError;

pub use enums::{ENUMS, EnumRule};

/// Characters a tag name may not contain. Source: Microsoft Learn, "Use tags to organize your
/// Azure resources and management hierarchy", Limitations (`articles/azure-resource-manager/
/// management/tag-resources.md`): "Tag names can't contain these characters: `<`, `>`, `%`, `&`,
/// `\`, `?`, `/`". ARM's message also names control characters [O: the same doc's CLI example].
pub const TAG_NAME_RESERVED: &[char] = &['<', '>', '%', '&', '\\', '?', '/'];
/// Same source: "a maximum of 50 tag name/value pairs".
pub const MAX_TAGS: usize = 50;
/// Same source: "The tag name is limited to 512 characters, and the tag value is limited to 256".
pub const MAX_TAG_NAME: usize = 512;
pub const MAX_TAG_VALUE: usize = 256;

/// ARM's tag rules on a PUT or PATCH body (checked by ARM itself, so for every resource type).
/// Codes and messages: `InvalidTagNameCharacters` [O: Microsoft's docs quote it from the CLI];
/// `InvalidTagName` / `InvalidTagValueLength` for the lengths [O: the same words in Microsoft's
/// `Az.Migrate` PowerShell module, which mirrors ARM's check]; `TooManyTags` is the emulator's
/// name [U].
pub fn tags(body: &Value) -> Result<(), ArmError> {
    let Some(tags) = body.get("tags").and_then(Value::as_object) else {
        return Ok(());
    };
    let bad: Vec<&str> = tags
        .keys()
        .filter(|k| {
            k.chars()
                .any(|c| TAG_NAME_RESERVED.contains(&c) || c.is_control())
        })
        .map(String::as_str)
        .collect();
    if !bad.is_empty() {
        return Err(ArmError::bad_request(
            "InvalidTagNameCharacters",
            format!(
                "The tag names '{}' have reserved characters '<,>,%,&,\\,?,/' or control characters.",
                bad.join(", ")
            ),
        ));
    }
    if tags.len() > MAX_TAGS {
        return Err(ArmError::bad_request(
            "TooManyTags",
            format!(
                "The resource has {} tags; at most {MAX_TAGS} tag name/value pairs are allowed.",
                tags.len()
            ),
        ));
    }
    if let Some(long) = tags.keys().find(|k| k.chars().count() > MAX_TAG_NAME) {
        return Err(ArmError::bad_request(
            "InvalidTagName",
            format!(
                "Tag key too large. Following tag name '{long}' exceeded the maximum length. Maximum allowed length for tag name - '{MAX_TAG_NAME}' characters."
            ),
        ));
    }
    let long_value = tags
        .values()
        .filter_map(Value::as_str)
        .find(|v| v.chars().count() > MAX_TAG_VALUE);
    if let Some(v) = long_value {
        return Err(ArmError::bad_request(
            "InvalidTagValueLength",
            format!(
                "Tag value too large. Following tag value '{v}' exceeded the maximum length. Maximum allowed length for tag value - '{MAX_TAG_VALUE}' characters."
            ),
        ));
    }
    Ok(())
}

/// Fields a present parent object must carry: `required` in the SDK models' `_validation`
/// (azure-mgmt-cosmosdb 9.8.0 `ConsistencyPolicy`, azure-mgmt-network 30.0.0
/// `ApplicationGatewayAutoscaleConfiguration`, `ApplicationGatewayConnectionDraining`). The
/// answer's code and wording are the emulator's [U].
pub const REQUIRED: &[(&str, &str, &str)] = &[
    (
        "Microsoft.DocumentDB/databaseAccounts",
        "properties.consistencyPolicy",
        "defaultConsistencyLevel",
    ),
    (
        "Microsoft.Network/applicationGateways",
        "properties.autoscaleConfiguration",
        "minCapacity",
    ),
    (
        "Microsoft.Network/applicationGateways",
        "properties.backendHttpSettingsCollection[].properties.connectionDraining",
        "enabled",
    ),
    (
        "Microsoft.Network/applicationGateways",
        "properties.backendHttpSettingsCollection[].properties.connectionDraining",
        "drainTimeoutInSec",
    ),
];

/// The body rules of one PUT or PATCH, before any resource logic. A Network or resource-group
/// PATCH is UpdateTags: only its tags are read (other fields are ignored, as ARM does).
pub fn check(rtype: &str, method: &str, body: &Value) -> Result<(), ArmError> {
    tags(body)?;
    let tags_only = method == "PATCH"
        && (rtype.eq_ignore_ascii_case("resourceGroups")
            || rtype.starts_with("Microsoft.Network/"));
    if tags_only {
        return Ok(());
    }
    enums(rtype, body)?;
    required(rtype, body)
}

fn required(rtype: &str, body: &Value) -> Result<(), ArmError> {
    for (t, parent, field) in REQUIRED.iter().filter(|r| r.0.eq_ignore_ascii_case(rtype)) {
        let mut found = vec![];
        values_at(body, parent, &mut found);
        for (at, v) in found {
            let present = v.as_object().is_some_and(|o| {
                o.iter()
                    .any(|(k, x)| k.eq_ignore_ascii_case(field) && !x.is_null())
            });
            if v.is_object() && !present {
                let code = if t.starts_with("Microsoft.Network/") {
                    "InvalidRequestFormat"
                } else {
                    "BadRequest"
                };
                return Err(ArmError::bad_request(
                    code,
                    format!("[emulator] The property '{at}.{field}' is required."),
                ));
            }
        }
    }
    Ok(())
}

/// Every value of `body` at `path` (dot-separated keys, `[]` for each element of an array;
/// keys match case-insensitively, as the resource providers' deserialisers do).
fn values_at<'a>(body: &'a Value, path: &str, out: &mut Vec<(String, &'a Value)>) {
    fn walk<'a>(v: &'a Value, parts: &[&str], at: String, out: &mut Vec<(String, &'a Value)>) {
        let Some((first, rest)) = parts.split_first() else {
            out.push((at, v));
            return;
        };
        let (key, each) = match first.strip_suffix("[]") {
            Some(k) => (k, true),
            None => (*first, false),
        };
        let Some((name, child)) = v
            .as_object()
            .and_then(|o| o.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)))
        else {
            return;
        };
        let here = if at.is_empty() {
            name.clone()
        } else {
            format!("{at}.{name}")
        };
        if each {
            for (i, x) in child.as_array().into_iter().flatten().enumerate() {
                walk(x, rest, format!("{here}[{i}]"), out);
            }
        } else {
            walk(child, rest, here, out);
        }
    }
    let parts: Vec<&str> = path.split('.').collect();
    walk(body, &parts, String::new(), out);
}

/// The closed value sets of `rtype`'s fields (`ENUMS`): a string outside its set is refused,
/// comparing without case. `null` (unset) is fine.
pub fn enums(rtype: &str, body: &Value) -> Result<(), ArmError> {
    for rule in ENUMS.iter().filter(|r| r.rtype.eq_ignore_ascii_case(rtype)) {
        let mut found = vec![];
        values_at(body, rule.path, &mut found);
        for (at, v) in found {
            let ok = match v {
                Value::Null => true,
                Value::String(s) => rule.values.iter().any(|a| a.eq_ignore_ascii_case(s)),
                _ => false,
            };
            if !ok {
                return Err(enum_error(rule, &at, v));
            }
        }
    }
    Ok(())
}

/// Network answers a value its contract cannot hold with `InvalidRequestFormat` and an
/// `InvalidJson` detail naming the value, the type and the path [O: Azure/azure-cli#1619,
/// #2122]. Web and Cosmos DB refuse such bodies with 400 too; their code and wording are the
/// emulator's [U].
fn enum_error(rule: &EnumRule, at: &str, v: &Value) -> ArmError {
    let shown = v
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| v.to_string());
    if rule.rtype.starts_with("Microsoft.Network/") {
        let mut e = ArmError::bad_request("InvalidRequestFormat", "Cannot parse the request.");
        e.details = vec![json!({"code": "InvalidJson", "message": format!(
            "Error converting value \"{shown}\" to type '{}'. Path '{at}'.", rule.model
        )})];
        return e;
    }
    ArmError::bad_request(
        "BadRequest",
        format!(
            "[emulator] The value '{shown}' of '{at}' is not valid; allowed values: {}.",
            rule.values.join(", ")
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tag_rules() {
        let long = "x".repeat(513);
        let many: serde_json::Map<String, Value> =
            (0..51).map(|i| (format!("t{i}"), json!("v"))).collect();
        let cases: Vec<(Value, Option<&str>)> = vec![
            (json!({}), None),
            (
                json!({"tags": {"fhirlock-owner": "ns/name", "a b": ""}}),
                None,
            ),
            (
                json!({"tags": {"fhirlock.io/owner": "x"}}),
                Some("InvalidTagNameCharacters"),
            ),
            (
                json!({"tags": {"a<b": "x"}}),
                Some("InvalidTagNameCharacters"),
            ),
            (
                json!({"tags": {"a%b": "x"}}),
                Some("InvalidTagNameCharacters"),
            ),
            (
                json!({"tags": {"a\\b": "x"}}),
                Some("InvalidTagNameCharacters"),
            ),
            (
                json!({"tags": {"a?b": "x"}}),
                Some("InvalidTagNameCharacters"),
            ),
            (
                json!({"tags": {"a&b": "x"}}),
                Some("InvalidTagNameCharacters"),
            ),
            (
                json!({"tags": {"a>b": "x"}}),
                Some("InvalidTagNameCharacters"),
            ),
            (
                json!({"tags": {"a\u{7}b": "x"}}),
                Some("InvalidTagNameCharacters"),
            ),
            (json!({"tags": Value::Object(many)}), Some("TooManyTags")),
            (json!({"tags": {long.clone(): "x"}}), Some("InvalidTagName")),
            (
                json!({"tags": {"k": "y".repeat(257)}}),
                Some("InvalidTagValueLength"),
            ),
            (
                json!({"tags": {"k": "y".repeat(256), "x".repeat(512): ""}}),
                None,
            ),
        ];
        for (body, want) in cases {
            let got = tags(&body).err().map(|e| e.code);
            assert_eq!(got.as_deref(), want, "{body}");
        }
    }

    #[test]
    fn required_fields_of_present_parents_and_tags_only_patches() {
        let cosmos = "Microsoft.DocumentDB/databaseAccounts";
        let agw = crate::validate::NET_AGW;
        assert!(check(cosmos, "PUT", &json!({"properties": {}})).is_ok());
        let no_level = json!({"properties": {"consistencyPolicy": {"maxIntervalInSeconds": 5}}});
        assert_eq!(
            check(cosmos, "PATCH", &no_level).unwrap_err().code,
            "BadRequest"
        );
        let drain = json!({"properties": {"backendHttpSettingsCollection": [
            {"properties": {"connectionDraining": {"enabled": true, "drainTimeoutInSec": 5}}},
            {"properties": {"connectionDraining": {"enabled": true}}}]}});
        let e = check(agw, "PUT", &drain).unwrap_err();
        assert!(
            e.message.contains("backendHttpSettingsCollection[1]"),
            "{}",
            e.message
        );
        // UpdateTags reads only tags: a bad enum elsewhere is ignored, a bad tag name is not.
        let patch = json!({"properties": {"sku": {"name": "Nope"}}});
        assert!(check(agw, "PATCH", &patch).is_ok());
        assert!(check(agw, "PUT", &patch).is_err());
        let bad_tag = json!({"tags": {"fhirlock.io/tls": "x"}});
        assert_eq!(
            check(agw, "PATCH", &bad_tag).unwrap_err().code,
            "InvalidTagNameCharacters"
        );
        assert!(check("resourceGroups", "PUT", &bad_tag).is_err());
    }

    #[test]
    fn paths_walk_arrays_and_ignore_key_case() {
        let body = json!({"Properties": {"frontendIPConfigurations": [
            {"properties": {"privateIPAllocationMethod": "Static"}},
            {"properties": {"privateIPAllocationMethod": "Sometimes"}}]}});
        let mut found = vec![];
        values_at(
            &body,
            "properties.frontendIPConfigurations[].properties.privateIPAllocationMethod",
            &mut found,
        );
        let at: Vec<&str> = found.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(
            at,
            vec![
                "Properties.frontendIPConfigurations[0].properties.privateIPAllocationMethod",
                "Properties.frontendIPConfigurations[1].properties.privateIPAllocationMethod"
            ]
        );
    }

    #[test]
    fn enum_values_compare_without_case_and_name_the_path() {
        let agw = crate::validate::NET_AGW;
        let ok = json!({"properties": {"sku": {"name": "standard_v2", "tier": "Standard_v2"}}});
        assert!(enums(agw, &ok).is_ok());
        let bad = json!({"properties": {"sku": {"name": "Standard_v3"}}});
        let e = enums(agw, &bad).unwrap_err();
        assert_eq!((e.status, e.code.as_str()), (400, "InvalidRequestFormat"));
        let detail = e.details[0]["message"].as_str().unwrap_or("");
        assert!(detail.contains("properties.sku.name"), "{detail}");
        let web = json!({"properties": {"ftpsState": "Sometimes"}});
        let e = enums(crate::validate::WEB_CONFIG, &web).unwrap_err();
        assert_eq!(e.code, "BadRequest");
        assert!(
            enums(
                crate::validate::WEB_CONFIG,
                &json!({"properties": {"ftpsState": null}})
            )
            .is_ok()
        );
        assert!(
            enums(
                crate::validate::WEB_CONFIG,
                &json!({"properties": {"ftpsState": 3}})
            )
            .is_err()
        );
    }
}
