//! Restoring a screen from a checkpoint file whatever it holds, fed in
//! steps of any size: never a panic, never a grid larger than the API's
//! bounds, and, for a redraw the daemon could have written (text), the same
//! screen however it is split.
#![no_main]

use coven::api::screen::{checkpoint_head, restored_from};
use coven::journal::size_fits;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&step, bytes)) = data.split_first() else {
        return;
    };
    let Some((head, _)) = checkpoint_head(bytes) else {
        assert!(restored_from(bytes.to_vec(), 1 << 20).is_none());
        return;
    };
    assert!(size_fits(head.cols, head.rows));
    let whole = restored_from(bytes.to_vec(), 1 << 20).expect("a head");
    let stepped = restored_from(bytes.to_vec(), usize::from(step) + 1).expect("a head");
    // A redraw the daemon could have written is text (valid UTF-8): it
    // draws the same however it is split. Bytes that are not (a damaged
    // file) only have to do no harm: `vte` decodes a malformed sequence cut
    // by a step differently than whole.
    let at = bytes
        .iter()
        .position(|&b| b == b'\n')
        .expect("a head's line")
        + 1;
    if std::str::from_utf8(&bytes[at..]).is_ok() {
        assert_eq!(whole, stepped, "a checkpoint fed in steps draws the same");
    }
});
