//! Each JSON-taking endpoint with an arbitrary body: a structured answer,
//! never a panic. (No harness is on the empty PATH, and there is no
//! supervisor, so nothing is spawned.)
#![no_main]

use coven::api::Api;
use coven::http::{Method, Request, Service};
use libfuzzer_sys::fuzz_target;

const ROUTES: [&[u8]; 6] = [
    b"/api/v1/actions",
    b"/api/v1/sessions",
    b"/api/v1/sessions/missing/input",
    b"/api/v1/sessions/missing/kill",
    b"/api/v1/sessions/missing/resize",
    b"/actions",
];

fuzz_target!(|data: &[u8]| {
    let Some((&r, body)) = data.split_first() else {
        return;
    };
    let mut api = Api::standalone();
    let mut out = Vec::new();
    let req = Request {
        method: Method::Post,
        path: ROUTES[usize::from(r) % ROUTES.len()],
        query: b"",
        last_event_id: None,
        host: None,
        cookie: None,
        origin: None,
        web: false,
        body,
    };
    let mut reply = api.call(&req, &mut out);
    // A launch is held while its paths are resolved (here at once: the
    // standalone API's writer runs inline), then answered.
    for _ in 0..4 {
        let Some(hold) = reply.hold else { break };
        reply = api.resume(&hold, false, &mut out);
    }
    assert!(reply.hold.is_none());
    assert!(reply.status != 500 || out.windows(16).any(|w| w == b"pty_spawn_failed"));
    assert!(out.first() == Some(&b'{') && out.last() == Some(&b'}'));
});
