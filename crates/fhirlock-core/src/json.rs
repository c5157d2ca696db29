//! Field-level JSON diffs, used for drift (what differs) and for plan steps (what changes).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One field that differs: `path` is dotted with `[i]` for array items.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FieldChange {
    pub path: String,
    pub from: Option<Value>,
    pub to: Option<Value>,
}

impl std::fmt::Display for FieldChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |v: &Option<Value>| v.as_ref().map_or("(absent)".to_owned(), |v| compact(v, 80));
        write!(
            f,
            "{}: {} -> {}",
            self.path,
            show(&self.from),
            show(&self.to)
        )
    }
}

/// Single-line JSON, cut to `max` characters.
pub fn compact(v: &Value, max: usize) -> String {
    let s = v.to_string();
    if s.chars().count() <= max {
        s
    } else {
        format!("{}…", s.chars().take(max).collect::<String>())
    }
}

/// The changes that would turn `old` into `new`, for every field `new` sets. Fields only in
/// `old` are not reported: a desired view names only what fhirlock manages. Arrays are compared
/// whole (ARM replaces arrays whole), objects field by field.
pub fn diff(path: &str, old: Option<&Value>, new: &Value) -> Vec<FieldChange> {
    match (old, new) {
        (Some(Value::Object(o)), Value::Object(n)) => {
            let mut out = Vec::new();
            for (k, nv) in n {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                out.extend(diff(&p, o.get(k), nv));
            }
            out
        }
        (Some(o), n) if o == n => Vec::new(),
        (Some(Value::Null), Value::Null) | (None, Value::Null) => Vec::new(),
        (o, n) => vec![FieldChange {
            path: path.to_owned(),
            from: o.cloned(),
            to: Some(n.clone()),
        }],
    }
}

/// `value` at a dotted path of object keys.
pub fn at<'a>(value: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(value, |v, k| v.get(k))
}

/// Sets `value` at a dotted path, creating objects on the way.
pub fn set(target: &mut Value, path: &str, value: Value) {
    let mut cur = target;
    let keys: Vec<&str> = path.split('.').collect();
    for k in &keys[..keys.len() - 1] {
        if !cur.get(*k).is_some_and(Value::is_object) {
            cur[*k] = Value::Object(Default::default());
        }
        cur = cur.get_mut(*k).expect("just made");
    }
    cur[keys[keys.len() - 1]] = value;
}

/// Deep-merges `patch` into `target` with ARM PATCH semantics: objects merge, everything else
/// (arrays included) replaces.
pub fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            for (k, v) in p {
                match t.get_mut(k) {
                    Some(tv) if tv.is_object() && v.is_object() => merge(tv, v),
                    _ => {
                        t.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        (t, p) => *t = p.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn diff_reports_only_what_the_desired_view_names() {
        let old = json!({"a": 1, "b": {"c": [1, 2], "d": "x"}, "keep": true});
        let new = json!({"a": 1, "b": {"c": [1], "e": "y"}});
        let d = diff("", Some(&old), &new);
        assert_eq!(
            d,
            vec![
                FieldChange {
                    path: "b.c".into(),
                    from: Some(json!([1, 2])),
                    to: Some(json!([1]))
                },
                FieldChange {
                    path: "b.e".into(),
                    from: None,
                    to: Some(json!("y"))
                },
            ]
        );
        assert!(diff("", Some(&old), &json!({"a": 1})).is_empty());
    }

    #[test]
    fn merge_replaces_arrays_and_merges_objects() {
        let mut t = json!({"p": {"a": [1, 2], "b": 1, "z": {"k": 1}}});
        merge(&mut t, &json!({"p": {"a": [3], "z": {"j": 2}}}));
        assert_eq!(t, json!({"p": {"a": [3], "b": 1, "z": {"k": 1, "j": 2}}}));
    }
}
