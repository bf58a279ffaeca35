//! Fuzz the hostd.toml parser and the daemon settings on top of it: never panics.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| {
    if let Ok(config) = hostd::decide::config::load(&[("hostd.toml".to_owned(), text.to_owned())]) {
        let _ = hostd::decide::daemon::options::from_config(&config);
        let _ = hostd::decide::settings::resolve_acme(&config);
    }
});
