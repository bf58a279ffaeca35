//! `cloud render`: golden templates for the four stacks in two zones (one multi-label) and the
//! account stack; every name equals the naming code's and what hostd renders on the host for the
//! same identity; every Ref/GetAtt/condition resolves; cfn-lint (pinned) passes them all and
//! rejects a negative control; phase one deploys to moto on loopback and reads back; teardown of
//! one stack never touches another's inbound mail; a cross-wired render exits 3 with no output.
//! `UPDATE_GOLDEN=1` rewrites the golden templates.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{ACCOUNT, BASE_CONFIG, Run};
use hostd::decide::naming::{Identity, RECEIPT_RULE_SET, identity_from_issuer};
use serde_json::Value;

const ZONES: [&str; 2] = ["example.org", "agents.example.co.uk"];
const ZONE_ID: &str = "Z0123456789ABCDEFGHIJ";
const INSTANCE: &str = "i-0123456789abcdef0";

/// (file stem, selector flags, issuer host's first label) per stack.
fn stacks() -> Vec<(&'static str, Vec<&'static str>, &'static str)> {
    vec![
        ("prod", vec![], "broker"),
        ("test-1", vec!["--ci"], "test-broker"),
        ("test-7", vec!["--ci", "--slot", "7"], "broker-test-7"),
        ("base", vec!["--base"], "broker-base"),
    ]
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/golden-cloud")
}

fn render(root: &Path, args: &[&str]) -> Run {
    let mut all = vec!["cloud", "render", "--root", root.to_str().unwrap()];
    all.extend_from_slice(args);
    common::run_in(root, &all)
}

fn render_stack(selectors: &[&str], zone: &str) -> (Run, Identity) {
    let root = tempfile::tempdir().unwrap();
    let mut args = selectors.to_vec();
    args.extend(["--zone", zone, "--account-id", ACCOUNT, "--region", "us-east-1"]);
    args.extend(["--hosted-zone-id", ZONE_ID, "--instance-id", INSTANCE]);
    let run = render(root.path(), &args);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    (run, identity(selectors, zone))
}

fn identity(selectors: &[&str], zone: &str) -> Identity {
    let label = stacks().into_iter().find(|s| s.1 == selectors).unwrap().2;
    identity_from_issuer(&format!("https://{label}.{zone}")).unwrap()
}

fn resources(t: &Value) -> &serde_json::Map<String, Value> {
    t["Resources"].as_object().unwrap()
}

/// Every value of property `key` in resources of `kind`.
fn names(t: &Value, kind: &str, key: &str) -> BTreeSet<String> {
    resources(t)
        .values()
        .filter(|r| r["Type"] == kind)
        .filter_map(|r| r["Properties"][key].as_str().map(str::to_owned))
        .collect()
}

/// All golden files: (name, template).
fn every_template() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    for zone in ZONES {
        for (stem, sel, _) in stacks() {
            let (run, _) = render_stack(&sel, zone);
            out.push((format!("{stem}.{zone}.json"), serde_json::from_str(&run.stdout).unwrap()));
        }
    }
    let root = tempfile::tempdir().unwrap();
    let run = render(root.path(), &["--account", "--region", "us-east-1"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    out.push(("account.json".into(), serde_json::from_str(&run.stdout).unwrap()));
    out
}

#[test]
fn golden_templates_are_deterministic() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let dir = golden_dir();
    std::fs::create_dir_all(&dir).unwrap();
    for (name, t) in every_template() {
        let text = serde_json::to_string_pretty(&t).unwrap() + "\n";
        let path = dir.join(&name);
        if update {
            std::fs::write(&path, &text).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{name}: no golden template ({e}); run with UPDATE_GOLDEN=1"));
        assert!(text == want, "{name} differs from {}; review and run with UPDATE_GOLDEN=1", path.display());
    }
    // The same inputs render byte-identical output twice.
    let (a, _) = render_stack(&["--ci", "--slot", "7"], ZONES[1]);
    let (b, _) = render_stack(&["--ci", "--slot", "7"], ZONES[1]);
    assert_eq!(a.stdout, b.stdout);
}

#[test]
fn every_name_is_the_naming_codes() {
    for zone in ZONES {
        for (stem, sel, _) in stacks() {
            let (run, id) = render_stack(&sel, zone);
            let t: Value = serde_json::from_str(&run.stdout).unwrap();
            let what = format!("{stem} in {zone}");
            let roles: BTreeSet<String> = ["data", "vault", "memory", "config", "channel"]
                .iter()
                .map(|s| id.role_name(s))
                .chain([id.host_role()])
                .collect();
            assert_eq!(names(&t, "AWS::IAM::Role", "RoleName"), roles, "{what}");
            let buckets: BTreeSet<String> =
                ["mail", "vault", "memory", "config", "channel"].iter().map(|c| id.bucket(c, ACCOUNT)).collect();
            assert_eq!(names(&t, "AWS::S3::Bucket", "BucketName"), buckets, "{what}");
            assert_eq!(names(&t, "AWS::IAM::InstanceProfile", "InstanceProfileName"), [id.host_role()].into());
            assert_eq!(names(&t, "AWS::IAM::OIDCProvider", "Url"), [id.issuer()].into(), "{what}");
            assert_eq!(names(&t, "AWS::SES::EmailIdentity", "EmailIdentity"), [id.mail_domain()].into());
            let mut records: BTreeSet<String> = id.dns_hosts().into_iter().collect();
            records.extend([id.mail_domain(), id.dmarc_name()]);
            assert_eq!(names(&t, "AWS::Route53::RecordSet", "Name"), records, "{what}: every A, MX, SPF, DMARC name");
            let rule = resources(&t).values().find(|r| r["Type"] == "AWS::SES::ReceiptRule").unwrap();
            assert_eq!(rule["Properties"]["RuleSetName"], RECEIPT_RULE_SET);
            assert_eq!(rule["Properties"]["Rule"]["Name"], id.receipt_rule());
            assert_eq!(rule["Properties"]["Rule"]["Recipients"], serde_json::json!([id.mail_domain()]));
            let eip = &resources(&t)["BrokerEip"]["Properties"]["Tags"][0];
            assert_eq!((eip["Key"].as_str(), eip["Value"].as_str()), (Some("Name"), Some(id.eip_name().as_str())));
            assert!(t["Description"].as_str().unwrap().ends_with(&id.cloud_stack()), "{what}");
            // Where losing a resource loses data or an address, it is kept.
            for (name, r) in resources(&t) {
                let keep =
                    matches!(r["Type"].as_str(), Some("AWS::S3::Bucket" | "AWS::EC2::EIP" | "AWS::IAM::OIDCProvider"));
                if keep {
                    assert_eq!(
                        (&r["DeletionPolicy"], &r["UpdateReplacePolicy"]),
                        (&"Retain".into(), &"Retain".into()),
                        "{name}"
                    );
                }
            }
            assert!(!run.stdout.contains("AccessKey"), "no static IAM users or keys");
        }
    }
}

/// The role ARNs and bucket names in the rendered units and env files, the issuer and sender.
fn host_names(root: &Path) -> (BTreeSet<String>, BTreeSet<String>, String, String) {
    let (mut roles, mut buckets, mut issuer, mut sender) =
        (BTreeSet::new(), BTreeSet::new(), String::new(), String::new());
    let mut files = Vec::new();
    for dir in ["etc/systemd/system", "etc/agentkeys"] {
        for e in std::fs::read_dir(root.join(dir)).unwrap() {
            let p = e.unwrap().path();
            if p.is_file() {
                files.push(std::fs::read_to_string(p).unwrap_or_default());
            }
        }
    }
    for text in files {
        for token in text.split(|c: char| c.is_whitespace() || c == '=' || c == '"') {
            if let Some(name) = token.strip_prefix(&format!("arn:aws:iam::{ACCOUNT}:role/")) {
                roles.insert(name.to_owned());
            } else if token.starts_with("agentkeys-") && token.ends_with(&format!("-{ACCOUNT}")) {
                buckets.insert(token.to_owned());
            }
        }
        for line in text.lines() {
            let line = line.trim_start_matches("Environment=");
            if let Some(v) = line.strip_prefix("BROKER_OIDC_ISSUER=") {
                issuer = v.to_owned();
            }
            if let Some(v) = line.strip_prefix("BROKER_EMAIL_FROM_ADDRESS=") {
                sender = v.to_owned();
            }
        }
    }
    (roles, buckets, issuer, sender)
}

#[test]
fn the_cloud_names_what_the_host_uses() {
    for zone in ZONES {
        for (stem, sel, _) in stacks() {
            let host = common::fake_root(BASE_CONFIG);
            let mut args = sel.clone();
            args.extend(["--zone", zone, "--account-id", ACCOUNT, "--region", "us-east-1"]);
            let run = common::reconcile(host.path(), &args);
            assert_eq!(run.code, 0, "{stem}: {}\n{}", run.stdout, run.stderr);
            let (roles, buckets, issuer, sender) = host_names(host.path());
            assert!(!roles.is_empty() && !buckets.is_empty() && !issuer.is_empty() && !sender.is_empty(), "{stem}");
            let (run, _) = render_stack(&sel, zone);
            let t: Value = serde_json::from_str(&run.stdout).unwrap();
            let what = format!("{stem} in {zone}");
            let cloud_roles = names(&t, "AWS::IAM::Role", "RoleName");
            assert!(roles.is_subset(&cloud_roles), "{what}: host {roles:?} vs cloud {cloud_roles:?}");
            let cloud_buckets = names(&t, "AWS::S3::Bucket", "BucketName");
            assert!(buckets.is_subset(&cloud_buckets), "{what}: host {buckets:?} vs cloud {cloud_buckets:?}");
            assert_eq!(names(&t, "AWS::IAM::OIDCProvider", "Url"), [issuer].into(), "{what}");
            let domain = sender.split_once('@').unwrap().1.to_owned();
            assert_eq!(names(&t, "AWS::SES::EmailIdentity", "EmailIdentity"), [domain].into(), "{what}");
            // A render on the deployed host, without selectors, takes the deployed identity.
            let flagless = render(host.path(), &["--hosted-zone-id", ZONE_ID, "--instance-id", INSTANCE]);
            assert_eq!(flagless.code, 0, "{what}: {}", flagless.stderr);
            assert!(flagless.stdout == run.stdout, "{what}: the deployed identity renders the same template");
        }
    }
}

/// Every `Ref`, `Fn::GetAtt`, `Fn::If` condition, `Condition` and `DependsOn` resolves.
fn dangling(t: &Value) -> Vec<String> {
    let res = resources(t);
    let params = t["Parameters"].as_object().cloned().unwrap_or_default();
    let conds = t["Conditions"].as_object().cloned().unwrap_or_default();
    let mut out = Vec::new();
    fn walk(v: &Value, f: &mut dyn FnMut(&str, &Value)) {
        match v {
            Value::Object(m) => {
                for (k, x) in m {
                    f(k, x);
                    walk(x, f);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| walk(x, f)),
            _ => {}
        }
    }
    let mut check = |k: &str, x: &Value| match k {
        "Ref" => {
            let n = x.as_str().unwrap();
            if !n.starts_with("AWS::") && !res.contains_key(n) && !params.contains_key(n) {
                out.push(format!("Ref {n}"));
            }
        }
        "Fn::GetAtt" => {
            let n = x[0].as_str().unwrap();
            if !res.contains_key(n) {
                out.push(format!("GetAtt {n}"));
            }
        }
        "Fn::If" => {
            let n = x[0].as_str().unwrap();
            if !conds.contains_key(n) {
                out.push(format!("condition {n}"));
            }
        }
        "DependsOn" => {
            for n in x.as_array().cloned().unwrap_or_else(|| vec![x.clone()]) {
                if !res.contains_key(n.as_str().unwrap()) {
                    out.push(format!("DependsOn {n}"));
                }
            }
        }
        _ => {}
    };
    walk(&t["Resources"], &mut check);
    walk(&t["Outputs"], &mut check);
    // A resource's own condition (policy statements have `Condition` keys of another kind).
    for r in res.values() {
        if let Some(n) = r["Condition"].as_str()
            && !conds.contains_key(n)
        {
            out.push(format!("condition {n}"));
        }
    }
    out
}

#[test]
fn every_reference_resolves() {
    for (name, t) in every_template() {
        assert!(dangling(&t).is_empty(), "{name}: {:?}", dangling(&t));
    }
    // The check can fail.
    let mut broken = every_template().remove(0).1;
    broken["Resources"]["MailBucketPolicy"]["Properties"]["Bucket"] = serde_json::json!({ "Ref": "MailBuckt" });
    broken["Resources"]["HostInstanceProfile"]["Condition"] = "Phase3".into();
    assert_eq!(dangling(&broken), ["Ref MailBuckt", "condition Phase3"]);
}

fn cloud_tools() -> PathBuf {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/harness/cloud-tools.sh");
    let out = Command::new(script).stderr(Stdio::inherit()).output().unwrap();
    assert!(out.status.success(), "tests/harness/cloud-tools.sh failed");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

#[test]
fn cfn_lint_passes_every_template_and_rejects_a_broken_one() {
    let bin = cloud_tools();
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, t) in every_template() {
        let p = dir.path().join(&name);
        std::fs::write(&p, serde_json::to_string_pretty(&t).unwrap()).unwrap();
        files.push(p);
    }
    let lint = Command::new(bin.join("cfn-lint")).args(&files).output().unwrap();
    let said = String::from_utf8_lossy(&lint.stdout);
    assert!(lint.status.success(), "cfn-lint (warnings fail too):\n{said}");
    // A negative control: a misspelled property and a record type that does not exist.
    let mut t: Value = serde_json::from_str(&std::fs::read_to_string(&files[0]).unwrap()).unwrap();
    let props = t["Resources"]["MailBucket"]["Properties"].as_object_mut().unwrap();
    let name = props.remove("BucketName").unwrap();
    props.insert("BucketNme".into(), name);
    t["Resources"]["VaultBucket"]["Type"] = "AWS::S3::Buckett".into();
    let bad = dir.path().join("broken.json");
    std::fs::write(&bad, serde_json::to_string_pretty(&t).unwrap()).unwrap();
    let lint = Command::new(bin.join("cfn-lint")).arg(&bad).output().unwrap();
    let said = String::from_utf8_lossy(&lint.stdout);
    assert!(!lint.status.success(), "cfn-lint accepted the negative control");
    assert!(said.contains("BucketNme") && said.contains("AWS::S3::Buckett"), "{said}");
}

#[test]
fn phase_one_deploys_to_moto_and_reads_back_its_names() {
    let bin = cloud_tools();
    let (run, id) = render_stack(&["--ci", "--slot", "7"], ZONES[1]);
    let dir = tempfile::tempdir().unwrap();
    let template = dir.path().join("t.json");
    std::fs::write(&template, &run.stdout).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mut server = Command::new(bin.join("moto_server"))
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(std::time::Instant::now() < deadline, "moto_server did not listen on {endpoint}");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let driver = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/cloud/moto_deploy.py");
    let out = Command::new(bin.join("python")).arg(driver).arg(&endpoint).arg(&template).arg(id.cloud_stack()).output();
    let _ = server.kill();
    let _ = server.wait();
    let out = out.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Value = serde_json::from_slice(&out.stdout).unwrap();
    let t: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(got["status"], serde_json::json!(["CREATE_COMPLETE", "UPDATE_COMPLETE"]));
    assert!(got["created"].as_array().unwrap().contains(&"ChannelBucket".into()), "the update added it: {got}");
    let buckets: BTreeSet<String> =
        got["buckets"].as_array().unwrap().iter().map(|b| b.as_str().unwrap().into()).collect();
    assert_eq!(buckets, names(&t, "AWS::S3::Bucket", "BucketName"));
    let roles = got["roles"].as_object().unwrap();
    for name in [id.role_name("data"), id.host_role()] {
        assert!(roles.contains_key(&name), "{name} in {roles:?}");
    }
    let host_role = &roles[&id.host_role()];
    assert_eq!(host_role["trust"]["Statement"][0]["Principal"]["Service"], "ec2.amazonaws.com");
    let data_trust = &roles[&id.role_name("data")]["trust"]["Statement"][0]["Principal"]["AWS"];
    assert_eq!(
        data_trust.as_str(),
        Some(format!("arn:aws:iam::{ACCOUNT}:role/{}", id.host_role()).as_str()),
        "phase one"
    );
    assert_eq!(got["instance_profiles"][id.host_role()], serde_json::json!([id.host_role()]));
    let records: BTreeSet<String> =
        got["records"].as_array().unwrap().iter().map(|r| r[0].as_str().unwrap().to_owned()).collect();
    let mut want: BTreeSet<String> = id.dns_hosts().into_iter().collect();
    want.extend([id.mail_domain(), id.dmarc_name()]);
    assert_eq!(records, want);
    assert_eq!(got["mail_lifecycle"][0]["Expiration"]["Days"], 30);
    assert_eq!(got["mail_lifecycle"][0]["Filter"]["Prefix"], "inbound/");
    assert_eq!(got["mail_public_access_block"]["RestrictPublicBuckets"], true);
    assert_eq!(got["receipt_rule"]["Name"], id.receipt_rule());
    assert_eq!(got["receipt_rule"]["Recipients"], serde_json::json!([id.mail_domain()]));
    assert_eq!(got["mail_policy"]["Statement"][0]["Condition"]["StringEquals"]["aws:Referer"], ACCOUNT);
    assert_eq!(got["email_identity"], "DOMAIN");
    assert_eq!(got["eip_instance"], true);
    assert_eq!(got["oidc_provider"]["clients"], serde_json::json!(["sts.amazonaws.com"]));
    let escrow = &got["escrow"];
    assert_eq!(escrow["name"], id.escrow_secret());
    assert_eq!(escrow["tags"]["agentkeys:stack"], id.cloud_stack());
    assert_eq!(escrow["key_aliases"], serde_json::json!([id.escrow_kms_alias()]));
    assert_eq!(escrow["kms_key_id"], id.escrow_kms_alias());
    assert_eq!(escrow["key_rotation"], true);
    let marker: Value = serde_json::from_str(escrow["value"].as_str().unwrap()).unwrap();
    assert_eq!(marker["items"], serde_json::json!({}), "an empty escrow until the host fills it");
    assert_eq!(marker["stack"], id.cloud_stack());
    let users = &escrow["key_policy"]["Statement"][1];
    assert_eq!(users["Principal"]["AWS"], format!("arn:aws:iam::{ACCOUNT}:role/{}", id.host_role()));
    assert_eq!(escrow["resource_policy"]["Statement"][0]["Action"], "secretsmanager:DeleteSecret");
}

/// IAM's wildcard match: `*` any run of characters, `?` exactly one.
fn iam_match(pattern: &str, value: &str) -> bool {
    match (pattern.chars().next(), value.chars().next()) {
        (None, None) => true,
        (Some('*'), _) => {
            iam_match(&pattern[1..], value)
                || (!value.is_empty() && iam_match(pattern, &value[value.chars().next().unwrap().len_utf8()..]))
        }
        (Some('?'), Some(c)) => iam_match(&pattern[1..], &value[c.len_utf8()..]),
        (Some(p), Some(c)) if p == c => iam_match(&pattern[p.len_utf8()..], &value[c.len_utf8()..]),
        _ => false,
    }
}

/// Every stack's template: the escrow's key, alias and secret are kept on delete and replace; the
/// host role may read, create and put only its own stack's secret (never delete one); only the
/// host role may use the key, only through Secrets Manager, only for that secret; a replica Region
/// is a flag.
#[test]
fn the_escrow_is_each_stacks_own_and_outlives_its_stack() {
    let all = every_template();
    let stacks: Vec<(String, Value)> = all.into_iter().filter(|(n, _)| n != "account.json").collect();
    let own_secret = |t: &Value| t["Resources"]["EscrowSecret"]["Properties"]["Name"].as_str().unwrap().to_owned();
    let secrets: BTreeSet<String> = stacks.iter().map(|(_, t)| own_secret(t)).collect();
    assert_eq!(secrets.len(), 4, "one secret per stack (a zone is an account): {secrets:?}");
    for (name, t) in &stacks {
        let res = resources(t);
        for r in ["EscrowKey", "EscrowKeyAlias", "EscrowSecret"] {
            assert_eq!(
                (&res[r]["DeletionPolicy"], &res[r]["UpdateReplacePolicy"]),
                (&"Retain".into(), &"Retain".into()),
                "{name} {r}"
            );
        }
        assert_eq!(res["EscrowKey"]["Properties"]["PendingWindowInDays"], 30, "{name}");
        let mine = own_secret(t);
        let statements =
            res["HostRole"]["Properties"]["Policies"][0]["PolicyDocument"]["Statement"].as_array().unwrap();
        let actions = |s: &Value| -> Vec<String> {
            match &s["Action"] {
                Value::String(a) => vec![a.clone()],
                Value::Array(a) => a.iter().map(|x| x.as_str().unwrap().to_owned()).collect(),
                _ => Vec::new(),
            }
        };
        let mut allowed = BTreeSet::new();
        for st in statements.iter().filter(|s| s["Effect"] == "Allow") {
            let sm: Vec<String> = actions(st).into_iter().filter(|a| a.starts_with("secretsmanager:")).collect();
            if sm.is_empty() {
                continue;
            }
            let resource = st["Resource"].as_str().unwrap();
            assert!(resource.ends_with(&format!(":secret:{mine}-??????")), "{name}: {resource}");
            // IAM's `?` is one character: the pattern matches this stack's secret's ARN (its name
            // and Secrets Manager's six-character suffix) and no other stack's.
            let arn = |secret: &str| resource.replace(&format!("{mine}-??????"), &format!("{secret}-AbC123"));
            assert!(iam_match(resource, &arn(&mine)), "{name}: {resource}");
            for other in secrets.iter().filter(|o| **o != mine) {
                assert!(!iam_match(resource, &arn(other)), "{name} reaches {other}");
            }
            allowed.extend(sm);
        }
        let want: BTreeSet<String> =
            ["CreateSecret", "DescribeSecret", "GetSecretValue", "PutSecretValue", "TagResource"]
                .iter()
                .map(|a| format!("secretsmanager:{a}"))
                .collect();
        assert_eq!(allowed, want, "{name}: read, create and put only");
        assert!(
            statements
                .iter()
                .any(|s| s["Effect"] == "Deny" && actions(s).contains(&"secretsmanager:DeleteSecret".to_owned())),
            "{name}: the host never deletes the escrow"
        );
        let key_policy = res["EscrowKey"]["Properties"]["KeyPolicy"]["Statement"].as_array().unwrap();
        for st in key_policy {
            let uses = actions(st).iter().any(|a| a == "kms:Decrypt" || a.starts_with("kms:GenerateDataKey"));
            if uses {
                let principal = st["Principal"]["AWS"].as_str().unwrap();
                assert!(
                    principal
                        .ends_with(&format!(":role/{}", res["HostRole"]["Properties"]["RoleName"].as_str().unwrap())),
                    "{name}: {principal}"
                );
                assert!(
                    st["Condition"]["StringEquals"]["kms:ViaService"].as_str().unwrap().starts_with("secretsmanager.")
                );
                assert!(
                    st["Condition"]["StringLike"]["kms:EncryptionContext:SecretARN"].as_str().unwrap().contains(&mine)
                );
            }
        }
        assert!(res["EscrowSecret"]["Properties"].get("ReplicaRegions").is_none(), "{name}: no replica unless asked");
    }
    let (run, _) = render_stack(&["--ci", "--slot", "7"], ZONES[0]);
    let plain: Value = serde_json::from_str(&run.stdout).unwrap();
    let root = tempfile::tempdir().unwrap();
    let args = ["--ci", "--slot", "7", "--zone", ZONES[0], "--account-id", ACCOUNT, "--region", "us-east-1"];
    let replica = render(root.path(), &[&args[..], &["--escrow-replica-region", "eu-west-1"]].concat());
    assert_eq!(replica.code, 0, "{}", replica.stderr);
    let t: Value = serde_json::from_str(&replica.stdout).unwrap();
    assert_eq!(t["Resources"]["EscrowSecret"]["Properties"]["ReplicaRegions"][0]["Region"], "eu-west-1");
    assert!(replica.stderr.contains("aws kms replicate-key"), "{}", replica.stderr);
    assert_eq!(plain["Resources"]["EscrowKey"], t["Resources"]["EscrowKey"], "adding a replica never replaces the key");
    for bad in ["us-east-1", "mars-1"] {
        let run = render(root.path(), &[&args[..], &["--escrow-replica-region", bad]].concat());
        assert_eq!((run.code, run.stdout.as_str()), (2, ""), "{bad}: {}", run.stderr);
        assert!(run.stderr.contains("--escrow-replica-region"), "{}", run.stderr);
    }
}

#[test]
fn no_teardown_touches_another_stacks_inbound_mail() {
    let mut rules = BTreeSet::new();
    for (name, t) in every_template() {
        let zone = name.split_once('.').map(|(_, z)| z.to_owned()).unwrap_or_default();
        let kinds: Vec<&str> = resources(&t).values().map(|r| r["Type"].as_str().unwrap()).collect();
        if name == "account.json" {
            assert!(kinds.contains(&"AWS::SES::ReceiptRuleSet"), "the account stack holds the shared set");
            assert!(!kinds.contains(&"AWS::SES::ReceiptRule"), "and no stack's rule");
            let set = &resources(&t)["ReceiptRuleSet"];
            assert_eq!((&set["DeletionPolicy"], &set["UpdateReplacePolicy"]), (&"Retain".into(), &"Retain".into()));
            continue;
        }
        assert!(!kinds.contains(&"AWS::SES::ReceiptRuleSet"), "{name}: a stack never owns the shared set");
        let own: Vec<&Value> = resources(&t).values().filter(|r| r["Type"] == "AWS::SES::ReceiptRule").collect();
        assert_eq!(own.len(), 1, "{name}");
        let rule = own[0]["Properties"]["Rule"]["Name"].as_str().unwrap().to_owned();
        assert!(rules.insert((zone, rule)), "{name}: within a zone (an account) each stack has its own rule");
    }
    assert_eq!(rules.len(), 8, "{rules:?}");
    // The printed steps activate the set by name and never deactivate it.
    let root = tempfile::tempdir().unwrap();
    let account = render(root.path(), &["--account", "--region", "us-east-1"]);
    assert!(
        account
            .stderr
            .contains(&format!("set-active-receipt-rule-set --region us-east-1 --rule-set-name {RECEIPT_RULE_SET}"))
    );
    for (_, sel, _) in stacks() {
        let (run, _) = render_stack(&sel, ZONES[0]);
        assert!(!run.stderr.contains("set-active-receipt-rule-set"), "{}", run.stderr);
        assert!(run.stderr.contains("delete-stack"), "{}", run.stderr);
    }
}

#[test]
fn a_cross_wired_render_exits_3_and_prints_nothing_and_bad_flags_exit_2() {
    let host = common::fake_root(BASE_CONFIG);
    let run =
        common::reconcile(host.path(), &["--ci", "--slot", "4", "--zone", "example.org", "--account-id", ACCOUNT]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let wired = render(host.path(), &["--base"]);
    assert_eq!((wired.code, wired.stdout.as_str()), (3, ""), "{}", wired.stderr);
    let scratch = tempfile::tempdir().unwrap();
    let base = ["--zone", "example.org", "--account-id", ACCOUNT];
    for (flag, value) in [
        ("--oidc-thumbprint", "a".repeat(64)),
        ("--instance-id", "vm-1".to_owned()),
        ("--hosted-zone-id", "z123".to_owned()),
    ] {
        let mut args = base.to_vec();
        args.extend([flag, value.as_str()]);
        let run = render(scratch.path(), &args);
        assert_eq!((run.code, run.stdout.as_str()), (2, ""), "{flag}: {}", run.stderr);
        assert!(run.stderr.contains(flag), "{flag}: {}", run.stderr);
    }
    let no_account = render(scratch.path(), &["--zone", "example.org"]);
    assert_eq!(no_account.code, 2, "{}", no_account.stderr);
    assert!(no_account.stderr.contains("--account-id"), "{}", no_account.stderr);
}
