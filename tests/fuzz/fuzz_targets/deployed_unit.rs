//! Fuzz reading the deployed identity from a broker unit (odd issuers, quoting as systemd unquotes
//! it): never panics, and an identity it accepts is one whose issuer re-parses to itself.
#![no_main]

libfuzzer_sys::fuzz_target!(|text: &str| {
    let records = hostd::decide::identity::HostRecords {
        broker_unit: Some(("/etc/systemd/system/agentkeys-broker.service".to_owned(), text.to_owned())),
        record: None,
        deployed_secrets_exist: true,
    };
    if let Ok(Some(d)) = hostd::decide::identity::deployed(&records) {
        let again = hostd::decide::naming::identity_from_issuer(&d.identity.issuer()).expect("a valid issuer");
        assert_eq!(again, d.identity);
    }
});
