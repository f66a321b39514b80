//! An output event's payload, escaped twice by hand in one pass
//! (`record::data_payload`), must be byte for byte what serde makes.
#![no_main]

use coven::session::record::{data_payload, data_payload_by_serde};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    assert_eq!(data_payload(&text), data_payload_by_serde(&text));
});
