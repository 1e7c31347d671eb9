//! compare's JSONL capture reader (mirror-proxy's capture format) on any
//! bytes: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = compare::capture::jsonl::parse(std::path::Path::new("fuzz.jsonl"), data);
});
