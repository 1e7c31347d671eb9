//! `PhoneNumber::parse` on any text: never panics; what it accepts is
//! E.164 (`+`, 2-15 digits, no leading zero) and parses again to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use orchestrator::domain::PhoneNumber;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(phone) = PhoneNumber::parse(s) {
        let text = phone.as_str();
        assert_eq!(text, s);
        let digits = text.strip_prefix('+').expect("starts with +");
        assert!(digits.bytes().all(|b| b.is_ascii_digit()));
        assert!((2..=15).contains(&digits.len()));
        assert!(!digits.starts_with('0'));
        assert_eq!(PhoneNumber::parse(text).expect("reparses").as_str(), text);
    }
});
