//! The engine's view of one HTTP exchange: what came in, what goes out, and the outcomes that are
//! not a plain answer (a dropped connection, a key fetch the server must make first).

use serde_json::Value;

use crate::error::ArmError;
use crate::util::{self, form_get};

#[derive(Debug, Clone, Default)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub query: Vec<(String, String)>,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn new(method: &str, path_and_query: &str) -> Request {
        let (path, q) = path_and_query
            .split_once('?')
            .unwrap_or((path_and_query, ""));
        Request {
            method: method.to_ascii_uppercase(),
            path: path.to_string(),
            query: util::parse_form(q),
            ..Default::default()
        }
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn with_header(mut self, k: &str, v: &str) -> Request {
        self.headers.push((k.to_string(), v.to_string()));
        self
    }
    pub fn with_json(mut self, v: &Value) -> Request {
        self.body = v.to_string().into_bytes();
        self
    }
    pub(super) fn api_version(&self) -> Option<&str> {
        form_get(&self.query, "api-version")
    }
}

#[derive(Debug, Clone, Default)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn json(status: u16, v: &Value) -> Response {
        Response {
            status,
            headers: vec![(
                "content-type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: v.to_string().into_bytes(),
        }
    }
    pub fn empty(status: u16) -> Response {
        Response {
            status,
            headers: vec![],
            body: vec![],
        }
    }
    pub fn err(e: &ArmError) -> Response {
        let r = Response::json(e.status, &e.body());
        match e.retry_after {
            Some(s) => r.header("Retry-After", s.to_string()),
            None => r,
        }
    }
    pub fn header(mut self, k: &str, v: impl Into<String>) -> Response {
        self.headers.push((k.to_string(), v.into()));
        self
    }
    pub fn get_header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn json_body(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

pub enum Outcome {
    Respond(Response),
    /// Close the connection without answering (fault injection).
    Drop,
    /// The token endpoint needs the issuer's keys from this URL (fetched by the server, then retried).
    NeedJwks {
        url: String,
        ca_file: Option<String>,
        bearer_file: Option<String>,
    },
}

pub struct Handled {
    pub outcome: Outcome,
    pub delay_ms: u64,
}
