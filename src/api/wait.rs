//! `GET /api/v1/sessions/:id/wait`: a held request that answers when the
//! session has ended (`for=exit`), printed nothing for `quietMs`
//! (`for=quiet`), or printed text that matches `pattern` (`for=match`), or
//! with `{ "met": false }` at `timeoutMs`.
//!
//! A wait is parked like a long poll. Its state (the pattern, the text
//! kept for matches that span reads, the escape parser) is in `Api::waits`,
//! indexed by the hold's `limit`; the hold's `cursor` is the last event it
//! has looked at. It is woken only when its session has new events, and
//! then looks only at those: a parked wait costs nothing while nothing
//! happens, and no timer but its deadline (and the quiet deadline, pushed
//! back only when it is reached). The match waits on one session share its
//! output as text (`Shown`): each output event is decoded and stripped of
//! escapes once, whatever the number of waits; each wait then only appends
//! that text to its window and searches it.

use std::time::{Duration, Instant};

use serde_json::json;

use super::error::ApiError;
use super::query::{bad_query, number, query_param};
use super::sessions::find;
use super::Api;
use crate::http::{Hold, HoldKind, HoldState, Reply};
use crate::ring::Kind;

/// The longest a wait is held (`timeoutMs` is clamped to it; it is also the
/// default).
pub const MAX_TIMEOUT_MS: u64 = 600_000;
/// The longest pattern accepted, in bytes.
pub const MAX_PATTERN_BYTES: usize = 1024;
/// Text kept from earlier output so that a match may span reads: a match
/// must start no more than this many bytes before the output that
/// completes it.
pub const MATCH_WINDOW_BYTES: usize = 1024;

pub enum For {
    Exit,
    Quiet(Duration),
    Match(Box<Matcher>),
}

impl For {
    fn name(&self) -> &'static str {
        match self {
            For::Exit => "exit",
            For::Quiet(_) => "quiet",
            For::Match(_) => "match",
        }
    }
}

pub struct Wait {
    what: For,
    /// When the request came: quiet is counted from here at the earliest.
    since: Instant,
    deadline: Instant,
}

/// One session's output as text, for the match waits on it.
pub struct Shown {
    /// Which incarnation of the slab key (`Hold::tag`).
    serial: u64,
    /// Carries an escape sequence split across reads over to the next.
    parser: vte::Parser,
    /// The newest event turned into text.
    upto: u64,
    /// The text of the events of the latest turn, in seq order: every wait
    /// on the session is woken in that turn and takes it from here.
    batch: Vec<(u64, String)>,
    /// Match waits on the session (the entry goes with the last).
    waits: usize,
}

/// Output as a person sees it: escape sequences and control characters
/// dropped (a `vte` parser, so a sequence split across reads is still
/// recognised), newlines and tabs kept.
pub fn strip(parser: &mut vte::Parser, data: &str, out: &mut String) {
    parser.advance(&mut Text(out), data.as_bytes());
}

/// A pattern, and the window of text (joined across reads) it searches.
pub struct Matcher {
    find: Find,
    text: String,
    /// Bytes of `text` already searched (new text starts here).
    searched: usize,
}

/// A pattern without metacharacters is searched for as a literal
/// (`memchr::memmem`, many times faster than any regex engine's scan);
/// others run on `regex-lite`, which has no literal prefilter.
enum Find {
    Literal(Box<memchr::memmem::Finder<'static>>),
    Regex(regex_lite::Regex),
}

struct Text<'a>(&'a mut String);

impl vte::Perform for Text<'_> {
    fn print(&mut self, c: char) {
        self.0.push(c);
    }

    fn execute(&mut self, byte: u8) {
        if byte == b'\n' || byte == b'\t' {
            self.0.push(byte as char);
        }
    }
}

impl Matcher {
    pub fn new(pattern: &str) -> Result<Matcher, String> {
        // `^` and `$` at line boundaries, as `grep` users expect of text
        // that is lines.
        let re = regex_lite::RegexBuilder::new(pattern)
            .multi_line(true)
            .build()
            .map_err(|e| e.to_string())?;
        if re.is_match("") {
            return Err("the pattern matches empty text".into());
        }
        let plain = regex_lite::escape(pattern) == pattern;
        Ok(Matcher {
            find: if plain {
                Find::Literal(Box::new(
                    memchr::memmem::Finder::new(pattern.as_bytes()).into_owned(),
                ))
            } else {
                Find::Regex(re)
            },
            text: String::new(),
            searched: 0,
        })
    }

    /// Takes more text (searched by the next `search`).
    pub fn add(&mut self, text: &str) {
        self.text.push_str(text);
    }

    /// Bytes of text held (what `add` has added since the last search
    /// ends here).
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// The first match that ends in the text added since the last search,
    /// if any, with where it ends (as `len` `text_len` counted before the search);
    /// then keeps only the last `MATCH_WINDOW_BYTES` of text.
    pub fn search(&mut self) -> Option<(String, usize)> {
        let old = self.searched;
        let from = floor_boundary(&self.text, old.saturating_sub(MATCH_WINDOW_BYTES));
        let found = if self.text.len() == old {
            None
        } else {
            match &self.find {
                Find::Literal(f) => f
                    .find_iter(&self.text.as_bytes()[from..])
                    .map(|at| from + at..from + at + f.needle().len())
                    .find(|m| m.end > old),
                Find::Regex(re) => {
                    let mut at = from;
                    loop {
                        match re.find_at(&self.text, at) {
                            Some(m) if m.end() > old => break Some(m.range()),
                            Some(m) => at = m.end().max(m.start() + 1),
                            None => break None,
                        }
                        if at > self.text.len() {
                            break None;
                        }
                    }
                }
            }
        }
        .map(|r| (self.text[r.clone()].to_owned(), r.end));
        let cut = floor_boundary(
            &self.text,
            self.text.len().saturating_sub(MATCH_WINDOW_BYTES),
        );
        self.text.drain(..cut);
        self.searched = self.text.len();
        found
    }
}

/// The nearest char boundary at or below `at`.
fn floor_boundary(s: &str, mut at: usize) -> usize {
    while !s.is_char_boundary(at) {
        at -= 1;
    }
    at
}

fn required(field: &str) -> ApiError {
    ApiError::invalid(format!("`{field}` is required.")).with_details(json!({ "field": field }))
}

/// Parses the request, then answers at once or parks it.
pub fn on_wait(
    api: &mut Api,
    id: &str,
    query: &[u8],
    out: &mut Vec<u8>,
) -> Result<Reply, ApiError> {
    let what = match query_param(query, "for")?.as_deref() {
        Some("exit") => For::Exit,
        Some("quiet") => match number(query, "quietMs")? {
            Some(ms) if ms > 0 => For::Quiet(Duration::from_millis(ms.min(MAX_TIMEOUT_MS))),
            Some(_) => {
                return Err(bad_query("quietMs", "0", "`quietMs` must be at least 1."));
            }
            None => return Err(required("quietMs")),
        },
        Some("match") => {
            let Some(pattern) = query_param(query, "pattern")? else {
                return Err(required("pattern"));
            };
            if pattern.len() > MAX_PATTERN_BYTES {
                return Err(ApiError::invalid(format!(
                    "`pattern` is longer than {MAX_PATTERN_BYTES} bytes."
                ))
                .with_details(json!({ "field": "pattern", "maxBytes": MAX_PATTERN_BYTES })));
            }
            match Matcher::new(&pattern) {
                Ok(m) => For::Match(Box::new(m)),
                Err(e) => {
                    return Err(ApiError::invalid(format!("`pattern` is not valid: {e}"))
                        .with_details(json!({ "field": "pattern", "pattern": &*pattern })))
                }
            }
        }
        Some(other) => {
            return Err(bad_query(
                "for",
                other,
                "`for` must be `exit`, `quiet` or `match`.",
            ))
        }
        None => return Err(required("for")),
    };
    let after = number(query, "afterSeq")?;
    let timeout = number(query, "timeoutMs")?
        .unwrap_or(MAX_TIMEOUT_MS)
        .min(MAX_TIMEOUT_MS);
    let (key, _) = find(&mut api.sessions, id)?;
    let s = api.sessions.get(key).expect("found");
    let cursor = after.unwrap_or_else(|| s.last_seq());
    let serial = s.serial;
    let now = Instant::now();
    if let For::Match(_) = what {
        let fresh = || Shown {
            serial,
            parser: vte::Parser::new(),
            upto: cursor,
            batch: Vec::new(),
            waits: 0,
        };
        let shown = api.shown.entry(key).or_insert_with(fresh);
        if shown.serial != serial {
            // Left by a session that went away; the key is another's now.
            *shown = fresh();
        }
        shown.waits += 1;
    }
    let slot = api.waits.insert(Wait {
        what,
        since: now,
        deadline: now + Duration::from_millis(timeout),
    });
    let hold = Hold {
        kind: HoldKind::Wait,
        topic: key,
        tag: serial,
        cursor,
        state: HoldState::Slot(slot),
        until: None,
    };
    Ok(check(api, hold, false, out))
}

/// Looks at what happened since the hold's cursor: answers if the wait is
/// met or its deadline passed, else parks it again.
pub fn check(api: &mut Api, mut hold: Hold, expired: bool, out: &mut Vec<u8>) -> Reply {
    out.clear();
    let now = Instant::now();
    // Told to answer before its time: the daemon is stopping.
    let forced = expired && hold.until.is_none_or(|t| now < t);
    let Api {
        waits,
        shown,
        sessions,
        ..
    } = api;
    let Some(wait) = waits.get_mut(super::slot_of(&hold)) else {
        return ApiError::internal().write(out);
    };
    let session = sessions.get(hold.topic).filter(|s| s.serial == hold.tag);
    let Some(s) = session else {
        // Deleted while waited on: it can never meet the condition.
        release(api, &hold);
        return ApiError::new(404, "session_not_found", "Session was not found.").write(out);
    };
    let mut met: Option<(u64, Option<String>)> = None;
    match &mut wait.what {
        For::Exit => {
            if s.is_over() {
                met = Some((s.last_seq(), None));
            }
        }
        For::Quiet(quiet) => {
            let last = s.proc.last_output.map_or(wait.since, |t| t.max(wait.since));
            let quiet_at = last + *quiet;
            if now >= quiet_at {
                met = Some((s.last_seq(), None));
            } else {
                hold.until = Some(quiet_at.min(wait.deadline));
            }
        }
        For::Match(matcher) => {
            let Some(sh) = shown
                .get_mut(&hold.topic)
                .filter(|sh| sh.serial == hold.tag)
            else {
                return ApiError::internal().write(out);
            };
            // The session's new output as text, once for all its waits.
            let newest = s.history.ring.last_seq().unwrap_or(0);
            if newest > sh.upto {
                sh.batch.clear();
                for e in s.history.ring.after(sh.upto) {
                    if e.kind != Kind::Output {
                        continue;
                    }
                    if let Some(data) = super::wire::payload_data(&e.payload) {
                        let mut text = String::new();
                        strip(&mut sh.parser, &data, &mut text);
                        sh.batch.push((e.seq, text));
                    }
                }
                sh.upto = newest;
            }
            // All of this wait's new text first, then one search: a
            // flood's many reads per turn cost one scan, not one each.
            // Where each event's text ends names the one a match ends in.
            let mut ends: Vec<(usize, u64)> = Vec::new();
            let mut own: Option<vte::Parser> = None;
            for e in s.history.ring.after(hold.cursor) {
                if e.kind != Kind::Output {
                    continue;
                }
                match sh.batch.binary_search_by_key(&e.seq, |&(seq, _)| seq) {
                    Ok(i) => matcher.add(&sh.batch[i].1),
                    // Older than the shared text (`afterSeq` reaching
                    // back): stripped for this wait alone.
                    Err(_) => {
                        let Some(data) = super::wire::payload_data(&e.payload) else {
                            continue;
                        };
                        let mut text = String::new();
                        strip(own.get_or_insert_with(vte::Parser::new), &data, &mut text);
                        matcher.add(&text);
                    }
                }
                ends.push((matcher.text_len(), e.seq));
            }
            if let Some((found, end)) = matcher.search() {
                let seq = ends.iter().find(|&&(at, _)| at >= end).map(|&(_, seq)| seq);
                met = Some((seq.unwrap_or(hold.cursor), Some(found)));
            }
        }
    }
    hold.cursor = hold.cursor.max(s.history.ring.last_seq().unwrap_or(0));
    let name = wait.what.name();
    let reply = match met {
        Some((seq, found)) => {
            let mut body = json!({ "met": true, "for": name, "seq": seq });
            if let Some(found) = found {
                body["match"] = found.into();
            }
            super::wire::write_json(out, &body);
            Reply::new(200)
        }
        None if forced || now >= wait.deadline => {
            super::wire::write_json(out, &json!({ "met": false }));
            Reply::new(200)
        }
        None => {
            hold.until = Some(hold.until.unwrap_or(wait.deadline).min(wait.deadline));
            return Reply {
                hold: Some(hold),
                ..Reply::new(200)
            };
        }
    };
    release(api, &hold);
    reply
}

/// Forgets a wait (answered, or its connection gone), and its session's
/// shared text with the last match wait on it.
pub fn release(api: &mut Api, hold: &Hold) {
    let Some(wait) = api.waits.try_remove(super::slot_of(hold)) else {
        return;
    };
    if let For::Match(_) = wait.what {
        if let Some(sh) = api.shown.get_mut(&hold.topic) {
            if sh.serial == hold.tag {
                sh.waits -= 1;
                if sh.waits == 0 {
                    api.shown.remove(&hold.topic);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A matcher fed raw output through its own stripper.
    struct Feeder {
        parser: vte::Parser,
        m: Matcher,
    }

    fn feeder(pattern: &str) -> Feeder {
        Feeder {
            parser: vte::Parser::new(),
            m: Matcher::new(pattern).unwrap(),
        }
    }

    impl Feeder {
        fn feed(&mut self, data: &str) -> Option<String> {
            let mut text = String::new();
            strip(&mut self.parser, data, &mut text);
            self.m.add(&text);
            self.m.search().map(|(found, _)| found)
        }
    }

    #[test]
    fn matches_text_as_seen_across_reads() {
        let mut m = feeder(r"Done in \d+s");
        assert_eq!(m.feed("\x1b[1mDo"), None);
        assert_eq!(m.feed("ne\x1b[0m in "), None);
        assert_eq!(m.feed("\x1b]0;title\x07"), None);
        assert_eq!(m.feed("12s\r\n"), Some("Done in 12s".into()));
        // `$` ends a line.
        let mut m = feeder("^ok$");
        assert_eq!(m.feed("not ok\r\nok\r\n"), Some("ok".into()));
        // An escape split across reads is still an escape.
        let mut m = feeder("ab");
        assert_eq!(m.feed("a\x1b["), None);
        assert_eq!(m.feed("31mb"), Some("ab".into()));
        // A match already reported is not found again.
        let mut m = feeder("x");
        assert_eq!(m.feed("x"), Some("x".into()));
        assert_eq!(m.feed("y"), None);
    }

    #[test]
    fn the_window_is_bounded() {
        for pattern in ["never", "nev(er)+"] {
            let mut m = feeder(pattern);
            for _ in 0..100 {
                assert_eq!(m.feed(&"é".repeat(1000)), None);
                assert!(m.m.text.len() <= MATCH_WINDOW_BYTES);
            }
            // A match that spans two reads, within the window.
            assert_eq!(m.feed("ne"), None);
            assert_eq!(m.feed("ver"), Some("never".into()));
        }
    }

    #[test]
    fn literals_and_regexes_agree() {
        for (pattern, reads, want) in [
            ("ok", &["o", "k"][..], Some("ok")),
            ("o.", &["o", "k"], Some("ok")),
            ("b(a)+r", &["xxbaa", "aar"], Some("baaaar")),
            ("^x$", &["ax\n", "x\n"], Some("x")),
        ] {
            let mut m = feeder(pattern);
            let mut got = None;
            for r in reads {
                got = got.or(m.feed(r));
            }
            assert_eq!(got.as_deref(), want, "{pattern}");
        }
    }

    #[test]
    fn bad_patterns_are_refused() {
        assert!(Matcher::new("(").is_err());
        assert!(Matcher::new("a*").is_err(), "matches empty text");
    }
}
