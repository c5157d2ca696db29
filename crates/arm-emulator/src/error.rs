//! ARM's error envelope: `{"error":{"code","message","details":[]}}` (§5.3).

use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq)]
pub struct ArmError {
    pub status: u16,
    pub code: String,
    pub message: String,
    pub details: Vec<Value>,
    /// Sent as `Retry-After` (seconds) with the error.
    pub retry_after: Option<u64>,
}

impl ArmError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> ArmError {
        ArmError {
            status,
            code: code.into(),
            message: message.into(),
            details: vec![],
            retry_after: None,
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> ArmError {
        ArmError::new(400, code, message)
    }

    /// The inner error object (also used in a failed operation's status body).
    pub fn object(&self) -> Value {
        json!({"code": self.code, "message": self.message, "details": self.details})
    }

    pub fn body(&self) -> Value {
        json!({"error": self.object()})
    }

    pub fn not_found(rtype: &str, name: &str, rg: &str) -> ArmError {
        ArmError::new(
            404,
            "ResourceNotFound",
            format!(
                "The Resource '{rtype}/{name}' under resource group '{rg}' was not found. For more details please go to https://aka.ms/ARMResourceNotFoundFix"
            ),
        )
    }

    pub fn invalid_reference(missing: &str, by: &str) -> ArmError {
        let mut e = ArmError::bad_request(
            "InvalidResourceReference",
            format!(
                "Resource {missing} referenced by resource {by} was not found. Please make sure that the referenced resource exists, and that both resources are in the same region."
            ),
        );
        e.details =
            vec![json!({"code": "NotFound", "message": format!("Resource {missing} not found.")})];
        e
    }
}
