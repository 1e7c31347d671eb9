//! `SenderId::parse` on any text: never panics; an accepted sender parses
//! again to the same sender and kind.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchestrator::domain::SenderId;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(sender) = SenderId::parse(s) {
        let again = SenderId::parse(sender.as_str()).expect("reparses");
        assert_eq!(again.as_str(), sender.as_str());
        assert_eq!(again.kind(), sender.kind());
        assert!(!sender.as_str().contains('\0'));
    }
});
