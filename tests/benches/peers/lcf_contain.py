"""libcloudforensics driver of the peer benchmark (tests/benches/peers.rs).

    python lcf_contain.py ZONE CASE EXAMINER_CIDR INSTANCE_ID...

For each instance, with libcloudforensics' own AWS API (providers.aws.forensics and
internal.account / ec2 / ebs), the containment it offers:
  1. forensics.InstanceNetworkQuarantine: a new empty security group (ingress/egress only from the
     examiner range) in place of the instance's groups;
  2. forensics.InstanceProfileMitigator: the instance profile association removed (an instance
     without one is let be: libcloudforensics raises ResourceNotFoundError for it, and moto's
     RunInstances associates the profile with the first instance of a multi-instance launch
     only; the benchmark checks afterwards that no association is left);
  3. AWSVolume.Snapshot for every volume attached to the instance (tagged with the case; it waits
     for the snapshot to complete).
Exits non-zero at the first failure (libcloudforensics raises). Talks to whatever endpoint boto3
is given: the benchmark sets AWS_ENDPOINT_URL (boto3 >= 1.28 honours it) to the local emulator.
"""
import sys

from libcloudforensics import errors
from libcloudforensics.providers.aws import forensics
from libcloudforensics.providers.aws.internal import account


def main(argv):
    zone, case, cidr, ids = argv[1], argv[2], argv[3], argv[4:]
    if not ids:
        sys.exit("usage: lcf_contain.py ZONE CASE EXAMINER_CIDR INSTANCE_ID...")
    for instance_id in ids:
        forensics.InstanceNetworkQuarantine(zone, instance_id, [cidr])
        try:
            forensics.InstanceProfileMitigator(zone, instance_id)
        except errors.ResourceNotFoundError as e:
            if "does not have a profile attachment" not in str(e):
                raise
            print(instance_id, "has no instance profile attachment", flush=True)
        aws = account.AWSAccount(zone)
        instance = aws.ec2.GetInstanceById(instance_id)
        volumes = instance.ListVolumes()
        if not volumes:
            sys.exit("no volumes found for " + instance_id)
        for volume in volumes.values():
            snap = volume.Snapshot(tags={"case": case})
            print(instance_id, volume.volume_id, snap.snapshot_id, flush=True)


if __name__ == "__main__":
    main(sys.argv)
