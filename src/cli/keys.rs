//! `coven input`'s key names, as tmux's `send-keys` takes them: an argument
//! that names a key sends the bytes a terminal sends for it (xterm's, in
//! its normal cursor mode); any other argument is text. Names are
//! case-sensitive, so a word typed in lower case stays a word.

/// The bytes a named key sends, if `name` names one.
pub fn key(name: &str) -> Option<String> {
    if let Some(rest) = name.strip_prefix("M-") {
        // Alt: Escape, then the key (or the character).
        let inner = key(rest).or_else(|| single(rest).map(String::from))?;
        return Some(format!("\x1b{inner}"));
    }
    if let Some(rest) = name.strip_prefix("C-") {
        return control(rest).map(|b| char::from(b).to_string());
    }
    let s = match name {
        "Enter" => "\r",
        "Tab" => "\t",
        "BTab" => "\x1b[Z",
        "Escape" | "Esc" => "\x1b",
        "Space" => " ",
        "BSpace" => "\x7f",
        "Up" => "\x1b[A",
        "Down" => "\x1b[B",
        "Right" => "\x1b[C",
        "Left" => "\x1b[D",
        "Home" => "\x1b[H",
        "End" => "\x1b[F",
        "PageUp" | "PgUp" | "PPage" => "\x1b[5~",
        "PageDown" | "PgDn" | "NPage" => "\x1b[6~",
        "Insert" | "IC" => "\x1b[2~",
        "Delete" | "DC" => "\x1b[3~",
        "F1" => "\x1bOP",
        "F2" => "\x1bOQ",
        "F3" => "\x1bOR",
        "F4" => "\x1bOS",
        "F5" => "\x1b[15~",
        "F6" => "\x1b[17~",
        "F7" => "\x1b[18~",
        "F8" => "\x1b[19~",
        "F9" => "\x1b[20~",
        "F10" => "\x1b[21~",
        "F11" => "\x1b[23~",
        "F12" => "\x1b[24~",
        _ => return None,
    };
    Some(s.to_owned())
}

/// The one character of `s`, if it has exactly one.
fn single(s: &str) -> Option<&str> {
    let mut chars = s.chars();
    chars.next()?;
    chars.next().is_none().then_some(s)
}

/// `C-x`: the control byte for x.
fn control(rest: &str) -> Option<u8> {
    if rest == "Space" {
        return Some(0);
    }
    let [b] = rest.as_bytes() else {
        return None;
    };
    match b {
        b'a'..=b'z' => Some(b - b'a' + 1),
        b'A'..=b'Z' => Some(b - b'A' + 1),
        b'@' => Some(0),
        b'[' => Some(0x1b),
        b'\\' => Some(0x1c),
        b']' => Some(0x1d),
        b'^' => Some(0x1e),
        b'_' => Some(0x1f),
        b'?' => Some(0x7f),
        _ => None,
    }
}

/// What `coven input`'s arguments type, one after another.
pub fn typed(args: &[String]) -> String {
    args.iter()
        .map(|a| key(a).unwrap_or_else(|| a.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_text() {
        let t = |a: &[&str]| typed(&a.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        assert_eq!(t(&["echo hi", "Enter"]), "echo hi\r");
        assert_eq!(t(&["C-c", "C-d", "C-["]), "\x03\x04\x1b");
        assert_eq!(t(&["Up", "Left", "Tab", "Escape"]), "\x1b[A\x1b[D\t\x1b");
        assert_eq!(t(&["M-b", "M-Enter"]), "\x1bb\x1b\r");
        // Not names: text, as typed.
        assert_eq!(t(&["enter", "C-", "C-ab", "M-"]), "enterC-C-abM-");
    }
}
