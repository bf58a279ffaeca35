//! Table tests for naming in all four stacks (spec §1) and for the inverse, issuer → identity.

use hostd::decide::naming::{Identity, Stack, identity_from_issuer};

fn id(stack: Stack, zone: &str) -> Identity {
    Identity { stack, zone: zone.into() }
}

#[test]
fn every_derived_name_in_every_stack() {
    let a = "429071895007";
    // (stack, broker, signer, email worker, cred worker, mcp, vault bucket, data role, mail domain, sender, eip, chain)
    let table = [
        (
            Stack::Prod,
            "broker.Z",
            "signer.Z",
            "email.Z",
            "cred.Z",
            "mcp.Z",
            "agentkeys-vault-A",
            "agentkeys-data-role",
            "bots.Z",
            "noreply@bots.Z",
            "agentkeys-broker-eip",
            "heima",
        ),
        (
            Stack::Test { slot: 1 },
            "test-broker.Z",
            "signer-test.Z",
            "email-test.Z",
            "cred-test.Z",
            "test-mcp.Z",
            "agentkeys-vault-test-A",
            "agentkeys-data-role-test",
            "bots-test.Z",
            "noreply-test@bots-test.Z",
            "agentkeys-broker-eip-test",
            "heima",
        ),
        (
            Stack::Test { slot: 2 },
            "broker-test-2.Z",
            "signer-test-2.Z",
            "email-test-2.Z",
            "cred-test-2.Z",
            "mcp-test-2.Z",
            "agentkeys-vault-test-2-A",
            "agentkeys-data-role-test-2",
            "bots-test-2.Z",
            "noreply-test-2@bots-test-2.Z",
            "agentkeys-broker-eip-test-2",
            "heima",
        ),
        (
            Stack::Test { slot: 12 },
            "broker-test-12.Z",
            "signer-test-12.Z",
            "email-test-12.Z",
            "cred-test-12.Z",
            "mcp-test-12.Z",
            "agentkeys-vault-test-12-A",
            "agentkeys-data-role-test-12",
            "bots-test-12.Z",
            "noreply-test-12@bots-test-12.Z",
            "agentkeys-broker-eip-test-12",
            "heima",
        ),
        (
            Stack::Base,
            "broker-base.Z",
            "signer-base.Z",
            "email-base.Z",
            "cred-base.Z",
            "mcp-base.Z",
            "agentkeys-vault-base-A",
            "agentkeys-data-role-base",
            "bots-base.Z",
            "noreply-base@bots-base.Z",
            "agentkeys-broker-eip-base",
            "base",
        ),
    ];
    for zone in ["litentry.org", "agents.example.co.uk"] {
        let z = |s: &str| s.replace('Z', zone).replace("-A", &format!("-{a}"));
        for (stack, broker, signer, email, cred, mcp, vault, role, mail, sender, eip, chain) in table {
            let i = id(stack, zone);
            assert_eq!(i.broker_host(), z(broker), "{stack}");
            assert_eq!(i.issuer(), format!("https://{}", z(broker)));
            assert_eq!(i.signer_host(), z(signer));
            assert_eq!(i.service_host("email"), z(email));
            assert_eq!(i.service_host("cred"), z(cred));
            assert_eq!(i.mcp_host(), z(mcp));
            assert_eq!(i.bucket("vault", a), z(vault));
            assert_eq!(i.role_arn("data", a), format!("arn:aws:iam::{a}:role/{role}"));
            assert_eq!(i.mail_domain(), z(mail));
            assert_eq!(i.sender(), z(sender));
            assert_eq!(i.eip_name(), eip);
            assert_eq!(stack.chain(), chain);
            assert_eq!(i.public_hosts().len(), 8);
            assert_eq!(identity_from_issuer(&i.issuer()), Ok(i.clone()), "inverse of {}", i.issuer());
        }
    }
}

#[test]
fn inverse_accepts_exactly_the_four_first_labels() {
    let ok = [
        ("https://broker.litentry.org", Stack::Prod, "litentry.org"),
        ("https://test-broker.litentry.org", Stack::Test { slot: 1 }, "litentry.org"),
        ("https://broker-test-2.agents.example.co.uk", Stack::Test { slot: 2 }, "agents.example.co.uk"),
        ("https://broker-test-999.x.io", Stack::Test { slot: 999 }, "x.io"),
        ("https://broker-base.a.b.c.d", Stack::Base, "a.b.c.d"),
    ];
    for (issuer, stack, zone) in ok {
        assert_eq!(identity_from_issuer(issuer), Ok(id(stack, zone)), "{issuer}");
    }
    let bad = [
        ("https://broker-test-1.litentry.org", "never broker-test-1"),
        ("https://broker-test-02.litentry.org", "leading zeros"),
        ("https://broker-test-0.litentry.org", "leading zeros"),
        ("https://broker-test-.litentry.org", "starts or ends with '-'"),
        ("https://broker-test-1000.litentry.org", "between 2 and 999"),
        ("https://test-broker-2.litentry.org", "first label"),
        ("https://signer.litentry.org", "first label"),
        ("https://brokers.litentry.org", "first label"),
        ("https://Broker.litentry.org", "lowercase"),
        ("https://broker.litentry.org/", "trailing slash"),
        ("https://broker.litentry.org/oidc", "no port, path"),
        ("https://broker.litentry.org:8443", "no port"),
        ("https://broker.litentry.org?x=1", "query"),
        ("https://user@broker.litentry.org", "found '@'"),
        ("http://broker.litentry.org", "https://"),
        ("broker.litentry.org", "https://"),
        ("https://broker", "no zone"),
        ("https://broker.org", "at least 2 labels"),
        ("https://broker.lit_entry.org", "only a-z"),
        ("https://broker.litentry.org\n", "only a-z"),
        ("https://broker.1.2", "numeric label"),
    ];
    for (issuer, fragment) in bad {
        let err = identity_from_issuer(issuer).expect_err(issuer).to_string();
        assert!(err.contains(fragment), "{issuer:?}: {err}");
    }
}
