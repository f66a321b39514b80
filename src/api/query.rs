//! Percent-decoding of path segments and query values, shared by the
//! router and the handlers that read query parameters.

use std::borrow::Cow;

use percent_encoding::percent_decode;

use super::error::ApiError;

/// Percent-decodes one path segment or query component.
pub fn decode(raw: &[u8]) -> Result<Cow<'_, str>, ApiError> {
    percent_decode(raw)
        .decode_utf8()
        .map_err(|_| ApiError::invalid("Request target is not valid UTF-8 once decoded."))
}

/// The first value of query parameter `name`, percent-decoded.
pub fn query_param<'a>(query: &'a [u8], name: &str) -> Result<Option<Cow<'a, str>>, ApiError> {
    for pair in query.split(|&b| b == b'&') {
        let (key, value) = match memchr::memchr(b'=', pair) {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &b""[..]),
        };
        if decode(key)? == name {
            return decode(value).map(Some);
        }
    }
    Ok(None)
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
    }
}
