"""What one request costs the emulator (docs/benchmarks.md, "Against peers").

    python3 tests/benches/peers/moto_call_cost.py http://127.0.0.1:PORT MOTO_PID [N]

Seeds the peer benchmark's incident (N instances, default 20: one interface in an "open" group,
two volumes, an instance profile) in a private moto server, then makes each call the
containment of that incident makes, one at a time, and prints the CPU time the moto process
spent per call (from /proc/MOTO_PID/stat) beside the wall time. It tells what bounds a run that
is emulator-bound: moto's fixed cost per request (dispatch, parsing, serialisation, its
request log) against the size of the answer. Loopback only: refuses any other endpoint.
"""
import json
import sys
import time
import urllib.parse
import uuid

import boto3


def main():
    endpoint, pid = sys.argv[1], int(sys.argv[2])
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    host = urllib.parse.urlparse(endpoint).hostname
    if host not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"{endpoint}: not a loopback endpoint")
    kw = dict(endpoint_url=endpoint, region_name="us-east-1",
              aws_access_key_id="testing", aws_secret_access_key="testing")
    ec2, iam = boto3.client("ec2", **kw), boto3.client("iam", **kw)
    ids, group, enis = seed(ec2, iam, n)

    def cpu_ms():
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) * 10  # utime + stime, 100 ticks a second

    def measure(name, call, times=40):
        c, t = cpu_ms(), time.time()
        for i in range(times):
            call(i)
        print(f"{name:45} {(cpu_ms() - c) / times:6.1f} ms moto CPU a call, "
              f"{(time.time() - t) / times * 1000:6.1f} ms wall")

    measure("DescribeInstanceAttribute",
            lambda i: ec2.describe_instance_attribute(InstanceId=ids[i % n], Attribute="disableApiTermination"))
    measure("ModifyInstanceAttribute",
            lambda i: ec2.modify_instance_attribute(InstanceId=ids[i % n], DisableApiTermination={"Value": True}))
    measure("ModifyNetworkInterfaceAttribute",
            lambda i: ec2.modify_network_interface_attribute(NetworkInterfaceId=enis[i % len(enis)], Groups=[group]))
    measure("DescribeSecurityGroups (one group)", lambda i: ec2.describe_security_groups(GroupIds=[group]))
    measure("DescribeInstances (one instance)", lambda i: ec2.describe_instances(InstanceIds=[ids[i % n]]))
    measure(f"DescribeInstances ({n} instances)", lambda i: ec2.describe_instances(InstanceIds=ids), 10)
    measure("CreateSnapshots (one instance, two volumes)",
            lambda i: ec2.create_snapshots(InstanceSpecification={"InstanceId": ids[i % n]}), 20)


def seed(ec2, iam, n):
    vpc = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]["VpcId"]
    subnet = ec2.create_subnet(VpcId=vpc, CidrBlock="10.9.0.0/17")["Subnet"]["SubnetId"]
    group = ec2.create_security_group(GroupName="open-" + uuid.uuid4().hex[:8],
                                      Description="wide-open", VpcId=vpc)["GroupId"]
    role, profile = "web-role-" + uuid.uuid4().hex[:8], "web-profile-" + uuid.uuid4().hex[:8]
    iam.create_role(RoleName=role, AssumeRolePolicyDocument=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                       "Action": "sts:AssumeRole"}]}))
    iam.create_instance_profile(InstanceProfileName=profile)
    iam.add_role_to_instance_profile(InstanceProfileName=profile, RoleName=role)
    run = ec2.run_instances(
        ImageId="ami-12c6146b", MinCount=n, MaxCount=n,
        NetworkInterfaces=[{"DeviceIndex": 0, "SubnetId": subnet}],
        IamInstanceProfile={"Name": profile},
        BlockDeviceMappings=[{"DeviceName": "/dev/sda1", "Ebs": {"VolumeSize": 8}},
                             {"DeviceName": "/dev/sdb", "Ebs": {"VolumeSize": 2}}])
    ids = [i["InstanceId"] for i in run["Instances"]]
    enis = [e["NetworkInterfaceId"] for e in ec2.describe_network_interfaces(
        Filters=[{"Name": "attachment.instance-id", "Values": ids}])["NetworkInterfaces"]]
    for eni in enis:
        ec2.modify_network_interface_attribute(NetworkInterfaceId=eni, Groups=[group])
    return ids, group, enis


if __name__ == "__main__":
    main()
