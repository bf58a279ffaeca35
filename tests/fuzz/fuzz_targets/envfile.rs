//! Fuzz the operator env-file parser: never panics; what it accepts has sane keys and one-line values within the size bound.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| {
    if let Ok(env) = hostd::decide::envfile::parse("fuzz.env", text) {
        for (key, entry) in &env.entries {
            assert!(!key.is_empty() && key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "key {key:?}");
            assert!(!entry.value.contains('\n'), "a value spans lines: {:?}", entry.value);
            assert!(entry.value.len() <= hostd::decide::envfile::MAX_VALUE_BYTES, "value of {} bytes", entry.value.len());
        }
    }
});
