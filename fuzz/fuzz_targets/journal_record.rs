//! Journal record decoding of arbitrary bytes: never a panic, and whatever
//! decodes re-encodes to exactly the bytes it came from.
#![no_main]

use coven::journal::{decode, encode};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(Some((event, used))) = decode(data) {
        let mut again = Vec::new();
        encode(&event, &mut again);
        assert_eq!(&again[..], &data[..used]);
    }
});
