//! Fuzz issuer → identity: never panics, and an accepted issuer round-trips byte for byte.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| {
    if let Ok(identity) = hostd::decide::naming::identity_from_issuer(text) {
        assert_eq!(identity.issuer(), text, "accepted issuer does not round-trip");
        assert!(identity.check_names().is_ok(), "accepted issuer yields invalid names: {text:?}");
    }
});
