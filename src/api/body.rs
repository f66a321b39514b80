//! Reading JSON request bodies: the object, and typed fields whose errors
//! name the field (`details.field`).

use serde_json::{json, Map, Value};

use super::error::ApiError;

pub fn field_error(field: &str, message: &str) -> ApiError {
    ApiError::invalid(message).with_details(json!({ "field": field }))
}

/// The body as a JSON object; `empty_ok` treats an empty body as `{}`.
pub fn object(body: &[u8], empty_ok: bool) -> Result<Map<String, Value>, ApiError> {
    if empty_ok && body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(obj)) => Ok(obj),
        Ok(_) => Err(field_error("body", "Request body must be a JSON object.")),
        Err(e) => Err(ApiError::invalid("Request body is not valid JSON.")
            .with_details(json!({ "field": "body", "reason": e.to_string() }))),
    }
}

/// A required, non-blank string without NUL bytes.
pub fn required_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, ApiError> {
    match obj.get(field) {
        Some(Value::String(s)) if !s.trim().is_empty() && !s.contains('\0') => Ok(s),
        Some(Value::String(s)) if s.contains('\0') => Err(field_error(
            field,
            &format!("`{field}` must not contain NUL."),
        )),
        Some(Value::String(_)) => Err(field_error(field, &format!("`{field}` must not be blank."))),
        None | Some(Value::Null) => Err(field_error(field, &format!("`{field}` is required."))),
        Some(_) => Err(field_error(field, &format!("`{field}` must be a string."))),
    }
}

/// An optional string: absent or null is `None`.
pub fn optional_str<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if !s.contains('\0') => Ok(Some(s)),
        Some(_) => Err(field_error(field, &format!("`{field}` must be a string."))),
    }
}

pub fn optional_int(
    obj: &Map<String, Value>,
    field: &str,
    min: u64,
    max: u64,
) -> Result<Option<u64>, ApiError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(Some(n)),
            _ => Err(ApiError::invalid(format!(
                "`{field}` must be an integer from {min} to {max}."
            ))
            .with_details(json!({ "field": field, "min": min, "max": max }))),
        },
    }
}
