//! A request on the web view: any method, path, query, Host, Cookie,
//! Origin and body must get an answer from the checks (or the router
//! behind them), never a panic; and nothing gets past without the cookie.
#![no_main]

use coven::api::web::{Web, COOKIE};
use coven::api::Api;
use coven::http::{Method, Request, Service};
use libfuzzer_sys::fuzz_target;

const METHODS: [&[u8]; 5] = [b"GET", b"HEAD", b"POST", b"DELETE", b"OPTIONS"];
const SECRET: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fuzz_target!(|data: &[u8]| {
    let Some((&m, rest)) = data.split_first() else {
        return;
    };
    let mut parts = rest.splitn(6, |&b| b == 0);
    let mut next = || parts.next().unwrap_or_default();
    let (path, query, host, cookie, origin, body) =
        (next(), next(), next(), next(), next(), next());
    let good_cookie = format!("{COOKIE}={SECRET}");
    // Some inputs carry the right cookie and Host, to reach what is behind.
    let cookie = if m & 0x40 != 0 {
        good_cookie.as_bytes()
    } else {
        cookie
    };
    let host = if m & 0x20 != 0 {
        &b"127.0.0.1:7373"[..]
    } else {
        host
    };
    let req = Request {
        method: Method::from_bytes(METHODS[usize::from(m & 7) % METHODS.len()]),
        path,
        query,
        last_event_id: None,
        host: Some(host),
        cookie: Some(cookie),
        origin: Some(origin),
        web: true,
        body,
    };
    let mut api = Api::standalone();
    api.web = Web::pretend("127.0.0.1:7373".parse().unwrap(), SECRET);
    let mut out = Vec::new();
    let reply = api.call(&req, &mut out);
    assert!((200..600).contains(&reply.status));
    let signed_in = cookie
        .split(|&b| b == b';')
        .any(|c| c.trim_ascii() == good_cookie.as_bytes());
    if !signed_in && path != b"/login" {
        assert!(
            matches!(reply.status, 401 | 421 | 403),
            "{} for {:?}",
            reply.status,
            String::from_utf8_lossy(path)
        );
    }
    if !(200..300).contains(&reply.status) || reply.status == 303 {
        return;
    }
    // A change that went through came from the page's own origin.
    if !matches!(req.method, Method::Get | Method::Head) {
        assert_eq!(origin, b"http://127.0.0.1:7373");
    }
});
