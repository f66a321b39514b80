//! The contract's static surface, end to end: each endpoint's exact shape,
//! the router's errors, and the action router's accept/reject forms.

mod support;

use serde_json::json;
use support::*;

#[test]
fn api_version_shape() {
    let d = Daemon::start();
    for path in ["/api/v1/api-version", "/api-version"] {
        let r = d.get(path);
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type"), Some("application/json"));
        assert_eq!(
            r.json(),
            json!({"apiVersion": "v1", "supportedApiVersions": ["v1"]})
        );
    }
}

#[test]
fn health_shape() {
    let d = Daemon::start();
    let h = d.get("/health").json();
    assert_eq!(h["ok"], true);
    assert_eq!(h["apiVersion"], "coven.daemon.v1");
    assert_eq!(h["covenVersion"], env!("CARGO_PKG_VERSION"));
    assert_eq!(h["build"], "dev");
    assert_eq!(
        h["capabilities"],
        json!({"sessions": true, "events": true, "eventCursor": "sequence", "structuredErrors": true,
               "eventWait": true, "eventStream": true, "sessionResize": true, "sessionSignals": true,
               "persistence": true, "liveRestart": true})
    );
    assert_eq!(h["daemon"]["pid"], d.server_pid());
    // The server is the supervisor's child.
    assert_eq!(ps_field(d.server_pid(), "ppid"), d.pid().to_string());
    assert_eq!(h["daemon"]["socket"], d.socket.display().to_string());
    let started = h["daemon"]["startedAt"].as_str().unwrap();
    humantime::parse_rfc3339(started).expect("startedAt is RFC 3339");
    assert!(started.ends_with('Z'));
    // The start-up probe's connection may still be closing on a loaded
    // machine: the count settles to just the asking connection.
    let h = d.settle();
    let stats = &h["stats"];
    assert!(stats["acceptedConnections"].as_u64().unwrap() >= 2);
    assert_eq!(stats["refusedConnections"], 0);
    assert!(stats["requests"].as_u64().unwrap() >= 2);
    // daemon.json carries the same metadata.
    let info: serde_json::Value =
        serde_json::from_slice(&std::fs::read(d.home.join("daemon.json")).unwrap()).unwrap();
    assert_eq!(info, h["daemon"]);
}

#[test]
fn capabilities_catalog() {
    let d = Daemon::start();
    let expected = json!({"capabilities": [
        {"id": "coven.sessions", "label": "Project-scoped harness sessions", "adapter": "coven-daemon",
         "status": "available", "policy": "allow", "actions": []},
        {"id": "coven.control.actions", "label": "Coven control-plane action router", "adapter": "coven-daemon",
         "status": "available", "policy": "allow", "actions": ["coven.capabilities.refresh"]},
        {"id": "desktop.automation", "label": "Desktop automation adapters", "adapter": "desktop-use",
         "status": "planned", "policy": "requiresApproval", "actions": []},
    ]});
    assert_eq!(d.get("/api/v1/capabilities").json(), expected);
    assert_eq!(d.get("/capabilities").json(), expected);
}

#[test]
fn action_accepted() {
    let d = Daemon::start();
    let r = d.post(
        "/api/v1/actions",
        br#"{"action":"coven.capabilities.refresh","origin":"cli","intentId":"i-1","args":{}}"#,
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json(),
        json!({"ok": true, "accepted": true, "action": "coven.capabilities.refresh", "status": "completed",
               "event": {"kind": "capabilities.refreshed", "action": "coven.capabilities.refresh",
                         "origin": "cli", "intentId": "i-1", "payload": {"capabilities": 3}}})
    );
    // origin and intentId are omitted when absent.
    let r = d.post("/actions", br#"{"action":"coven.capabilities.refresh"}"#);
    assert_eq!(
        r.json()["event"],
        json!({"kind": "capabilities.refreshed", "action": "coven.capabilities.refresh", "payload": {"capabilities": 3}})
    );
}

#[test]
fn action_rejected() {
    let d = Daemon::start();
    let cases: &[(&[u8], serde_json::Value)] = &[
        (br#"{"action":"rm.everything"}"#, json!("rm.everything")),
        (br#"{"action":"   "}"#, json!("   ")),
        (br#"{"action":7}"#, json!(null)),
        (br#"{}"#, json!(null)),
        (br#"[]"#, json!(null)),
        (br#""coven.capabilities.refresh""#, json!(null)),
        (
            br#"{"action":"coven.capabilities.refresh","args":[1]}"#,
            json!("coven.capabilities.refresh"),
        ),
        (
            br#"{"action":"coven.capabilities.refresh","args":"x"}"#,
            json!("coven.capabilities.refresh"),
        ),
        (
            br#"{"action":"coven.capabilities.refresh","origin":5}"#,
            json!("coven.capabilities.refresh"),
        ),
        (br#"{"action":"coven.capabilities.refresh""#, json!(null)),
        (b"", json!(null)),
        (b"\xff\xfe{}", json!(null)),
        (b"{\"action\":\"\xc3\x28\"}", json!(null)),
    ];
    for (body, action) in cases {
        let r = d.post("/api/v1/actions", body);
        let what = String::from_utf8_lossy(body);
        assert_eq!(r.status, 400, "{what}");
        let v = r.json();
        assert_eq!(v["ok"], false, "{what}");
        assert_eq!(v["accepted"], false, "{what}");
        assert_eq!(v["status"], "rejected", "{what}");
        assert_eq!(&v["action"], action, "{what}");
        assert!(
            v["reason"].as_str().is_some_and(|s| !s.is_empty()),
            "{what}"
        );
        assert_eq!(v["error"]["code"], "invalid_request", "{what}");
        assert!(v["error"]["message"].is_string(), "{what}");
        assert!(v["error"]["details"].is_object(), "{what}");
    }
    let r = d.post("/api/v1/actions", br#"{"action":"nope"}"#);
    assert_eq!(
        r.json()["error"]["details"]["knownActions"],
        json!(["coven.capabilities.refresh"])
    );
    d.assert_alive();
}

#[test]
fn router_errors() {
    let d = Daemon::start();
    for path in [
        "/api/v1",
        "/api/v1/",
        "/",
        "/nope",
        "/api/v1/nope",
        "/api/v1/health/extra",
        "/api",
    ] {
        let r = d.get(path);
        assert_eq!((r.status, r.code()), (404, "not_found".into()), "{path}");
        assert!(r.json()["error"]["message"].is_string());
    }
    for (path, version) in [
        ("/api/v2/health", "v2"),
        ("/api/v0", "v0"),
        ("/api/latest/sessions/x", "latest"),
    ] {
        let r = d.get(path);
        assert_eq!(r.status, 404, "{path}");
        assert_eq!(
            r.json(),
            json!({"error": {"code": "invalid_request", "message": "Unsupported API version.",
                             "details": {"apiVersion": version, "supportedApiVersions": ["v1"]}}}),
        );
    }
    // Percent-decoded segments.
    assert_eq!(d.get("/api/v1/%68%65alth").status, 200);
    let r = d.get("/api/v1/%ff");
    assert_eq!((r.status, r.code()), (400, "invalid_request".into()));
    d.assert_alive();
}

#[test]
fn method_not_allowed() {
    let d = Daemon::start();
    for (method, path, allow) in [
        ("POST", "/api/v1/health", "GET, HEAD"),
        ("DELETE", "/api-version", "GET, HEAD"),
        ("PUT", "/api/v1/capabilities", "GET, HEAD"),
        ("GET", "/api/v1/actions", "POST"),
        ("BREW", "/api/v1/actions", "POST"),
    ] {
        let r = d.request(method, path, Some(b"{}"));
        assert_eq!(
            (r.status, r.code()),
            (405, "method_not_allowed".into()),
            "{method} {path}"
        );
        assert_eq!(r.header("allow"), Some(allow));
    }
    d.assert_alive();
}

/// docs/API.md documents every route of the router's table, with each
/// method it answers.
#[test]
fn api_document_covers_every_route() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/API.md")).unwrap();
    let mut missing = Vec::new();
    for &(path, route) in coven::api::router::ROUTES {
        for method in route.allow().split(", ").filter(|m| *m != "HEAD") {
            let entry = format!("{method} /api/v1/{path}");
            if !doc.contains(&entry) {
                missing.push(entry);
            }
        }
    }
    assert!(missing.is_empty(), "docs/API.md lacks {missing:?}");
    // And every code the envelope can carry.
    for code in [
        "not_found",
        "invalid_request",
        "session_not_found",
        "session_not_live",
        "project_root_violation",
        "pty_spawn_failed",
        "runtime_unavailable",
        "internal_error",
        "method_not_allowed",
        "payload_too_large",
        "request_header_too_large",
        "input_too_large",
        "session_live",
        "daemon_identity_mismatch",
        "restart_refused",
    ] {
        assert!(
            doc.contains(&format!("`{code}`")),
            "docs/API.md lacks {code}"
        );
    }
}
