//! The mapping from findings to inputs: every shape irr takes, and the refusals.

use super::*;
use crate::diagnostic::Source;

const GUARDDUTY: &str =
    include_str!("../../../tests/fixtures/findings/guardduty-ssh-bruteforce.json");
const ASFF: &str = include_str!("../../../tests/fixtures/findings/securityhub-ec2.json");

/// A playbook with the shipped EC2 playbook's trigger (per-source paths), plus a list input.
fn playbook(extra_inputs: &str, trigger: &str) -> Playbook {
    let text = format!(
        "apiVersion: irr/v1\nkind: Playbook\nmetadata: {{name: t, version: 1.0.0}}\ninputs:\n  instance_id: {{type: instance_id}}\n  port: {{type: integer, default: 0}}\n{extra_inputs}trigger:\n{trigger}steps:\n  - id: snap\n    action: ec2.snapshot_volumes\n    with: {{instance_id: \"{{{{inputs.instance_id}}}}\"}}\n"
    );
    crate::validate::validate(&Source::new("t.yaml", text)).unwrap_or_else(|d| panic!("{d:#?}"))
}

const EC2_TRIGGER: &str = "  guardduty:\n    types: [\"UnauthorizedAccess:EC2/SSHBruteForce\"]\n    inputs:\n      instance_id: \"$.Resource.InstanceDetails.InstanceId\"\n      port: \"$.Service.Action.NetworkConnectionAction.LocalPortDetails.Port\"\n    targets: {account: \"$.AccountId\", region: \"$.Region\"}\n  securityhub:\n    custom_action: irr-contain\n    inputs:\n      instance_id: \"$.Resources[?@.Type == 'AwsEc2Instance'].Id | arn_resource\"\n    targets: {account: \"$.AwsAccountId\", region: \"$.Region\"}\n";

fn ec2() -> Playbook {
    playbook("", EC2_TRIGGER)
}

fn mapped(pb: &Playbook, bytes: &str) -> Result<Mapped, Problem> {
    let f = parse(bytes.as_bytes())?;
    map(pb.trigger.as_ref().unwrap(), pb, &f)
}

fn guardduty_event(finding: &str) -> String {
    format!("{{\"version\":\"0\",\"id\":\"c8c4daa7-a20c-2f03-0070-b7393dd542ad\",\"detail-type\":\"GuardDuty Finding\",\"source\":\"aws.guardduty\",\"account\":\"123456789012\",\"time\":\"2026-12-03T06:52:10Z\",\"region\":\"us-east-1\",\"resources\":[],\"detail\":{finding}}}")
}

fn securityhub_event(kind: &str, findings: &[&str], action: &str) -> String {
    format!("{{\"version\":\"0\",\"id\":\"e5c1a8f0-1b2c-4d3e-8f9a-0b1c2d3e4f5a\",\"detail-type\":\"Security Hub Findings - {kind}\",\"source\":\"aws.securityhub\",\"account\":\"123456789012\",\"time\":\"2026-12-03T06:52:10Z\",\"region\":\"us-east-1\",\"resources\":[\"arn:aws:securityhub:us-east-1:123456789012:action/custom/{action}\"],\"detail\":{{\"actionName\":\"{action}\",\"actionDescription\":\"contain\",\"findings\":[{}]}}}}", findings.join(","))
}

#[test]
fn a_bare_guardduty_finding_maps_to_inputs_and_target() {
    let m = mapped(&ec2(), GUARDDUTY).unwrap();
    assert_eq!(m.source, FindingSource::GuardDuty);
    assert_eq!(m.finding_type, "UnauthorizedAccess:EC2/SSHBruteForce");
    assert_eq!(m.inputs["instance_id"], "i-99999999");
    // A number stays a number for an integer input.
    assert_eq!(m.inputs["port"], 22);
    assert_eq!(m.account.as_deref(), Some("123456789012"));
    assert_eq!(m.region.as_deref(), Some("us-east-1"));
    assert_eq!(
        m.paths["instance_id"],
        "$.Resource.InstanceDetails.InstanceId"
    );
}

#[test]
fn a_guardduty_finding_in_its_eventbridge_event_maps_the_same() {
    let bare = mapped(&ec2(), GUARDDUTY).unwrap();
    let wrapped = parse(guardduty_event(GUARDDUTY).as_bytes()).unwrap();
    assert_eq!(wrapped.envelope.as_deref(), Some("GuardDuty Finding"));
    assert_eq!(
        map(ec2().trigger.as_ref().unwrap(), &ec2(), &wrapped).unwrap(),
        bare
    );
    // The CLI's `aws guardduty get-findings` output, one finding.
    let cli = format!("{{\"Findings\": [{GUARDDUTY}]}}");
    assert_eq!(mapped(&ec2(), &cli).unwrap(), bare);
}

#[test]
fn a_guardduty_event_as_eventbridge_writes_it_in_camel_case_maps_the_same() {
    let bare = mapped(&ec2(), GUARDDUTY).unwrap();
    fn camel(v: Value) -> Value {
        match v {
            Value::Object(m) => Value::Object(
                m.into_iter()
                    .map(|(k, v)| {
                        let mut c = k.chars();
                        let f = c.next().unwrap().to_ascii_lowercase();
                        (f.to_string() + c.as_str(), camel(v))
                    })
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.into_iter().map(camel).collect()),
            o => o,
        }
    }
    let detail = camel(serde_json::from_str(GUARDDUTY).unwrap());
    assert!(detail.get("type").is_some() && detail.get("Type").is_none());
    let event = guardduty_event(&detail.to_string());
    let from_event = mapped(&ec2(), &event).unwrap();
    assert_eq!(from_event.inputs, bare.inputs);
    assert_eq!(from_event.account, bare.account);
    assert_eq!(from_event.finding_type, bare.finding_type);
}

#[test]
fn an_asff_finding_bare_and_wrapped_maps_through_arn_resource() {
    let m = mapped(&ec2(), ASFF).unwrap();
    assert_eq!(m.source, FindingSource::SecurityHub);
    assert_eq!(
        m.inputs["instance_id"], "i-99999999",
        "the id out of the ARN"
    );
    assert!(
        !m.inputs.contains_key("port"),
        "GuardDuty's paths are not ASFF's"
    );
    assert_eq!(m.account.as_deref(), Some("123456789012"));
    for kind in ["Imported", "Custom Action"] {
        let event = securityhub_event(kind, &[ASFF], "irr-contain");
        assert_eq!(mapped(&ec2(), &event).unwrap(), m, "{kind}");
    }
}

#[test]
fn arn_resource_takes_the_id_out_of_an_arn() {
    assert_eq!(
        arn_resource("arn:aws:ec2:us-east-1:123456789012:instance/i-0abc"),
        Some("i-0abc")
    );
    assert_eq!(arn_resource("arn:aws:s3:::my-bucket"), Some("my-bucket"));
    assert_eq!(
        arn_resource("arn:aws:iam::123456789012:user/path/alice"),
        Some("alice")
    );
    assert_eq!(arn_resource("i-0abc"), None);
    assert_eq!(arn_resource("arn:aws:ec2:us-east-1:1:instance/"), None);
}

#[test]
fn a_missing_field_is_refused_naming_the_path_and_the_input() {
    let mut f: Value = serde_json::from_str(GUARDDUTY).unwrap();
    f["Resource"]["InstanceDetails"]
        .as_object_mut()
        .unwrap()
        .remove("InstanceId");
    let (kind, msg) = mapped(&ec2(), &f.to_string()).unwrap_err();
    assert_eq!(kind, ErrorKind::Unmapped);
    assert!(
        msg.contains("input \"instance_id\"")
            && msg.contains(
                "the GuardDuty finding has nothing at $.Resource.InstanceDetails.InstanceId"
            ),
        "{msg}"
    );
    // A null counts as nothing.
    f["Resource"]["InstanceDetails"]["InstanceId"] = Value::Null;
    assert!(mapped(&ec2(), &f.to_string())
        .unwrap_err()
        .1
        .contains("has nothing at"));
    // The target too: every problem at once.
    f.as_object_mut().unwrap().remove("Region");
    let msg = mapped(&ec2(), &f.to_string()).unwrap_err().1;
    assert!(
        msg.contains("target region") && msg.contains("has nothing at $.Region"),
        "{msg}"
    );
    assert!(msg.contains("input \"instance_id\""), "{msg}");
}

#[test]
fn a_value_of_the_wrong_type_is_refused() {
    let f = GUARDDUTY.replace("\"i-99999999\"", "\"web-1\"");
    let msg = mapped(&ec2(), &f).unwrap_err().1;
    assert!(
        msg.contains("input \"instance_id\"") && msg.contains("\"web-1\" is not an instance id"),
        "{msg}"
    );
    // A list where one value belongs.
    let f = GUARDDUTY.replace("\"i-99999999\"", "[\"i-99999999\"]");
    let msg = mapped(&ec2(), &f).unwrap_err().1;
    assert!(
        msg.contains("input \"instance_id\"") && msg.contains("a list"),
        "{msg}"
    );
    // An account that is not 12 digits.
    let f = GUARDDUTY.replace(
        "\"AccountId\": \"123456789012\"",
        "\"AccountId\": \"12345\"",
    );
    let msg = mapped(&ec2(), &f).unwrap_err().1;
    assert!(
        msg.contains("target account") && msg.contains("\"12345\" is not"),
        "{msg}"
    );
    // Not an ARN under | arn_resource.
    let f = ASFF.replace(
        "arn:aws:ec2:us-east-1:123456789012:instance/i-99999999",
        "i-99999999",
    );
    let msg = mapped(&ec2(), &f).unwrap_err().1;
    assert!(msg.contains("not an ARN"), "{msg}");
    // Control characters from the finding never reach the terminal.
    let f = GUARDDUTY.replace("\"i-99999999\"", "\"\\u001b[31mred\"");
    let msg = mapped(&ec2(), &f).unwrap_err().1;
    assert!(!msg.contains('\u{1b}') && msg.contains("\\u{1b}"), "{msg}");
}

#[test]
fn a_list_input_takes_a_scalar_as_one_item_and_a_list_as_is() {
    let pb = playbook(
        "  instance_ids: {type: list, items: instance_id}\n",
        "  guardduty:\n    types: [\"UnauthorizedAccess:EC2/SSHBruteForce\"]\n  inputs:\n    instance_id: \"$.Resource.InstanceDetails.InstanceId\"\n    instance_ids: \"$.Resource.InstanceDetails.InstanceId\"\n",
    );
    let m = mapped(&pb, GUARDDUTY).unwrap();
    assert_eq!(m.inputs["instance_ids"], serde_json::json!(["i-99999999"]));
    let pb = playbook(
        "  instance_ids: {type: list, items: instance_id}\n",
        "  securityhub:\n  inputs:\n    instance_id: \"$.Resources[0].Id | arn_resource\"\n    instance_ids: \"$.Resources[*].Id | arn_resource\"\n",
    );
    let mut f: Value = serde_json::from_str(ASFF).unwrap();
    let mut second = f["Resources"][0].clone();
    second["Id"] = "arn:aws:ec2:us-east-1:123456789012:instance/i-0123456789abcdef0".into();
    f["Resources"].as_array_mut().unwrap().push(second);
    let m = mapped(&pb, &f.to_string()).unwrap();
    assert_eq!(
        m.inputs["instance_ids"],
        serde_json::json!(["i-99999999", "i-0123456789abcdef0"])
    );
}

#[test]
fn a_finding_the_playbook_is_not_for_is_refused() {
    let other = GUARDDUTY.replace(
        "UnauthorizedAccess:EC2/SSHBruteForce",
        "Recon:EC2/PortProbeUnprotectedPort",
    );
    let (kind, msg) = mapped(&ec2(), &other).unwrap_err();
    assert_eq!(kind, ErrorKind::NotForThisPlaybook);
    assert!(
        msg.contains(
            "\"Recon:EC2/PortProbeUnprotectedPort\", which is not one this playbook is for"
        ),
        "{msg}"
    );
    let event = securityhub_event("Custom Action", &[ASFF], "other-action");
    let (kind, msg) = mapped(&ec2(), &event).unwrap_err();
    assert_eq!(kind, ErrorKind::NotForThisPlaybook);
    assert!(msg.contains("custom action \"other-action\""), "{msg}");
    let gd_only = playbook("", "  guardduty:\n    types: [\"UnauthorizedAccess:EC2/SSHBruteForce\"]\n  inputs:\n    instance_id: \"$.Resource.InstanceDetails.InstanceId\"\n");
    let msg = mapped(&gd_only, ASFF).unwrap_err().1;
    assert!(msg.contains("takes GuardDuty findings only"), "{msg}");
}

#[test]
fn envelopes_and_lists_hold_exactly_one_finding() {
    let two = securityhub_event("Imported", &[ASFF, ASFF], "x");
    let (kind, msg) = parse(two.as_bytes()).unwrap_err();
    assert_eq!(kind, ErrorKind::NotAFinding);
    assert!(msg.contains("detail.findings holds 2 findings"), "{msg}");
    let none = securityhub_event("Imported", &[], "x");
    assert!(parse(none.as_bytes())
        .unwrap_err()
        .1
        .contains("holds 0 findings"));
    let insight = "{\"detail-type\":\"Security Hub Insight Results\",\"source\":\"aws.securityhub\",\"detail\":{}}";
    assert!(parse(insight.as_bytes())
        .unwrap_err()
        .1
        .contains("holds no finding irr takes"));
    // An event claiming GuardDuty's detail-type from another source.
    let spoofed = guardduty_event(GUARDDUTY).replace("\"aws.guardduty\"", "\"my.app\"");
    assert!(parse(spoofed.as_bytes()).is_err());
    assert!(parse(b"[1, 2]").unwrap_err().1.contains("a list"));
    assert!(parse(b"{\"a\": 1}")
        .unwrap_err()
        .1
        .contains("neither a GuardDuty finding"));
}

#[test]
fn not_json_is_refused_with_its_position_and_deep_nesting_is_bounded() {
    let (kind, msg) = parse(b"{\n  \"Type\": \"x\",\n  oops\n}").unwrap_err();
    assert_eq!(kind, ErrorKind::NotJson);
    assert!(msg.contains("line 3, column 3"), "{msg}");
    let deep = "[".repeat(100_000);
    let (kind, msg) = parse(deep.as_bytes()).unwrap_err();
    assert_eq!(kind, ErrorKind::NotJson);
    assert!(msg.contains("recursion limit"), "{msg}");
}

#[test]
fn an_oversized_file_is_refused_before_it_is_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let big = dir.path().join("big.json");
    let f = std::fs::File::create(&big).unwrap();
    f.set_len(MAX_FINDING_BYTES + 1).unwrap();
    let e = read(&big).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    assert!(e.to_string().contains("at most 1048576 bytes"), "{e}");
    // A device is read only up to the bound.
    let e = read(Path::new("/dev/zero")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::TooLarge);
    assert_eq!(read(dir.path()).unwrap_err().kind, ErrorKind::Read);
    let e = read(&dir.path().join("missing.json")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Read);
}

#[test]
fn load_keeps_the_bytes_as_given_and_refuses_a_playbook_without_trigger() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("f.json");
    std::fs::write(&file, GUARDDUTY).unwrap();
    let t = load(&file, &ec2()).unwrap();
    assert_eq!(t.bytes, GUARDDUTY.as_bytes());
    assert!(t
        .evidence_source()
        .contains("GuardDuty finding UnauthorizedAccess:EC2/SSHBruteForce"));
    let text = "apiVersion: irr/v1\nkind: Playbook\nmetadata: {name: t, version: 1.0.0}\nsteps:\n  - id: n\n    action: evidence.capture\n    with: {name: a.txt, content: x}\n";
    let plain = crate::validate::validate(&Source::new("t.yaml", text)).unwrap();
    let e = load(&file, &plain).unwrap_err();
    assert_eq!(e.kind, ErrorKind::NotForThisPlaybook);
    assert!(e.message.contains("has no trigger: section"), "{e}");
}

#[test]
fn the_mapped_inputs_are_given_with_where_they_came_from() {
    let m = mapped(&ec2(), GUARDDUTY).unwrap();
    let given = m.given();
    let (name, value, whence) = &given[0];
    assert_eq!(
        (name.as_str(), value),
        ("instance_id", &Value::from("i-99999999"))
    );
    assert!(
        whence.contains("$.Resource.InstanceDetails.InstanceId"),
        "{whence}"
    );
}
