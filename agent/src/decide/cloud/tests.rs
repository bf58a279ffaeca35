//! The template's rules, as tables: input checks, the adopted address, the phase switch, the
//! ordering that fixes the old mail-bucket-policy defect, and the import list.

use super::*;
use crate::decide::naming::identity_from_issuer;

fn inputs(issuer: &str) -> StackInputs {
    StackInputs {
        identity: identity_from_issuer(issuer).expect("issuer"),
        account_id: "429071895007".into(),
        region: "eu-west-1".into(),
        hosted_zone_id: Some("Z0123ABC".into()),
        instance_id: Some("i-0123456789abcdef0".into()),
        eip: None,
        oidc_thumbprint: None,
        escrow_replica_region: None,
    }
}

#[test]
fn flags_are_checked() {
    let good = inputs("https://broker-test-7.example.org");
    assert_eq!(check_inputs(&good), Ok(()));
    type Change = fn(&mut StackInputs);
    let table: [(Change, &str); 6] = [
        (|i| i.hosted_zone_id = Some("z0123".into()), "--hosted-zone-id"),
        (|i| i.instance_id = Some("i-12".into()), "--instance-id"),
        (|i| i.instance_id = Some("i-0123456789ABCDEF0".into()), "--instance-id"),
        (|i| i.eip = Some(("eipalloc-0123456789".into(), "1.2.3".into())), "--eip-address"),
        (|i| i.eip = Some(("alloc-0123456789".into(), "192.0.2.1".into())), "--eip-allocation-id"),
        (|i| i.oidc_thumbprint = Some("ab".repeat(32)), "--oidc-thumbprint"),
    ];
    for (change, flag) in table {
        let mut i = good.clone();
        change(&mut i);
        assert_eq!(check_inputs(&i).map_err(|(f, _)| f), Err(flag));
    }
    let mut ok = good;
    ok.eip = Some(("eipalloc-0123456789abcdef0".into(), "192.0.2.1".into()));
    ok.oidc_thumbprint = Some("0a".repeat(20));
    assert_eq!(check_inputs(&ok), Ok(()));
}

#[test]
fn an_adopted_address_and_a_thumbprint_are_parameter_defaults() {
    let mut i = inputs("https://broker.example.org");
    let plain = stack_template(&i);
    assert_eq!(plain["Parameters"]["EipAllocationId"]["Default"], "");
    assert_eq!(plain["Parameters"]["OidcThumbprint"]["Default"], "", "phase one");
    i.eip = Some(("eipalloc-0123456789abcdef0".into(), "192.0.2.1".into()));
    i.oidc_thumbprint = Some("0a".repeat(20));
    let t = stack_template(&i);
    assert_eq!(t["Parameters"]["EipAllocationId"]["Default"], "eipalloc-0123456789abcdef0");
    assert_eq!(t["Parameters"]["EipAddress"]["Default"], "192.0.2.1");
    assert_eq!(t["Parameters"]["OidcThumbprint"]["Default"], "0a".repeat(20));
    assert_eq!(t["Resources"][id::EIP]["Condition"], ALLOCATE_EIP, "no new address while one is adopted");
    let none = inputs("https://broker.example.org");
    assert!(
        stack_template(&StackInputs { instance_id: None, ..none })["Parameters"]["InstanceId"]["Default"].is_null()
    );
}

#[test]
fn phase_two_is_switched_by_the_thumbprint() {
    let t = stack_template(&inputs("https://test-broker.example.org"));
    let res = t["Resources"].as_object().expect("resources");
    for (class, _) in CLASSES {
        assert_eq!(res[&id::class(class, "Role")]["Condition"], FEDERATED, "{class}");
        assert_eq!(res[&id::class(class, "BucketPolicy")]["Condition"], FEDERATED, "{class}");
        assert!(res[&id::class(class, "Bucket")].get("Condition").is_none(), "{class}: buckets exist from phase one");
    }
    assert_eq!(res[id::OIDC_PROVIDER]["Condition"], FEDERATED);
    let trust = &res[id::DATA_ROLE]["Properties"]["AssumeRolePolicyDocument"]["Fn::If"];
    assert_eq!(trust[0], FEDERATED);
    assert_eq!(trust[1]["Statement"][0]["Principal"]["Federated"]["Ref"], id::OIDC_PROVIDER);
    assert_eq!(
        trust[1]["Statement"][0]["Condition"]["StringEquals"]["test-broker.example.org:aud"],
        "sts.amazonaws.com"
    );
    assert_eq!(
        trust[2]["Statement"][0]["Principal"]["AWS"], "arn:aws:iam::429071895007:role/agentkeys-broker-host-test",
        "phase one trusts the host role"
    );
}

#[test]
fn the_mail_bucket_policy_waits_for_the_role_it_names_and_the_rule_for_the_policy() {
    let t = stack_template(&inputs("https://broker-base.example.org"));
    let res = &t["Resources"];
    // GetAtt orders the policy after the data role (the old script named a role not yet made).
    assert_eq!(
        res[id::MAIL_BUCKET_POLICY]["Properties"]["PolicyDocument"]["Statement"][1]["Principal"]["AWS"]["Fn::GetAtt"]
            [0],
        id::DATA_ROLE
    );
    assert_eq!(
        res[id::RECEIPT_RULE]["DependsOn"],
        id::MAIL_BUCKET_POLICY,
        "SES checks it may write before the rule exists"
    );
    assert_eq!(res[id::DATA_ROLE]["DependsOn"], id::HOST_ROLE, "the trusted principal exists first");
}

#[test]
fn host_record_ids_are_stable_and_distinct() {
    let i = inputs("https://broker-test-12.agents.example.co.uk");
    let ids: std::collections::BTreeSet<String> =
        i.identity.dns_hosts().iter().map(|h| host_id(h, &i.identity.zone)).collect();
    assert_eq!(ids.len(), i.identity.dns_hosts().len());
    assert!(ids.contains("ARecordBrokerTest12") && ids.contains("ARecordMcpTest12"), "{ids:?}");
    assert_eq!(host_id("test-broker.example.org", "example.org"), "ARecordTestBroker");
}

#[test]
fn the_import_list_names_what_exists_by_the_naming_code() {
    let i = inputs("https://broker.example.org");
    let list = steps::import_list(&i);
    let t = stack_template(&i);
    for entry in list.as_array().expect("list") {
        let logical = entry["LogicalResourceId"].as_str().expect("id");
        let resource = &t["Resources"][logical];
        assert_eq!(resource["Type"], entry["ResourceType"], "{logical}");
        assert!(resource["DeletionPolicy"].is_string(), "{logical}: an import needs an explicit deletion policy");
        for (key, value) in entry["ResourceIdentifier"].as_object().expect("identifier") {
            assert_eq!(&resource["Properties"][key], value, "{logical}.{key}");
        }
    }
}
