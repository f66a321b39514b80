//! A session as it is kept on disk: its `meta.json` (`SessionMeta`), and
//! the payloads of the events the daemon records (each stored as the JSON
//! string literal a response copies: `payload_json`). The journal keeps
//! these bytes as they are; `api` shows them.

use serde::{Deserialize, Serialize};

/// Encodes `payload` as the value of an event's `payload_json`: the payload
/// object serialized, then that text as a JSON string literal (quotes
/// included), ready to copy into a response.
fn payload_literal<T: Serialize>(payload: &T) -> Box<[u8]> {
    let inner = serde_json::to_string(payload).unwrap_or_else(|_| "{}".to_owned());
    serde_json::to_vec(&inner)
        .unwrap_or_else(|_| b"\"{}\"".to_vec())
        .into_boxed_slice()
}

/// `{ data }`, for `output` and `input` events: the bytes `payload_literal`
/// makes of it, in one pass and one allocation. Written by hand because it
/// runs on every read of every PTY: serde would escape the data, allocate
/// the object's text, escape that again and allocate again.
pub fn data_payload(data: &str) -> Box<[u8]> {
    const HEAD: &[u8] = br#""{\"data\":\""#;
    const TAIL: &[u8] = br#"\"}""#;
    let bytes = data.as_bytes();
    let mut out = Vec::with_capacity(HEAD.len() + bytes.len() + TAIL.len());
    out.extend_from_slice(HEAD);
    let mut run = 0;
    let mut i = 0;
    loop {
        i += clean_len(&bytes[i..]);
        let Some(&b) = bytes.get(i) else {
            break;
        };
        out.extend_from_slice(&bytes[run..i]);
        i += 1;
        run = i;
        // The escape serde_json writes for the byte in the object's text,
        // then that escape escaped again as a string's content.
        match b {
            b'"' => out.extend_from_slice(br#"\\\""#),
            b'\\' => out.extend_from_slice(br#"\\\\"#),
            b'\n' => out.extend_from_slice(br#"\\n"#),
            b'\r' => out.extend_from_slice(br#"\\r"#),
            b'\t' => out.extend_from_slice(br#"\\t"#),
            0x08 => out.extend_from_slice(br#"\\b"#),
            0x0c => out.extend_from_slice(br#"\\f"#),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(br#"\\u00"#);
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 15)]);
            }
        }
    }
    out.extend_from_slice(&bytes[run..]);
    out.extend_from_slice(TAIL);
    out.into_boxed_slice()
}

/// How many bytes from the start need no escape: 32 at a time (four words
/// tested together, one branch) while they are clean (terminal output
/// mostly is), then eight at a time, then one by one.
fn clean_len(bytes: &[u8]) -> usize {
    let word = |w: &[u8], at: usize| u64::from_le_bytes(w[at..at + 8].try_into().expect("8 bytes"));
    let mut n = 0;
    for w in bytes.chunks_exact(32) {
        if escapes(word(w, 0)) | escapes(word(w, 8)) | escapes(word(w, 16)) | escapes(word(w, 24))
            != 0
        {
            break;
        }
        n += 32;
    }
    for w in bytes[n..].chunks_exact(8) {
        if escapes(word(w, 0)) != 0 {
            break;
        }
        n += 8;
    }
    n + bytes[n..]
        .iter()
        .position(|&b| matches!(b, 0..=0x1f | b'"' | b'\\'))
        .unwrap_or(bytes.len() - n)
}

/// Not zero if any of the eight bytes is a control character (< 0x20),
/// `"` or `\\` (the bytes JSON escapes), by word arithmetic: a byte's top bit is
/// set in `(x - 0x01…) & !x & 0x80…` exactly when that byte of `x` is zero
/// (or, past a zero byte, possibly; which only sends the slow path a word
/// that needed it anyway), and `x - 0x20…` borrows out of a byte below
/// 0x20 the same way.
fn escapes(word: u64) -> u64 {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    below_space | zero(word ^ (ONES * u64::from(b'"'))) | zero(word ^ (ONES * u64::from(b'\\')))
}

/// `data_payload` as serde makes it: what the fast one must equal (fuzzed).
#[doc(hidden)]
pub fn data_payload_by_serde(data: &str) -> Box<[u8]> {
    #[derive(Serialize)]
    struct Data<'a> {
        data: &'a str,
    }
    payload_literal(&Data { data })
}

/// The `data` of an `output` or `input` event's stored payload (the
/// `payload_json` string literal that `data_payload` makes).
pub fn payload_data(payload: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Data<'a> {
        #[serde(borrow)]
        data: std::borrow::Cow<'a, str>,
    }
    let json: std::borrow::Cow<'_, str> = serde_json::from_slice(payload).ok()?;
    let d: Data<'_> = serde_json::from_str(&json).ok()?;
    Some(d.data.into_owned())
}

/// The status and exit code an `exit` event's payload records.
pub fn exit_status_of(payload: &[u8]) -> Option<(String, Option<i32>)> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Exit {
        status: String,
        exit_code: Option<i32>,
    }
    let json: std::borrow::Cow<'_, str> = serde_json::from_slice(payload).ok()?;
    let e: Exit = serde_json::from_str(&json).ok()?;
    Some((e.status, e.exit_code))
}

/// `{ status: "killed" }`, for `kill` events.
pub fn kill_payload() -> Box<[u8]> {
    payload_literal(&serde_json::json!({ "status": "killed" }))
}

/// `{ droppedEvents, droppedBytes }`, for `output_truncated` events.
pub fn truncated_payload(events: u64, bytes: u64) -> Box<[u8]> {
    payload_literal(&serde_json::json!({ "droppedEvents": events, "droppedBytes": bytes }))
}

/// What an `output_truncated` payload counts: events and bytes.
pub fn truncated_of(payload: &[u8]) -> Option<(u64, u64)> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Gap {
        dropped_events: u64,
        dropped_bytes: u64,
    }
    let json: std::borrow::Cow<'_, str> = serde_json::from_slice(payload).ok()?;
    let g: Gap = serde_json::from_str(&json).ok()?;
    Some((g.dropped_events, g.dropped_bytes))
}

/// `{ status, exitCode, signal?, error? }`, for `exit` events.
pub fn exit_payload(
    status: &str,
    exit: Option<crate::sys::process::ExitStatus>,
    error: Option<&str>,
) -> Box<[u8]> {
    #[derive(Serialize)]
    #[serde(rename_all = "camelCase")]
    struct Exit<'a> {
        status: &'a str,
        exit_code: Option<i32>,
        /// The name of the signal that ended it, when it has one.
        #[serde(skip_serializing_if = "Option::is_none")]
        signal: Option<&'a str>,
        /// Its number, named or not.
        #[serde(skip_serializing_if = "Option::is_none")]
        signal_number: Option<i32>,
        /// The raw `waitpid` status.
        #[serde(skip_serializing_if = "Option::is_none")]
        wait_status: Option<i32>,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
    }
    let signal_number = exit.and_then(|e| e.signal());
    payload_literal(&Exit {
        status,
        exit_code: exit.and_then(|e| e.code()),
        signal: signal_number.and_then(crate::sys::process::signal_name),
        signal_number,
        wait_status: exit.map(|e| e.raw),
        error,
    })
}

/// `meta.json` of a session on disk.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct SessionMeta {
    pub id: String,
    pub project_root: String,
    pub cwd: String,
    pub harness: String,
    pub title: String,
    pub status: String,
    pub exit_code: Option<i32>,
    pub created_at: String,
    pub updated_at: String,
    /// When it was archived; absent when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived_at: Option<String>,
    /// Retention removed the oldest part of the history.
    #[serde(default)]
    pub history_cut: bool,
    /// Seq of the session's newest event when it finished (0 if unknown).
    #[serde(default)]
    pub last_seq: u64,
}

pub fn encode_meta(meta: &SessionMeta) -> Vec<u8> {
    serde_json::to_vec_pretty(meta).unwrap_or_default()
}

pub fn decode_meta(bytes: &[u8]) -> Result<SessionMeta, String> {
    serde_json::from_slice(bytes).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `data_payload` makes must be what serde makes, byte for byte.
    #[test]
    fn data_payload_is_serdes() {
        let mut cases: Vec<String> = vec![
            String::new(),
            "plain".into(),
            "x".repeat(5000),
            "quote \" back \\ slash".into(),
            "\u{1b}[1;31mred\u{1b}[0m\r\n\ttab\u{7f}".into(),
            "é ✓ 日本 🦀".into(),
            "0123456\"89abcdef\\x\u{1f} \u{20}\u{21}\u{23}\u{5b}\u{5d}".into(),
        ];
        // Each special byte at each place in a word and in a block of four
        // words, and two of them in one block.
        for special in ["\"", "\\", "\n", "\u{1f}", "\u{0}", "\u{7f}", "\u{80}"] {
            for at in 0..70 {
                cases.push(format!(
                    "{}{special}{}",
                    "a".repeat(at),
                    "b".repeat(70 - at)
                ));
                cases.push(format!("{}{special}{special}b", "a".repeat(at)));
            }
        }
        cases.push((0u8..=0x7f).map(char::from).collect());
        for c in &cases {
            assert_eq!(&*data_payload(c), &*data_payload_by_serde(c), "{c:?}");
        }
    }
}
