//! `MessageText::parse` on any text and segment limit: never panics; the
//! segment count is within the limit and agrees with the units and the
//! encoding's segment sizes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchestrator::domain::{Encoding, MessageText};

fuzz_target!(|data: &[u8]| {
    let Some((&limit, rest)) = data.split_first() else {
        return;
    };
    let Ok(s) = std::str::from_utf8(rest) else {
        return;
    };
    let max_segments = u32::from(limit % 16);
    if let Ok(text) = MessageText::parse(s, max_segments) {
        assert!(text.segments() >= 1 && text.segments() <= max_segments);
        let (single, per_part) = match text.encoding() {
            Encoding::Gsm7 => (160, 153),
            Encoding::Ucs2 => (70, 67),
        };
        let units = text.units();
        if text.segments() == 1 {
            assert!(units <= single, "{units} units in one segment");
        } else {
            // A character never splits across parts, so a part may hold
            // one unit less than its size; never more.
            assert!(units > single);
            assert!(units <= text.segments() * per_part);
            assert!(units > (text.segments() - 1) * (per_part - 1));
        }
        if text.encoding() == Encoding::Ucs2 {
            assert_eq!(units as usize, s.encode_utf16().count());
        }
    }
});
