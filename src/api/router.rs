//! Version prefix → route → handler.
//!
//! `/api/v1/<route>` and the legacy `/<route>` reach the same handler;
//! `/api/<other>/…` fails closed. Path segments are split first, then
//! percent-decoded, so an encoded `/` never changes the route.

use std::borrow::Cow;

use serde_json::json;

use super::error::ApiError;
use super::query::decode;
use super::{actions, cast, events, launch, lifecycle, meta, screen, sessions, wait, web, Api};
use crate::http::{Method, Reply, Request};

/// Path segments beyond this many match no route.
const MAX_SEGMENTS: usize = 8;

/// Every route the daemon knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    ApiVersion,
    Health,
    Capabilities,
    Actions,
    Harnesses,
    Sessions,
    Session,
    SessionInput,
    SessionKill,
    SessionResize,
    SessionEvents,
    Events,
    SessionStream,
    EventsStream,
    Shutdown,
    Restart,
    /// `internal/test/panic`: only with `COVEN_TEST_HOOKS` set at start.
    TestPanic,
    SessionArchive,
    SessionUnarchive,
    SessionWait,
    SessionScreen,
    SessionCast,
    /// The loopback web view's switch (Unix socket only).
    Web,
    /// Changed screens of several sessions, as a stream.
    ScreensStream,
}

impl Route {
    /// The methods this route answers, as an `Allow` value.
    pub fn allow(self) -> &'static str {
        match self {
            Route::ApiVersion
            | Route::Health
            | Route::Capabilities
            | Route::Harnesses
            | Route::SessionEvents
            | Route::Events
            | Route::SessionStream
            | Route::SessionWait
            | Route::SessionScreen
            | Route::SessionCast
            | Route::ScreensStream
            | Route::EventsStream => "GET, HEAD",
            Route::Web => "GET, HEAD, POST, DELETE",
            Route::Sessions => "GET, HEAD, POST",
            Route::Session => "GET, HEAD, DELETE",
            Route::Actions
            | Route::SessionInput
            | Route::SessionKill
            | Route::SessionResize
            | Route::Shutdown
            | Route::Restart
            | Route::TestPanic
            | Route::SessionArchive
            | Route::SessionUnarchive => "POST",
        }
    }

    fn accepts(self, method: Method) -> bool {
        match method {
            Method::Get | Method::Head => self.allow().starts_with("GET"),
            Method::Post => self.allow().contains("POST"),
            Method::Delete => self.allow().contains("DELETE"),
            _ => false,
        }
    }
}

/// The route table: each route's path under `/api/v1/` (and under `/`, the
/// legacy alias), where `:id` is one non-empty segment, the session id.
/// `resolve` matches a path against it in order; docs/API.md documents
/// every entry (a test checks).
pub const ROUTES: &[(&str, Route)] = &[
    ("health", Route::Health),
    ("api-version", Route::ApiVersion),
    ("capabilities", Route::Capabilities),
    ("actions", Route::Actions),
    ("harnesses", Route::Harnesses),
    ("sessions", Route::Sessions),
    ("sessions/:id", Route::Session),
    ("sessions/:id/input", Route::SessionInput),
    ("sessions/:id/kill", Route::SessionKill),
    ("sessions/:id/resize", Route::SessionResize),
    ("sessions/:id/events", Route::SessionEvents),
    ("sessions/:id/stream", Route::SessionStream),
    ("sessions/:id/archive", Route::SessionArchive),
    ("sessions/:id/unarchive", Route::SessionUnarchive),
    ("sessions/:id/wait", Route::SessionWait),
    ("sessions/:id/screen", Route::SessionScreen),
    ("sessions/:id/cast", Route::SessionCast),
    ("events", Route::Events),
    ("events/stream", Route::EventsStream),
    ("screens/stream", Route::ScreensStream),
    ("web", Route::Web),
    ("internal/lifecycle/shutdown", Route::Shutdown),
    ("internal/lifecycle/restart", Route::Restart),
    ("internal/test/panic", Route::TestPanic),
];

/// Splits and decodes the path (without its leading `/`) into `segs`;
/// how many, or None past `MAX_SEGMENTS`. On the stack: this runs for
/// every request.
fn segments<'a>(
    path: &'a [u8],
    segs: &mut [Cow<'a, str>; MAX_SEGMENTS],
) -> Result<Option<usize>, ApiError> {
    let path = path.strip_prefix(b"/").unwrap_or(path);
    let mut n = 0;
    for raw in path.split(|&b| b == b'/') {
        let Some(seg) = segs.get_mut(n) else {
            return Ok(None);
        };
        *seg = decode(raw)?;
        n += 1;
    }
    Ok(Some(n))
}

/// Resolves a path to a route and its session id parameter, or the error a
/// client should see.
pub fn resolve(path: &[u8]) -> Result<(Route, Option<String>), ApiError> {
    let mut decoded: [Cow<'_, str>; MAX_SEGMENTS] = Default::default();
    let Some(n) = segments(path, &mut decoded)? else {
        return Err(ApiError::not_found());
    };
    let mut strs = [""; MAX_SEGMENTS];
    for (s, d) in strs.iter_mut().zip(&decoded[..n]) {
        *s = d;
    }
    let segs = &strs[..n];
    let rest = match segs {
        ["api", "v1", rest @ ..] => rest,
        ["api", version, ..] if !version.is_empty() => {
            return Err(
                ApiError::new(404, "invalid_request", "Unsupported API version.").with_details(
                    json!({
                        "apiVersion": version,
                        "supportedApiVersions": [meta::API_VERSION],
                    }),
                ),
            )
        }
        rest => rest,
    };
    for &(pattern, route) in ROUTES {
        if let Some(id) = matches(pattern, rest) {
            return Ok((route, id.map(str::to_owned)));
        }
    }
    Err(ApiError::not_found())
}

/// Whether the decoded segments `rest` match `pattern`, and its `:id`.
/// Byte comparisons, one pass: this runs for every route before a match.
fn matches<'a>(pattern: &str, rest: &[&'a str]) -> Option<Option<&'a str>> {
    let mut id = None;
    let mut parts = pattern.as_bytes().split(|&b| b == b'/');
    for &seg in rest {
        match parts.next()? {
            b":id" if !seg.is_empty() => id = Some(seg),
            part if part == seg.as_bytes() => {}
            _ => return None,
        }
    }
    parts.next().is_none().then_some(id)
}

pub fn dispatch(api: &mut Api, req: &Request<'_>, body: &mut Vec<u8>) -> Result<Reply, ApiError> {
    let (route, id) = resolve(req.path)?;
    if !route.accepts(req.method) {
        return Err(ApiError::method_not_allowed(route.allow()));
    }
    let id = id.as_deref().unwrap_or("");
    Ok(match route {
        Route::ApiVersion => meta::on_api_version(body),
        Route::Health => meta::on_health(api, body),
        Route::Capabilities => meta::on_capabilities(body),
        Route::Actions => actions::on_action(req.body, body),
        Route::Harnesses => sessions::on_harnesses(api, body),
        Route::Sessions if req.method == Method::Post => launch::on_create(api, req.body)?,
        Route::Sessions => sessions::on_list(api, req.query, body)?,
        Route::Session if req.method == Method::Delete => sessions::on_delete(api, id, body)?,
        Route::Session => sessions::on_get(api, id, body)?,
        Route::SessionArchive => sessions::on_archive(api, id, true, body)?,
        Route::SessionUnarchive => sessions::on_archive(api, id, false, body)?,
        Route::SessionInput => sessions::on_input(api, id, req.body, body)?,
        Route::SessionKill => sessions::on_kill(api, id, req.body, body)?,
        Route::SessionResize => sessions::on_resize(api, id, req.body, body)?,
        Route::SessionEvents => events::on_events(api, Some(id), req.query, body)?,
        Route::Events => events::on_events(api, None, req.query, body)?,
        Route::SessionStream => events::on_stream(api, Some(id), req.query, req.last_event_id)?,
        Route::EventsStream => events::on_stream(api, None, req.query, req.last_event_id)?,
        Route::Shutdown => lifecycle::on_shutdown(api, req.body, body)?,
        Route::Restart => lifecycle::on_restart(api, req.body, body)?,
        Route::TestPanic => lifecycle::on_test_panic(api, req.body, body)?,
        Route::SessionWait => wait::on_wait(api, id, req.query, body)?,
        Route::SessionScreen => screen::on_screen(api, id, req.query, body)?,
        Route::SessionCast => cast::on_cast(api, id, req.query, body)?,
        Route::ScreensStream => screen::on_stream(api, req.query)?,
        Route::Web => web::on_web(api, req, body)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(path: &str, expect: Result<Route, (u16, &str)>) {
        let got = resolve(path.as_bytes())
            .map(|(r, _)| r)
            .map_err(|e| (e.status, e.code));
        assert_eq!(got, expect, "{path}");
    }

    #[test]
    fn routes() {
        use Route::*;
        check("/api/v1/health", Ok(Health));
        check("/health", Ok(Health));
        check("/api/v1/api-version", Ok(ApiVersion));
        check("/api-version", Ok(ApiVersion));
        check("/api/v1/capabilities", Ok(Capabilities));
        check("/capabilities", Ok(Capabilities));
        check("/api/v1/actions", Ok(Actions));
        check("/actions", Ok(Actions));
        check("/api/v1/%68ealth", Ok(Health));
        check("/api/v1", Err((404, "not_found")));
        check("/api/v1/", Err((404, "not_found")));
        check("/", Err((404, "not_found")));
        check("/api", Err((404, "not_found")));
        check("/api/", Err((404, "not_found")));
        check("/api/v1/nope", Err((404, "not_found")));
        check("/api/v1/health/", Err((404, "not_found")));
        check("/api/v2/health", Err((404, "invalid_request")));
        check("/api/v0", Err((404, "invalid_request")));
        check("/api/v1%2Fhealth", Err((404, "invalid_request")));
        check("/a/b/c/d/e/f/g/h/i", Err((404, "not_found")));
        check("/api/v1/%ff", Err((400, "invalid_request")));
        check("/api/v1/internal/lifecycle/shutdown", Ok(Shutdown));
        check("/internal/lifecycle/shutdown", Ok(Shutdown));
        check("/api/v1/internal/lifecycle/restart", Ok(Restart));
        check("/api/v1/internal/lifecycle", Err((404, "not_found")));
        check("/api/v1/sessions", Ok(Sessions));
        check("/sessions/abc", Ok(Session));
        check("/api/v1/sessions/abc/input", Ok(SessionInput));
        check("/api/v1/sessions/abc/kill", Ok(SessionKill));
        check("/api/v1/sessions/abc/resize", Ok(SessionResize));
        check("/api/v1/sessions/abc/archive", Ok(SessionArchive));
        check("/sessions/abc/unarchive", Ok(SessionUnarchive));
        check("/api/v1/sessions/abc/events", Ok(SessionEvents));
        check("/api/v1/sessions/abc/nope", Err((404, "not_found")));
        check("/api/v1/sessions//input", Err((404, "not_found")));
        check("/api/v1/events", Ok(Events));
        check("/harnesses", Ok(Harnesses));
        let (_, id) = resolve(b"/api/v1/sessions/a%2Fb/kill").unwrap();
        assert_eq!(id.as_deref(), Some("a/b"));
    }

    #[test]
    fn unknown_version_details() {
        let e = resolve(b"/api/v9/health").unwrap_err();
        assert_eq!(
            e.details,
            Some(json!({"apiVersion": "v9", "supportedApiVersions": ["v1"]}))
        );
    }
}
