//! A fleet in one run (issue 10): `for_each` over several instances reads them in batches
//! (one `DescribeNetworkInterfaces` for all, one `DescribeInstances` for the steps that start
//! together and one for isolation), makes the
//! case's groups once, snapshots each instance with one `CreateSnapshots`, and contains every
//! instance. Through the fault proxy's EC2 model, which counts the calls.

use irr_runner::proxy::{FaultProxy, ProxySpec, ThrottleModel};
use irr_tests::{add_second_interfaces, compromised_instances, contained, json_lines, Contained};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_is_read_in_batches_and_fully_contained() {
    let emu = irr_tests::PrivateEmulator::start(&[]);
    let endpoint = emu.endpoint();
    let conf = irr_tests::sdk_config_for(&endpoint, ("testing", "testing")).await;
    let (ec2, iam) = (
        aws_sdk_ec2::Client::new(&conf),
        aws_sdk_iam::Client::new(&conf),
    );
    let fleet = compromised_instances(&ec2, &iam, 3).await;
    add_second_interfaces(&ec2, &fleet).await;
    let spec = ProxySpec {
        throttle: Some(ThrottleModel::Ec2),
        ..ProxySpec::default()
    };
    let proxy = FaultProxy::start(&endpoint, spec).await.unwrap();
    let ids: Vec<&str> = fleet.iter().map(|i| i.instance_id.as_str()).collect();
    let url = proxy.url().to_owned();
    let (state, evidence) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (case, out) = tokio::task::block_in_place(|| {
        irr_tests::run_fleet_containment(&url, &ids, state.path(), evidence.path())
    });
    let last = json_lines(&out).pop().expect("a summary");
    assert_eq!(last["status"], "succeeded", "{last:#}");
    for inc in &fleet {
        let c = contained(&ec2, &iam, inc, &case).await;
        assert_eq!(c, Contained::expected(2), "{}", inc.instance_id);
    }
    let stats = proxy.stats();
    let calls = |op: &str| stats.get(op).map_or(0, |s| s.calls);
    // Three steps: protection and snapshots start together and share one batched
    // DescribeInstances, isolation reads afresh; interfaces and volumes once.
    assert_eq!(calls("ec2:DescribeInstances"), 2, "{stats:?}");
    assert_eq!(calls("ec2:DescribeNetworkInterfaces"), 1, "{stats:?}");
    assert_eq!(calls("ec2:DescribeVolumes"), 1, "{stats:?}");
    assert_eq!(calls("ec2:CreateSnapshots"), 3, "{stats:?}");
    assert_eq!(calls("ec2:CreateSnapshot"), 0, "{stats:?}");
    // The allow-all and isolation groups, made once for the VPC the fleet shares.
    assert_eq!(calls("ec2:CreateSecurityGroup"), 2, "{stats:?}");
    // Two moves per interface, two interfaces per instance.
    assert_eq!(
        calls("ec2:ModifyNetworkInterfaceAttribute"),
        12,
        "{stats:?}"
    );
    assert!(stats.values().all(|s| s.throttled == 0), "{stats:?}");
}
