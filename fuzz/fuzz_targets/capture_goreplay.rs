//! compare's GoReplay (`.gor`) capture reader on any bytes: never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = compare::capture::goreplay::parse(std::path::Path::new("fuzz.gor"), data);
});
