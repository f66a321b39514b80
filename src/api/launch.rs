//! `POST /sessions`: a launch, in three steps, none of which waits on the
//! loop. The request is checked as far as it can be without the disk, then
//! held (`HoldKind::LongPoll` on `ANSWER_TOPIC`) while the writer resolves
//! its paths and finds the harness's executable (`Sessions::resolve`);
//! then the session is recorded and the supervisor asked to start the
//! harness (`Sessions::launch`); its answer (`Sessions::launched`) gives
//! the 201 (once the record is durable) or the 500 `pty_spawn_failed`.
//! Every field is validated before anything is recorded or spawned.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::json;

use super::body::{object, optional_int, optional_str, required_str};
use super::error::ApiError;
use super::sessions::record;
use super::{wire, Api};
use crate::http::{Hold, HoldKind, HoldState, Reply};
use crate::session::{LaunchError, LaunchSpec, Resolution, ANSWER_TOPIC};

const MAX_DIMENSION: u64 = crate::journal::MAX_TERMINAL_SIDE as u64;

/// How long a launch may take (resolving its paths behind the writer's
/// queue, then the supervisor's fork and exec) before its client is told
/// so; the session, if recorded, goes on.
const LAUNCH_WAIT: Duration = Duration::from_secs(60);

/// A launch request held while its paths are resolved or its harness
/// started, by its hold's `tag`.
pub struct Pending {
    request: Request,
    stage: Stage,
}

/// What the request said, checked as far as it can be without the disk.
struct Request {
    root: String,
    cwd: Option<String>,
    harness: usize,
    prompt: String,
    title: String,
    cols: u16,
    rows: u16,
}

enum Stage {
    /// The writer's task `ticket` resolves the paths.
    Resolving { ticket: u64 },
    /// Session `key` is recorded; the supervisor starts its harness. `from`:
    /// the writer's ticket before the launch's writes.
    Starting { key: usize, from: u64 },
}

fn parse(api: &Api, body: &[u8]) -> Result<Request, ApiError> {
    let obj = object(body, false)?;
    let root = required_str(&obj, "projectRoot")?;
    let harness = required_str(&obj, "harness")?;
    let prompt = required_str(&obj, "prompt")?;
    let cwd = optional_str(&obj, "cwd")?;
    let title = optional_str(&obj, "title")?;
    let cols = optional_int(&obj, "cols", 1, MAX_DIMENSION)?.unwrap_or(80) as u16;
    let rows = optional_int(&obj, "rows", 1, MAX_DIMENSION)?.unwrap_or(24) as u16;
    let harnesses = api.sessions.harnesses();
    let Some(harness) = harnesses.iter().position(|h| h.id == harness) else {
        let known: Vec<&str> = harnesses.iter().map(|h| h.id.as_str()).collect();
        return Err(ApiError::invalid("Unknown harness.").with_details(
            json!({ "field": "harness", "harness": harness, "knownHarnesses": known }),
        ));
    };
    if !std::path::Path::new(root).is_absolute() {
        return Err(ApiError::invalid("`projectRoot` must be an absolute path.")
            .with_details(json!({ "field": "projectRoot", "projectRoot": root })));
    }
    Ok(Request {
        root: root.to_owned(),
        cwd: cwd.filter(|c| !c.is_empty()).map(str::to_owned),
        harness,
        prompt: prompt.to_owned(),
        title: title
            .filter(|t| !t.trim().is_empty())
            .unwrap_or(prompt)
            .to_owned(),
        cols,
        rows,
    })
}

/// The resolved paths checked: both directories, the cwd inside the root.
fn check(req: &Request, found: Resolution) -> Result<(LaunchSpec, Option<PathBuf>), ApiError> {
    let bad = |field: &str, given: &str, message: String| {
        ApiError::invalid(message).with_details(json!({ "field": field, field: given }))
    };
    let project_root = match found.root {
        Err(e) => {
            return Err(bad(
                "projectRoot",
                &req.root,
                format!("projectRoot cannot be resolved: {e}."),
            ))
        }
        Ok((_, false)) => {
            return Err(bad(
                "projectRoot",
                &req.root,
                "projectRoot is not a directory.".into(),
            ))
        }
        Ok((root, true)) => root,
    };
    let cwd = match (&req.cwd, found.cwd) {
        (Some(c), Some(resolved)) => {
            let joined = project_root.join(c);
            let shown = joined.display().to_string();
            match resolved {
                Ok((canon, _)) if !canon.starts_with(&project_root) => {
                    return Err(ApiError::new(
                        400,
                        "project_root_violation",
                        "`cwd` resolves outside the project root.",
                    )
                    .with_details(
                        json!({ "projectRoot": project_root.display().to_string(), "cwd": c }),
                    ))
                }
                Err(e) => return Err(bad("cwd", &shown, format!("cwd cannot be resolved: {e}."))),
                Ok((_, false)) => return Err(bad("cwd", &shown, "cwd is not a directory.".into())),
                Ok((canon, true)) => canon,
            }
        }
        _ => project_root.clone(),
    };
    Ok((
        LaunchSpec {
            project_root,
            cwd,
            harness: req.harness,
            prompt: req.prompt.clone(),
            title: req.title.clone(),
            cols: req.cols,
            rows: req.rows,
        },
        found.exe,
    ))
}

/// `POST /sessions`: checks what needs no disk, then holds the request
/// while the writer resolves its paths.
pub fn on_create(api: &mut Api, body: &[u8]) -> Result<Reply, ApiError> {
    let request = parse(api, body)?;
    let max_live = api.sessions.limits().max_live;
    if api.sessions.live() >= max_live {
        return Err(at_capacity(max_live));
    }
    let ticket = api.sessions.resolve(
        PathBuf::from(&request.root),
        request.cwd.clone(),
        request.harness,
    );
    let tag = api.launches.insert(Pending {
        request,
        stage: Stage::Resolving { ticket },
    });
    Ok(held(tag, Instant::now() + LAUNCH_WAIT))
}

fn held(tag: usize, until: Instant) -> Reply {
    Reply {
        hold: Some(Hold {
            kind: HoldKind::LongPoll,
            topic: ANSWER_TOPIC,
            tag: 0,
            cursor: 0,
            state: HoldState::Slot(tag),
            until: Some(until),
        }),
        ..Reply::new(201)
    }
}

fn at_capacity(max_live: usize) -> ApiError {
    ApiError::new(503, "runtime_unavailable", "Too many live sessions.")
        .with_details(json!({ "maxLiveSessions": max_live }))
}

/// A held launch is asked again: it moves on as far as it can.
pub fn resume(api: &mut Api, hold: &Hold, expired: bool, out: &mut Vec<u8>) -> Reply {
    out.clear();
    let tag = super::slot_of(hold);
    let result = step(api, tag, out);
    match result {
        Ok(Some(reply)) => {
            api.launches.try_remove(tag);
            reply
        }
        Ok(None) if !expired => Reply {
            hold: Some(*hold),
            ..Reply::new(201)
        },
        Ok(None) => {
            let session = match api.launches.get(tag).map(|p| &p.stage) {
                Some(Stage::Starting { key, .. }) => {
                    api.sessions.get(*key).map(|s| s.id.to_string())
                }
                _ => None,
            };
            release(api, hold);
            ApiError::new(
                503,
                "runtime_unavailable",
                "The launch did not complete in time; if a session was recorded, it goes on.",
            )
            .with_details(json!({ "sessionId": session }))
            .write(out)
        }
        Err(err) => {
            api.launches.try_remove(tag);
            out.clear();
            err.write(out)
        }
    }
}

/// One step of a held launch: `Ok(None)` while it waits.
fn step(api: &mut Api, tag: usize, out: &mut Vec<u8>) -> Result<Option<Reply>, ApiError> {
    let Some(pending) = api.launches.get(tag) else {
        return Err(ApiError::internal());
    };
    if let Stage::Resolving { ticket } = pending.stage {
        let Some(answer) = api.sessions.take_answer(ticket) else {
            return Ok(None);
        };
        let found = answer
            .downcast::<Resolution>()
            .map_err(|_| ApiError::internal())?;
        let (spec, exe) = check(&pending.request, *found)?;
        let harness = api.sessions.harnesses()[spec.harness].id.clone();
        let from = api.sessions.submitted();
        let key = match api.sessions.launch(spec, exe) {
            Ok(key) => key,
            Err(LaunchError::AtCapacity { max_live }) => return Err(at_capacity(max_live)),
            Err(LaunchError::Storage(message)) => {
                log::error!("launch: {message}");
                return Err(ApiError::internal().with_details(json!({ "reason": message })));
            }
            Err(LaunchError::SpawnFailed { key, message }) => {
                return Ok(Some(spawn_failed(api, key, &harness, &message, from, out)))
            }
        };
        api.launches[tag].stage = Stage::Starting { key, from };
    }
    let Stage::Starting { key, from } = api.launches[tag].stage else {
        unreachable!("resolved above");
    };
    match api.sessions.launched(key) {
        None => Ok(None),
        Some(Ok(())) => {
            let s = api.sessions.get(key).expect("launched");
            wire::write_json(out, &record(s));
            // 201 once its record is durable.
            Ok(Some(api.durable(from, 201, out)))
        }
        Some(Err(message)) => {
            let harness = api
                .sessions
                .get(key)
                .map_or(String::new(), |s| s.harness().to_owned());
            Ok(Some(spawn_failed(api, key, &harness, &message, from, out)))
        }
    }
}

/// The harness could not be started: 500, answered once the failed
/// session's record and exit event are durable (and so visible).
fn spawn_failed(
    api: &mut Api,
    key: usize,
    harness: &str,
    message: &str,
    from: u64,
    out: &mut Vec<u8>,
) -> Reply {
    let id = api.sessions.get(key).map(|s| s.id.to_string());
    let err = ApiError::new(500, "pty_spawn_failed", "The harness could not be started.")
        .with_details(json!({ "sessionId": id, "harness": harness, "reason": message }));
    out.clear();
    let reply = err.write(out);
    api.durable(from, reply.status, out)
}

/// The client is gone (or the answer expired): nobody waits for it now.
pub fn release(api: &mut Api, hold: &Hold) {
    match api
        .launches
        .try_remove(super::slot_of(hold))
        .map(|p| p.stage)
    {
        Some(Stage::Resolving { ticket }) => api.sessions.forget_answer(ticket),
        Some(Stage::Starting { key, .. }) => api.sessions.forget_launch(key),
        None => {}
    }
}
