//! Query strings and percent-encoded paths: decoding never panics, and the
//! events routes answer every query with a structured reply.
#![no_main]

use coven::api::query::query_param;
use coven::api::router::resolve;
use coven::api::Api;
use coven::http::{Method, Request, Service};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for name in ["sessionId", "afterSeq", "afterEventId", "limit", "waitMs"] {
        let _ = query_param(data, name);
    }
    let _ = resolve(data);
    let mut api = Api::standalone();
    let mut out = Vec::new();
    for path in [&b"/api/v1/events"[..], b"/api/v1/events/stream"] {
        out.clear();
        let req = Request {
            method: Method::Get,
            path,
            query: data,
            last_event_id: None,
            host: None,
            cookie: None,
            origin: None,
            web: false,
            body: b"",
        };
        let reply = api.call(&req, &mut out);
        // No session exists: every query is a 400 or a 404.
        assert!(
            reply.status == 400 || reply.status == 404,
            "{}",
            reply.status
        );
    }
});
