//! `ApiError`: every failure a client can see, rendered as the contract's
//! envelope `{ "error": { code, message, details? } }`.

use serde_json::Value;

use super::wire;
use crate::http::{self, Reply};

#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    /// One of the contract's codes; clients branch on it.
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// `Allow` header value, for 405.
    pub allow: Option<&'static str>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            details: None,
            allow: None,
        }
    }

    pub fn with_details(mut self, details: Value) -> ApiError {
        self.details = Some(details);
        self
    }

    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid_request", message)
    }

    pub fn not_found() -> ApiError {
        ApiError::new(404, "not_found", "No such route.")
    }

    pub fn method_not_allowed(allow: &'static str) -> ApiError {
        ApiError {
            allow: Some(allow),
            ..ApiError::new(
                405,
                "method_not_allowed",
                "Method not allowed for this route.",
            )
            .with_details(serde_json::json!({ "allow": allow }))
        }
    }

    pub fn internal() -> ApiError {
        ApiError::new(500, "internal_error", "Internal error.")
    }

    /// Writes the envelope into `body` and returns the reply head.
    pub fn write(&self, body: &mut Vec<u8>) -> Reply {
        wire::write_json(body, &self.envelope());
        Reply {
            allow: self.allow,
            ..Reply::new(self.status)
        }
    }

    pub fn envelope(&self) -> wire::ErrorEnvelope<'_> {
        wire::ErrorEnvelope {
            error: wire::ErrorBody {
                code: self.code,
                message: &self.message,
                details: self.details.as_ref(),
            },
        }
    }
}

impl From<http::Error> for ApiError {
    fn from(err: http::Error) -> ApiError {
        let code = match err.status {
            413 => "payload_too_large",
            431 => "request_header_too_large",
            503 => "runtime_unavailable",
            _ => "invalid_request",
        };
        ApiError::new(err.status, code, err.message)
    }
}
