//! The test corpus shared by the unit tests and the apiserver tests (`tests/fixtures/`), so both
//! judge exactly the same manifests.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// `<repo>/tests/fixtures`.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures")
}

/// `<repo>/examples`.
pub fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// One manifest that must be rejected, and the message that must say why.
pub struct Invalid {
    pub file: PathBuf,
    pub object: Value,
    pub expect: String,
}

/// Every `tests/fixtures/invalid/*.yaml`, sorted; each names its message in a `# expect:` line.
pub fn invalid() -> Vec<Invalid> {
    let mut files: Vec<_> = std::fs::read_dir(dir().join("invalid"))
        .expect("tests/fixtures/invalid exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|file| {
            let text = std::fs::read_to_string(&file).expect("readable");
            let expect = text
                .lines()
                .find_map(|l| l.strip_prefix("# expect: "))
                .unwrap_or_else(|| panic!("{} has no '# expect:' line", file.display()))
                .to_owned();
            let object = serde_yaml::from_str(&text).expect("valid YAML");
            Invalid {
                file,
                object,
                expect,
            }
        })
        .collect()
}

/// Every SecuredFhirEndpoint manifest under `examples/` (other files there, such as emulator
/// configuration, are not Kubernetes objects).
pub fn examples() -> Vec<(PathBuf, Value)> {
    let mut out = Vec::new();
    let mut files: Vec<_> = std::fs::read_dir(examples_dir())
        .expect("examples/ exists")
        .map(|e| e.expect("readable").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("readable");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let v: Value = serde::Deserialize::deserialize(doc).expect("valid YAML");
            if v.get("kind").and_then(Value::as_str) == Some("SecuredFhirEndpoint") {
                out.push((file.clone(), v));
            }
        }
    }
    out
}

/// One field update, read from `immutable.yaml` or `mutable.yaml`.
pub struct Update {
    pub field: String,
    pub value: Value,
    pub expect: Option<String>,
}

pub fn updates(file: &str) -> Vec<Update> {
    let text = std::fs::read_to_string(dir().join(file)).expect("readable");
    let rows: Vec<Value> = serde_yaml::from_str(&text).expect("valid YAML");
    rows.into_iter()
        .map(|r| Update {
            field: r["field"].as_str().expect("field").to_owned(),
            value: r["value"].clone(),
            expect: r.get("expect").and_then(Value::as_str).map(str::to_owned),
        })
        .collect()
}

/// `object` with the dotted `field` set to `value`.
pub fn with_field(object: &Value, field: &str, value: Value) -> Value {
    let mut out = object.clone();
    let mut cur = &mut out;
    let parts: Vec<_> = field.split('.').collect();
    for p in &parts[..parts.len() - 1] {
        cur = cur
            .get_mut(*p)
            .unwrap_or_else(|| panic!("no {p} in {field}"));
    }
    cur[parts[parts.len() - 1]] = value;
    out
}

/// The main example, `examples/fhir-endpoint.yaml`.
pub fn base_example() -> Value {
    let text =
        std::fs::read_to_string(examples_dir().join("fhir-endpoint.yaml")).expect("readable");
    serde_yaml::from_str(&text).expect("valid YAML")
}
