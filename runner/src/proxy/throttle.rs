//! EC2's request throttling: its documented default token buckets, per action.

use super::*;

/// EC2's default token buckets (capacity, refill per second), as documented.
pub(super) struct Buckets {
    named: BTreeMap<&'static str, Bucket>,
}

/// Actions with a bucket of their own: 100 tokens, 5 a second.
pub(super) const OWN_BUCKET: [&str; 6] = [
    "CreateSnapshot",
    "CreateSnapshots",
    "CreateVolume",
    "ModifyNetworkInterfaceAttribute",
    "AssociateIamInstanceProfile",
    "DisassociateIamInstanceProfile",
];

/// Security-group rule changes: a bucket of their own category.
pub(super) const SG_RULES: [&str; 4] = [
    "AuthorizeSecurityGroupIngress",
    "AuthorizeSecurityGroupEgress",
    "RevokeSecurityGroupIngress",
    "RevokeSecurityGroupEgress",
];

pub(super) struct Bucket {
    capacity: f64,
    refill: f64,
    tokens: f64,
    at: Instant,
}

impl Bucket {
    pub(super) fn new(capacity: f64, refill: f64, at: Instant) -> Bucket {
        Bucket {
            capacity,
            refill,
            tokens: capacity,
            at,
        }
    }

    /// Takes a token if there is one.
    pub(super) fn take(&mut self, now: Instant) -> bool {
        let dt = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + dt * self.refill).min(self.capacity);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

impl Buckets {
    pub(super) fn new(at: Instant) -> Buckets {
        let mut named = BTreeMap::new();
        named.insert("non-mutating", Bucket::new(100.0, 20.0, at));
        named.insert("unfiltered-non-mutating", Bucket::new(50.0, 10.0, at));
        named.insert("mutating", Bucket::new(50.0, 5.0, at));
        named.insert("security-group-rules", Bucket::new(50.0, 5.0, at));
        named.insert("tags", Bucket::new(100.0, 10.0, at));
        for op in OWN_BUCKET {
            named.insert(op, Bucket::new(100.0, 5.0, at));
        }
        Buckets { named }
    }

    /// The bucket an EC2 call draws from.
    pub(super) fn bucket_of(action: &str, meter: Meter) -> Option<&'static str> {
        let op = action.strip_prefix("ec2:")?;
        if let Some(own) = OWN_BUCKET.iter().find(|o| **o == op) {
            return Some(own);
        }
        if SG_RULES.contains(&op) {
            return Some("security-group-rules");
        }
        if op == "CreateTags" || op == "DeleteTags" {
            return Some("tags");
        }
        match meter {
            Meter::Other => None,
            Meter::Read => Some("non-mutating"),
            Meter::UnfilteredRead => Some("unfiltered-non-mutating"),
            Meter::Mutating => Some("mutating"),
        }
    }

    /// `Some(bucket)` when the call is throttled (its bucket is empty).
    pub(super) fn take(&mut self, action: &str, meter: Meter) -> Option<&'static str> {
        let name = Self::bucket_of(action, meter)?;
        let bucket = self.named.get_mut(name)?;
        if bucket.take(Instant::now()) {
            None
        } else {
            Some(name)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ec2_buckets_empty_and_refill() {
        let mut b = Buckets::new(Instant::now());
        let op = "ec2:ModifyNetworkInterfaceAttribute";
        for _ in 0..100 {
            assert_eq!(b.take(op, Meter::Mutating), None);
        }
        assert_eq!(
            b.take(op, Meter::Mutating),
            Some("ModifyNetworkInterfaceAttribute")
        );
        // Other buckets are separate.
        assert_eq!(b.take("ec2:CreateTags", Meter::Mutating), None);
        assert_eq!(b.take("ec2:DescribeInstances", Meter::Read), None);
        // 50 unfiltered reads, then throttled.
        for _ in 0..50 {
            assert_eq!(b.take("ec2:DescribeVolumes", Meter::UnfilteredRead), None);
        }
        assert_eq!(
            b.take("ec2:DescribeVolumes", Meter::UnfilteredRead),
            Some("unfiltered-non-mutating")
        );
        // Not EC2: never throttled by this model.
        assert_eq!(b.take("iam:CreateRole", Meter::Other), None);
        // Refill: 5 a second.
        let bucket = b.named.get_mut("ModifyNetworkInterfaceAttribute").unwrap();
        let later = bucket.at + Duration::from_millis(1000);
        let taken = (0..10).filter(|_| bucket.take(later)).count();
        assert_eq!(taken, 5);
    }
}
