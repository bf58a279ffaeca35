//! Fuzz the release manifest parser: never panics; an accepted manifest's id is one safe path
//! component (it names a directory under /opt/agentkeys/releases).
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| {
    if let Ok(m) = hostd::decide::release::parse_manifest(text) {
        let id = m.id();
        assert!(!id.is_empty() && !id.contains('/') && id != "." && id != ".." && !id.starts_with('.'), "id {id:?}");
    }
});
