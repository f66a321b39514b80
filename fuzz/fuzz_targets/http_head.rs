//! Head parsing of arbitrary bytes, split at an arbitrary point: resuming
//! from the split must give exactly what parsing the whole gives.
#![no_main]

use coven::http::parse::{parse_head, HeadStatus, Limits};
use libfuzzer_sys::fuzz_target;

const LIMITS: Limits = Limits {
    max_head_bytes: 16 * 1024,
    max_headers: 64,
    max_body_bytes: 1024 * 1024,
};

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let whole = parse_head(data, 0, &LIMITS);
    let at = usize::from(split) * data.len() / 256;
    match parse_head(&data[..at], 0, &LIMITS) {
        Ok(HeadStatus::Partial(from)) => assert_eq!(parse_head(data, from, &LIMITS), whole),
        // Complete or failed within the prefix: the whole says the same.
        prefix => assert_eq!(prefix, whole),
    }
});
