//! A whole request through the router and handlers: any method, path, query
//! and body must produce an answer with a JSON body, never a panic.
#![no_main]

use coven::api::Api;
use coven::http::{Method, Request, Service};
use libfuzzer_sys::fuzz_target;

const METHODS: [&[u8]; 8] = [
    b"GET", b"HEAD", b"POST", b"PUT", b"DELETE", b"PATCH", b"OPTIONS", b"X",
];

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(3, |&b| b == 0);
    let path = parts.next().unwrap_or_default();
    let query = parts.next().unwrap_or_default();
    let body = parts.next().unwrap_or_default();
    let req = Request {
        method: Method::from_bytes(METHODS[usize::from(m) % METHODS.len()]),
        path,
        query,
        last_event_id: None,
        host: None,
        cookie: None,
        origin: None,
        web: false,
        body,
    };
    let mut api = Api::standalone();
    let mut out = Vec::new();
    let reply = api.call(&req, &mut out);
    assert!((200..600).contains(&reply.status));
    assert!(
        serde_json_valid(&out),
        "{:?}",
        String::from_utf8_lossy(&out)
    );
});

fn serde_json_valid(bytes: &[u8]) -> bool {
    // The fuzz crate has no serde_json of its own: an object's braces (or
    // the session list's brackets) catch an empty or truncated body.
    matches!(
        (bytes.first(), bytes.last()),
        (Some(b'{'), Some(b'}')) | (Some(b'['), Some(b']'))
    )
}
