//! Percent-decoding of path segments and query values, shared by the
//! router and the handlers that read query parameters.

use std::borrow::Cow;

use percent_encoding::percent_decode;

use super::error::ApiError;

/// Percent-decodes one path segment or query component.
pub fn decode(raw: &[u8]) -> Result<Cow<'_, str>, ApiError> {
    if memchr::memchr(b'%', raw).is_none() {
        // Nothing to decode (the usual case): only check the UTF-8.
        return std::str::from_utf8(raw)
            .map(Cow::Borrowed)
            .map_err(|_| not_utf8());
    }
    percent_decode(raw).decode_utf8().map_err(|_| not_utf8())
}

fn not_utf8() -> ApiError {
    ApiError::invalid("Request target is not valid UTF-8 once decoded.")
}

/// Whether a raw query key is `name` once decoded. A plain ASCII key (the
/// usual case) is compared as it is; only one with escapes is decoded.
fn key_is(key: &[u8], name: &str) -> Result<bool, ApiError> {
    if key.is_ascii() && memchr::memchr(b'%', key).is_none() {
        return Ok(key == name.as_bytes());
    }
    Ok(decode(key)? == name)
}

/// The first value of query parameter `name`, percent-decoded.
pub fn query_param<'a>(query: &'a [u8], name: &str) -> Result<Option<Cow<'a, str>>, ApiError> {
    for pair in query.split(|&b| b == b'&') {
        let (key, value) = match memchr::memchr(b'=', pair) {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &b""[..]),
        };
        if key_is(key, name)? {
            return decode(value).map(Some);
        }
    }
    Ok(None)
}

/// Every value of query parameter `name`, percent-decoded, in order.
pub fn query_values<'a>(query: &'a [u8], name: &str) -> Result<Vec<Cow<'a, str>>, ApiError> {
    let mut values = Vec::new();
    for pair in query.split(|&b| b == b'&') {
        let (key, value) = match memchr::memchr(b'=', pair) {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &b""[..]),
        };
        if key_is(key, name)? {
            values.push(decode(value)?);
        }
    }
    Ok(values)
}

/// A `400 invalid_request` naming a query parameter and the value given.
pub fn bad_query(field: &str, value: &str, message: &str) -> ApiError {
    ApiError::invalid(message).with_details(serde_json::json!({ "field": field, field: value }))
}

/// A non-negative integer parameter, if present.
pub fn number(query: &[u8], field: &str) -> Result<Option<u64>, ApiError> {
    match query_param(query, field)? {
        None => Ok(None),
        Some(v) => match v.parse::<u64>() {
            Ok(n) if !v.starts_with('+') => Ok(Some(n)),
            _ => Err(bad_query(
                field,
                &v,
                &format!("`{field}` must be a non-negative integer."),
            )),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query() {
        let q = b"sessionId=a%20b&afterSeq=3&flag&afterSeq=4";
        assert_eq!(query_param(q, "sessionId").unwrap().as_deref(), Some("a b"));
        assert_eq!(query_param(q, "afterSeq").unwrap().as_deref(), Some("3"));
        assert_eq!(query_param(q, "flag").unwrap().as_deref(), Some(""));
        assert_eq!(query_param(q, "limit").unwrap(), None);
        assert!(query_param(b"x=%ff", "x").is_err());
        assert!(query_param(b"x=\xff", "x").is_err());
        assert!(matches!(decode(b"plain"), Ok(Cow::Borrowed("plain"))));
    }
}
