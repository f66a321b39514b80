//! A program's output into a screen grid: never a panic, and the screen
//! does not depend on how the output was split into events (the feed
//! carries a sequence it rewrites across a split). Output events are text:
//! valid UTF-8, split only between characters.
#![no_main]

use coven::api::screen::redraw_of;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let mut cut = usize::from(cut) % (text.len() + 1);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    let bytes = text.as_bytes();
    let whole = redraw_of(20, 6, &[bytes]);
    let split = redraw_of(20, 6, &[&bytes[..cut], &bytes[cut..]]);
    assert_eq!(whole, split);
});
