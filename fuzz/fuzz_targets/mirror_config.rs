//! mirror-proxy's config file on any text: the TOML is read and, when it
//! parses, both halves of the settings are derived from it as at start and
//! on reload. Never panics. Settings that name files are cleared first (a
//! fuzzer must not read the machine's files).
#![no_main]

use clap::Parser;
use libfuzzer_sys::fuzz_target;
use mirror_proxy::config::{Cli, FileConfig, dynamic_settings, static_settings};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(mut file) = toml::from_str::<FileConfig>(text) else {
        return;
    };
    file.shadow.credential_file = None;
    file.shadow.credential_env = None;
    file.diff.rules.clear();
    file.diff.redaction_key_file = None;
    file.diff.redaction_key_env = None;
    let cli = Cli::parse_from(["mirror-proxy"]);
    let _ = static_settings(&file, &cli);
    let _ = dynamic_settings(&file, &cli);
});
