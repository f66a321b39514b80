//! The loopback web view: every session's screen in a browser, served on
//! `127.0.0.1:<port>` by the same loop, behind an auth design of its own
//! (docs/SECURITY.md says why each part is there).
//!
//! - Off by default: no listener, no bytes. `POST /api/v1/web` (Unix
//!   socket only; `coven web`) binds it, `DELETE` closes it; `web.json` in
//!   the home keeps it on through restarts, and config.json's `web` turns
//!   it on at start.
//! - The credential is a 256-bit secret in `<home>/web-secret` (0600),
//!   which only ever travels in an `HttpOnly; SameSite=Strict` cookie. A
//!   browser gets it by trading a one-time login code (128 bits, single
//!   use, 60 s) at `/login?code=…`; codes are only handed out on the Unix
//!   socket. Turning the view off replaces the secret: every cookie dies.
//! - Every request needs the cookie and a `Host` that is exactly the
//!   listener's address and port (DNS rebinding: 421); every request that
//!   is not GET or HEAD needs an `Origin` equal to the page's own (cross-site
//!   request forgery: 403). No CORS header is ever sent, and every answer
//!   carries `encode::WEB_HEADERS`.
//! - The lifecycle routes and these control routes are not served here.
//!
//! No disk on the loop: the secret and `web.json` are read before it runs
//! (`Web::load`) and written by the writer.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use super::body::{object, optional_int};
use super::error::ApiError;
use super::Api;
use crate::http::{Method, Reply, Request};
use crate::writer::Job;

/// The port `coven web` listens on when none is given.
pub const DEFAULT_PORT: u16 = crate::config::WEB_DEFAULT_PORT;
/// The cookie that carries the secret.
pub const COOKIE: &str = "coven_web";
/// The secret's file in the home.
pub const SECRET_FILE: &str = "web-secret";
/// What keeps the view on through a restart.
pub const STATE_FILE: &str = "web.json";
/// How long a login code is good for.
pub const CODE_LIFE: Duration = Duration::from_secs(60);
/// Codes handed out and not used yet, at most (the oldest go first).
const MAX_CODES: usize = 16;
/// Bytes of randomness in the secret and in a login code.
const SECRET_BYTES: usize = 32;
const CODE_BYTES: usize = 16;

/// The page and what it loads, compressed at build time (`build.rs`).
const ASSETS: &[(&str, &str, &[u8])] = &[
    (
        "/",
        "text/html; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/index.html.gz")),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/app.js.gz")),
    ),
    (
        "/app.css",
        "text/css; charset=utf-8",
        include_bytes!(concat!(env!("OUT_DIR"), "/app.css.gz")),
    ),
];

/// The web view's state.
#[derive(Default)]
pub struct Web {
    home: Option<PathBuf>,
    /// Where it listens, while it is on.
    pub addr: Option<SocketAddr>,
    /// A listener a handler bound, for the reactor to take up.
    listener: Option<mio::net::TcpListener>,
    /// The reactor is to close the listener it has.
    close: bool,
    /// The secret, as hex (what the cookie carries).
    secret: Option<String>,
    /// Login codes handed out and not used yet, with when they expire.
    codes: Vec<(String, Instant)>,
    /// Head fields for the answer just given (`Service::take_head_extra`).
    pub head_extra: Vec<u8>,
}

/// What the reactor is to do with the web listener.
pub enum Switch {
    /// Nothing changed.
    Same,
    /// Close the one it has (if any), then take this one up (if any).
    To(Option<mio::net::TcpListener>),
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

fn random_hex(n: usize) -> String {
    let mut buf = [0u8; 64];
    crate::sys::random_bytes(&mut buf[..n]);
    hex(&buf[..n])
}

/// Equal, in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |d, (x, y)| d | (x ^ y)) == 0
}

/// The `Host` a browser sends for `addr` (`127.0.0.1:7373`, `[::1]:7373`),
/// written into `buf` (no allocation per request): at most 47 bytes.
fn host_in(addr: &SocketAddr, buf: &mut [u8; 64]) -> usize {
    use std::io::Write;
    let mut at = std::io::Cursor::new(&mut buf[..]);
    let _ = write!(at, "{addr}");
    at.position() as usize
}

impl Web {
    /// The state at start (before the loop: it reads two small files):
    /// the secret if there is one, and the listener if `web.json` or the
    /// configuration (`config`) says it is on. A listener that cannot be
    /// bound is logged, and the daemon serves without it.
    pub fn load(home: PathBuf, config: Option<SocketAddr>) -> Web {
        let secret = std::fs::read_to_string(home.join(SECRET_FILE))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| s.len() == 2 * SECRET_BYTES && s.bytes().all(|b| b.is_ascii_hexdigit()));
        let kept = std::fs::read(home.join(STATE_FILE))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| {
                let ip: IpAddr = v["address"].as_str()?.parse().ok()?;
                let port = u16::try_from(v["port"].as_u64()?).ok()?;
                Some(SocketAddr::new(ip, port))
            })
            .filter(|a| a.ip().is_loopback());
        let mut web = Web {
            home: Some(home),
            secret,
            ..Web::default()
        };
        if let Some(addr) = kept.or(config) {
            match web.bind(addr) {
                Ok(()) => {
                    web.ensure_secret(None);
                    log::info!("web view on http://{}/", web.addr.expect("bound"));
                }
                Err(e) => log::error!("the web view cannot listen on {addr}: {e}"),
            }
        }
        web
    }

    /// A view that is on at `addr` with this secret, without a listener or a
    /// home: for fuzzing the checks (`gate`).
    #[doc(hidden)]
    pub fn pretend(addr: SocketAddr, secret: &str) -> Web {
        Web {
            addr: Some(addr),
            secret: Some(secret.to_owned()),
            ..Web::default()
        }
    }

    /// Whether the reactor has a listener change to take up.
    pub fn switch_pending(&self) -> bool {
        self.close || self.listener.is_some()
    }

    /// The change for the reactor to make.
    pub fn take_switch(&mut self) -> Switch {
        if !self.switch_pending() {
            return Switch::Same;
        }
        self.close = false;
        Switch::To(self.listener.take())
    }

    /// Binds the listener (a system call, no disk) for the reactor.
    fn bind(&mut self, addr: SocketAddr) -> std::io::Result<()> {
        let listener = mio::net::TcpListener::bind(addr)?;
        let bound = listener.local_addr()?;
        self.close = true;
        self.listener = Some(listener);
        self.addr = Some(bound);
        Ok(())
    }

    /// Makes a secret if there is none, written by the writer (`sessions`'s),
    /// or here when there is none yet (before the loop).
    fn ensure_secret(&mut self, sessions: Option<&mut crate::session::Sessions>) {
        if self.secret.is_some() {
            return;
        }
        let secret = random_hex(SECRET_BYTES);
        let job = self.home.as_ref().map(|home| Job::WriteAtomic {
            dir: home.clone(),
            name: SECRET_FILE,
            bytes: format!("{secret}\n").into_bytes(),
            durable: true,
        });
        match sessions {
            Some(s) => s.submit(job),
            None => {
                // Before the loop (`load`): written here.
                if let Some(Job::WriteAtomic {
                    dir, name, bytes, ..
                }) = job
                {
                    if let Err(e) = crate::journal::write_atomic(&dir, name, &bytes, true) {
                        log::error!("writing {}: {e}", dir.join(name).display());
                    }
                }
            }
        }
        self.secret = Some(secret);
    }

    /// A new login code, good for `CODE_LIFE`.
    fn new_code(&mut self, now: Instant) -> String {
        self.codes.retain(|(_, until)| *until > now);
        if self.codes.len() >= MAX_CODES {
            self.codes.remove(0);
        }
        let code = random_hex(CODE_BYTES);
        self.codes.push((code.clone(), now + CODE_LIFE));
        code
    }

    /// Uses up a login code: whether it was good.
    fn redeem(&mut self, given: &[u8], now: Instant) -> bool {
        let found = self
            .codes
            .iter()
            .position(|(code, until)| same(code.as_bytes(), given) && *until > now);
        match found {
            Some(i) => {
                self.codes.remove(i);
                true
            }
            None => false,
        }
    }

    /// Whether the request's cookies hold the secret.
    fn signed_in(&self, cookie: Option<&[u8]>) -> bool {
        let (Some(secret), Some(cookie)) = (&self.secret, cookie) else {
            return false;
        };
        cookie
            .split(|&b| b == b';')
            .filter_map(|pair| {
                let pair = pair.trim_ascii();
                let eq = pair.iter().position(|&b| b == b'=')?;
                (&pair[..eq] == COOKIE.as_bytes()).then(|| &pair[eq + 1..])
            })
            .any(|value| same(value, secret.as_bytes()))
    }
}

/// `GET /api/v1/web`, `POST` (turn on, or a new login link), `DELETE`.
pub fn on_web(api: &mut Api, req: &Request<'_>, out: &mut Vec<u8>) -> Result<Reply, ApiError> {
    let now = Instant::now();
    match req.method {
        Method::Delete => {
            if api.web.addr.take().is_some() {
                api.web.close = true;
                api.web.listener = None;
                api.web.codes.clear();
                // A new secret: every cookie handed out dies with the view.
                api.web.secret = None;
                api.web.ensure_secret(Some(&mut api.sessions));
                if let Some(home) = &api.web.home {
                    api.sessions
                        .submit(Some(Job::Remove(home.join(STATE_FILE))));
                }
                log::info!("web view off");
            }
            super::wire::write_json(out, &json!({ "on": false }));
            Ok(Reply::new(200))
        }
        Method::Post => {
            let obj = object(req.body, true)?;
            let port = optional_int(&obj, "port", 0, u64::from(u16::MAX))?;
            let address = match obj.get("address") {
                None | Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.as_str()),
                Some(_) => {
                    return Err(ApiError::invalid("`address` must be a string.")
                        .with_details(json!({ "field": "address" })))
                }
            };
            // What is not given stays as it is (or takes its default).
            let ip: IpAddr = match address {
                None => api
                    .web
                    .addr
                    .map_or(IpAddr::from([127, 0, 0, 1]), |a| a.ip()),
                Some(a) => a.parse().map_err(|_| {
                    ApiError::invalid("`address` must be an IP address.")
                        .with_details(json!({ "field": "address", "address": a }))
                })?,
            };
            if !ip.is_loopback() {
                return Err(ApiError::invalid(
                    "The web view listens on a loopback address only (127.0.0.0/8 or ::1).",
                )
                .with_details(json!({ "field": "address", "address": ip.to_string() })));
            }
            let port = match port {
                Some(p) => p as u16,
                None => api.web.addr.map_or(DEFAULT_PORT, |a| a.port()),
            };
            let want = SocketAddr::new(ip, port);
            let same_place = api.web.addr.is_some_and(|a| {
                a.ip() == want.ip() && (want.port() == 0 || a.port() == want.port())
            });
            if !same_place {
                api.web.bind(want).map_err(|e| {
                    ApiError::new(409, "web_unavailable", "The web view cannot listen there.")
                        .with_details(json!({
                            "address": want.ip().to_string(),
                            "port": want.port(),
                            "reason": e.to_string(),
                        }))
                })?;
                let bound = api.web.addr.expect("bound");
                log::info!("web view on http://{bound}/");
                if let Some(home) = &api.web.home {
                    let state = json!({ "address": bound.ip().to_string(), "port": bound.port() });
                    api.sessions.submit(Some(Job::WriteAtomic {
                        dir: home.clone(),
                        name: STATE_FILE,
                        bytes: state.to_string().into_bytes(),
                        durable: true,
                    }));
                }
            }
            api.web.ensure_secret(Some(&mut api.sessions));
            let code = api.web.new_code(now);
            write_status(api, Some(&code), out);
            Ok(Reply::new(200))
        }
        _ => {
            write_status(api, None, out);
            Ok(Reply::new(200))
        }
    }
}

fn write_status(api: &Api, code: Option<&str>, out: &mut Vec<u8>) {
    let v = match api.web.addr {
        None => json!({ "on": false }),
        Some(addr) => {
            let url = format!("http://{addr}/");
            let mut v = json!({
                "on": true,
                "address": addr.ip().to_string(),
                "port": addr.port(),
                "url": url,
            });
            if let Some(code) = code {
                v["loginUrl"] = json!(format!("{url}login?code={code}"));
                v["loginExpiresInMs"] = json!(CODE_LIFE.as_millis() as u64);
            }
            v
        }
    };
    super::wire::write_json(out, &v);
}

/// A small HTML page (the web view's own errors, read by people).
fn page(out: &mut Vec<u8>, status: u16, title: &str, text: &str) -> Reply {
    out.clear();
    out.extend_from_slice(
        format!(
            "<!doctype html><meta charset=utf-8><title>{title}</title><h1>{title}</h1><p>{text}</p>\n"
        )
        .as_bytes(),
    );
    Reply {
        content_type: "text/html; charset=utf-8",
        ..Reply::new(status)
    }
}

/// Whether a path is one the web view never serves: the daemon's
/// lifecycle, its test hooks and the web view's own control.
fn unix_only(path: &[u8]) -> bool {
    let rest = path.strip_prefix(b"/api/v1/").unwrap_or(b"");
    rest.starts_with(b"internal") || rest.starts_with(b"web") || rest.is_empty()
}

/// A request on the web view: answered here (refused, the login, the
/// page), or `None` to go on to the API's router.
pub fn gate(api: &mut Api, req: &Request<'_>, out: &mut Vec<u8>) -> Option<Reply> {
    api.web.head_extra.clear();
    let Some(addr) = api.web.addr else {
        // Closed while this connection was open.
        return Some(ApiError::new(403, "forbidden", "The web view is off.").write(out));
    };
    let mut buf = [0u8; 64];
    let len = host_in(&addr, &mut buf);
    let host = &buf[..len];
    // DNS rebinding: a name that resolves here carries its own Host.
    if req.host != Some(host) {
        return Some(
            ApiError::new(
                421,
                "misdirected_request",
                "The Host header must be the web view's own address and port.",
            )
            .with_details(json!({ "expected": String::from_utf8_lossy(host) }))
            .write(out),
        );
    }
    let now = Instant::now();
    let safe = matches!(req.method, Method::Get | Method::Head);
    if req.path == b"/login" {
        // GET only: a HEAD (a link preview) must not use the code up.
        if req.method != Method::Get {
            return Some(ApiError::method_not_allowed("GET").write(out));
        }
        let code = super::query::query_param(req.query, "code")
            .ok()
            .flatten()
            .unwrap_or_default();
        if !api.web.redeem(code.as_bytes(), now) {
            return Some(page(
                out,
                403,
                "This sign-in link does not work",
                "It was used already, or it expired (links last a minute). Run <code>coven web --open</code> for a new one.",
            ));
        }
        let secret = api.web.secret.as_deref().unwrap_or_default();
        api.web.head_extra.extend_from_slice(
            format!(
                "Set-Cookie: {COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict\r\nLocation: /\r\n"
            )
            .as_bytes(),
        );
        return Some(page(
            out,
            303,
            "Signed in",
            "On to <a href=\"/\">the sessions</a>.",
        ));
    }
    if !api.web.signed_in(req.cookie) {
        if req.path == b"/" {
            return Some(page(
                out,
                401,
                "Not signed in",
                "Run <code>coven web --open</code> to sign this browser in.",
            ));
        }
        return Some(
            ApiError::new(
                401,
                "unauthorized",
                "Sign in first: `coven web --open` opens a link that does.",
            )
            .write(out),
        );
    }
    // Cross-site request forgery: a page elsewhere can make the browser
    // send the cookie, but not this Origin.
    if !safe && req.origin.and_then(|o| o.strip_prefix(b"http://")) != Some(host) {
        return Some(
            ApiError::new(
                403,
                "forbidden",
                "A request that changes something must come from the web view's own page.",
            )
            .write(out),
        );
    }
    if let Some((_, content_type, bytes)) = ASSETS.iter().find(|(p, _, _)| p.as_bytes() == req.path)
    {
        if !safe {
            return Some(ApiError::method_not_allowed("GET, HEAD").write(out));
        }
        out.extend_from_slice(bytes);
        api.web
            .head_extra
            .extend_from_slice(b"Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n");
        return Some(Reply {
            content_type,
            ..Reply::new(200)
        });
    }
    if !req.path.starts_with(b"/api/v1/") || unix_only(req.path) {
        return Some(ApiError::not_found().write(out));
    }
    // The route as the router will see it (segments percent-decoded: an
    // encoded `internal` must not slip past the check above).
    use super::router::Route;
    if let Ok((Route::Shutdown | Route::Restart | Route::TestPanic | Route::Web, _)) =
        super::router::resolve(req.path)
    {
        return Some(ApiError::not_found().write(out));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_codes() {
        let mut w = Web {
            secret: Some("ab".repeat(32)),
            ..Web::default()
        };
        let good = format!("x=1; {COOKIE}={}", "ab".repeat(32));
        assert!(w.signed_in(Some(good.as_bytes())));
        assert!(!w.signed_in(Some(b"coven_web=abab")));
        assert!(!w.signed_in(None));
        let now = Instant::now();
        let code = w.new_code(now);
        assert_eq!(code.len(), 32);
        assert!(!w.redeem(b"nope", now));
        assert!(w.redeem(code.as_bytes(), now));
        assert!(!w.redeem(code.as_bytes(), now), "a code is good once");
        let late = w.new_code(now);
        assert!(!w.redeem(late.as_bytes(), now + CODE_LIFE));
        assert!(unix_only(b"/api/v1/internal/lifecycle/shutdown"));
        assert!(unix_only(b"/api/v1/web/login"));
        assert!(!unix_only(b"/api/v1/sessions"));
        // Encoded, the router would still find them: `gate` resolves first.
        let mut api = Api::standalone();
        api.web = Web::pretend("127.0.0.1:7373".parse().unwrap(), &"ab".repeat(32));
        let cookie = format!("{COOKIE}={}", "ab".repeat(32));
        for path in [
            &b"/api/v1/%69nternal/lifecycle/shutdown"[..],
            b"/api/v1/internal/%6cifecycle/restart",
            b"/api/v1/%77eb",
        ] {
            let req = Request {
                method: Method::Post,
                path,
                query: b"",
                last_event_id: None,
                body: b"{}",
                host: Some(b"127.0.0.1:7373"),
                cookie: Some(cookie.as_bytes()),
                origin: Some(b"http://127.0.0.1:7373"),
                web: true,
            };
            let mut out = Vec::new();
            let reply = gate(&mut api, &req, &mut out).expect("refused here");
            assert_eq!(reply.status, 404, "{}", String::from_utf8_lossy(path));
        }
    }
}
