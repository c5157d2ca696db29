//! The request log (`/_emulator/requests`): what is recorded, what is redacted, what never is.

mod common;

use arm_emulator::config;
use arm_emulator::engine::Request;
use common::estate::*;
use common::*;
use serde_json::{Value, json};

fn log(h: &mut H, query: &str) -> Value {
    h.raw(Request::new("GET", &format!("/_emulator/requests{query}")))
        .json_body()
}

#[test]
fn records_arm_requests_with_principal_api_version_status_and_write_bodies() {
    let mut h = H::new();
    h.raw(Request::new("DELETE", "/_emulator/requests"));
    h.call("GET", &rg("fhir"), RG_API, None);
    let tags = json!({"location": "uksouth", "tags": {"env": "dev"}});
    h.ok("PUT", &rg("fhir"), RG_API, Some(tags.clone()));
    h.call("GET", &site_id("missing"), WEB, None);
    let j = log(&mut h, "");
    let reqs = j["requests"].as_array().unwrap();
    assert_eq!(reqs.len(), 3, "{j}");
    assert_eq!(reqs[0]["method"], "GET");
    assert!(reqs[0].get("body").is_none(), "no body recorded for reads");
    assert_eq!(reqs[1]["method"], "PUT");
    assert_eq!(reqs[1]["path"], rg("fhir"));
    assert_eq!(reqs[1]["resourceType"], "resourceGroups");
    assert_eq!(reqs[1]["apiVersion"], RG_API);
    assert_eq!(reqs[1]["principal"], config::DEV_CLIENT_OBJECT_ID);
    assert_eq!(reqs[1]["status"], 200);
    assert_eq!(reqs[1]["body"], tags);
    assert_eq!(reqs[2]["status"], 404);
    assert!(reqs[1]["seq"].as_u64() > reqs[0]["seq"].as_u64());
    let writes = log(&mut h, "?writesOnly=true");
    assert_eq!(writes["requests"].as_array().map(Vec::len), Some(1));
    assert_eq!(j["capacity"], 10_000);
    assert_eq!(j["dropped"], 0);
}

#[test]
fn control_and_token_requests_are_never_recorded_and_clear_empties_the_log() {
    let mut h = H::new();
    h.raw(Request::new("POST", "/_emulator/requests/reset"));
    h.raw(Request::new("GET", "/_emulator/stats"));
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}&scope=https://management.azure.com/.default",
        config::DEV_CLIENT_ID,
        config::DEV_CLIENT_SECRET
    );
    let mut tok = Request::new(
        "POST",
        &format!("/{}/oauth2/v2.0/token", config::DEV_TENANT),
    );
    tok.body = form.into_bytes();
    assert_eq!(h.raw(tok).status, 200);
    assert_eq!(log(&mut h, "")["requests"], json!([]));
    h.call("GET", &rg("fhir"), RG_API, None);
    assert_eq!(
        log(&mut h, "")["requests"].as_array().map(Vec::len),
        Some(1)
    );
    h.raw(Request::new("DELETE", "/_emulator/requests"));
    assert_eq!(log(&mut h, "")["requests"], json!([]));
}

#[test]
fn gateway_certificate_data_and_password_are_redacted() {
    let mut h = H::new();
    register_isolation(&mut h);
    agw_subnet(&mut h);
    h.raw(Request::new("DELETE", "/_emulator/requests"));
    h.ok("PUT", &agw_id("agw-fhir"), NET, Some(gateway_body(None)));
    let j = log(&mut h, "?writesOnly=true");
    let text = j.to_string();
    assert!(
        !text.contains("UEZY") && !text.contains("\"secret\""),
        "{text}"
    );
    let cert = &j["requests"][0]["body"]["properties"]["sslCertificates"][0]["properties"];
    assert_eq!(cert["data"], "<redacted>");
    assert_eq!(cert["password"], "<redacted>");
}

#[test]
fn anonymous_and_dropped_requests_are_recorded_too() {
    let mut h = H::new();
    h.raw(Request::new("DELETE", "/_emulator/requests"));
    h.raw(Request::new(
        "GET",
        &format!("{}?api-version={RG_API}", rg("fhir")),
    ));
    h.raw(Request::new("POST", "/_emulator/faults").with_json(
        &json!({"method": "PUT", "path": "*/resourceGroups/fhir", "dropConnection": true}),
    ));
    let r = h.call(
        "PUT",
        &rg("fhir"),
        RG_API,
        Some(json!({"location": "uksouth"})),
    );
    assert_eq!(r.status, 0);
    let j = log(&mut h, "");
    assert_eq!(j["requests"][0]["principal"], "anonymous");
    assert_eq!(j["requests"][0]["status"], 401);
    assert_eq!(j["requests"][1]["status"], 0);
    assert_eq!(j["requests"][1]["body"], json!({"location": "uksouth"}));
}
