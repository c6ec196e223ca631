//! `ec2.find_instances`: the instances a finding points at (an IP, a tag, an AMI, a group),
//! so that a `for_each` can contain them.
//!
//! The criteria are EC2 filters, combined as EC2 combines filters: every criterion must hold,
//! a list criterion holds when any of its values does. Terminated instances are never listed.
//! EC2's answer is checked again here, criterion by criterion, before an instance is listed:
//! this list feeds containment, and an instance that does not match (an emulator that ignores
//! a filter, a wrong answer) must not be isolated. `launched_after` has no EC2 filter and is
//! applied here only.
//!
//! IP criteria: EC2 filters IPv4 and IPv6 addresses under different names, and filters of
//! different names must all hold, so a list mixing both families is sent as one query per
//! family (at most four queries: private and public), their answers joined.

use std::net::IpAddr;

use crate::types::ValueType;

use super::*;

/// At most this many values in one list criterion (EC2 takes up to 200 values per filter).
const MAX_VALUES: usize = 200;
/// The default, and the largest allowed, `max_instances`.
const DEFAULT_MAX_INSTANCES: u64 = 1000;
const LIMIT_MAX_INSTANCES: u64 = 10_000;
/// At most this many pages per query: bounded time whatever EC2 (or a hostile endpoint)
/// answers, e.g. empty pages that always carry a next token.
const MAX_PAGES: usize = 100;

/// Parameters of `ec2.find_instances`: every criterion given must hold.
///
/// Each field's doc comment is the parameter's description in the catalog.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FindInstancesParams {
    /// instances with one of these ids (EC2 filter `instance-id`: an id that does not exist matches nothing, it is not an error)
    #[schemars(extend("x-irr-type" = "instance_id"))]
    pub instance_ids: Option<Vec<String>>,
    /// instances with one of these private addresses on any network interface (`network-interface.addresses.private-ip-address`; IPv6 addresses by `network-interface.ipv6-addresses.ipv6-address`)
    #[schemars(extend("x-irr-type" = "ip_address"))]
    pub private_ips: Option<Vec<String>>,
    /// instances with one of these public addresses (`ip-address`; IPv6 addresses by `network-interface.ipv6-addresses.ipv6-address`)
    #[schemars(extend("x-irr-type" = "ip_address"))]
    pub public_ips: Option<Vec<String>>,
    /// instances carrying every one of these tags, key -> value (`tag:KEY`; `*` and `?` in a value are wildcards, as in EC2's filters)
    pub tags: Option<BTreeMap<String, String>>,
    /// instances in one of these security groups (`instance.group-id`)
    #[schemars(extend("x-irr-type" = "security_group_id"))]
    pub security_group_ids: Option<Vec<String>>,
    /// instances in this VPC (`vpc-id`)
    #[schemars(extend("x-irr-type" = "vpc_id"))]
    pub vpc_id: Option<String>,
    /// instances in this subnet (`subnet-id`)
    #[schemars(extend("x-irr-type" = "subnet_id"))]
    pub subnet_id: Option<String>,
    /// instances launched from this AMI (`image-id`)
    #[schemars(extend("x-irr-type" = "image_id"))]
    pub image_id: Option<String>,
    /// instances launched at or after this time (RFC 3339, e.g. a finding's first-seen time; checked against each instance's `LaunchTime`)
    #[schemars(extend("x-irr-type" = "timestamp"))]
    pub launched_after: Option<String>,
    /// the most instances the step may list (at most 10000): when more match, the step fails after recording what it saw, rather than act on part of the list or on an unexpectedly large one
    #[schemars(extend("default" = 1000))]
    pub max_instances: Option<u64>,
}

/// `ec2.find_instances`: its declaration (see [`Action`]); the parameters are [`FindInstancesParams`].
pub struct FindInstances;

/// The criteria of `ec2.find_instances` (at least one must be given).
const CRITERIA: &[&str] = &[
    "instance_ids",
    "private_ips",
    "public_ips",
    "tags",
    "security_group_ids",
    "vpc_id",
    "subnet_id",
    "image_id",
    "launched_after",
];

impl Action for FindInstances {
    type Params = FindInstancesParams;
    const DECLARATION: Declaration = Declaration {
        name: "ec2.find_instances",
        summary: "find the instances (not terminated) that match every criterion given: ids, private or public IPs, tags, security groups, VPC, subnet, AMI, launch time",
        exactly_one_of: &[],
        outputs: &[
            out("instance_ids", TypeSpec::List(&TypeSpec::InstanceId), "the matching instances, sorted (for `for_each`)"),
            ARTIFACTS,
        ],
        api_calls: &["ec2:DescribeInstances"],
        permissions: &[perm("ec2:DescribeInstances", ANY)],
        mutating: false,
        idempotency: "read-only",
        undo: None,
    };
    const AT_LEAST_ONE_OF: &'static [&'static [&'static str]] = &[CRITERIA];
    async fn run(
        ctx: &ActionCtx,
        params: FindInstancesParams,
    ) -> Result<ActionOutput, ActionError> {
        find_instances(ctx, params).await
    }
}

/// The checked criteria of one step.
#[derive(Debug, Default)]
pub(crate) struct Criteria {
    instance_ids: Option<BTreeSet<String>>,
    private_ips: Option<BTreeSet<IpAddr>>,
    public_ips: Option<BTreeSet<IpAddr>>,
    tags: BTreeMap<String, String>,
    security_group_ids: Option<BTreeSet<String>>,
    vpc_id: Option<String>,
    subnet_id: Option<String>,
    image_id: Option<String>,
    launched_after: Option<time::OffsetDateTime>,
    max_instances: usize,
}

fn bad(msg: String) -> ActionError {
    ActionError::Params(format!("ec2.find_instances: {msg}"))
}

/// A list criterion: at most [`MAX_VALUES`] values, each checked by `parse`.
fn list<T: Ord>(
    name: &str,
    values: Option<Vec<String>>,
    parse: impl Fn(&str) -> Result<T, String>,
) -> Result<Option<BTreeSet<T>>, ActionError> {
    let Some(values) = values else {
        return Ok(None);
    };
    if values.len() > MAX_VALUES {
        return Err(bad(format!(
            "`{name}` has {} values; EC2 takes at most {MAX_VALUES} per filter: split the step",
            values.len()
        )));
    }
    values
        .iter()
        .map(|v| parse(v).map_err(|e| bad(format!("`{name}`: {e}"))))
        .collect::<Result<BTreeSet<T>, _>>()
        .map(Some)
}

/// A value of irr type `ty` (an id's shape, an address).
fn checked(ty: ValueType) -> impl Fn(&str) -> Result<String, String> {
    move |v: &str| ty.check(&Value::from(v)).map(|()| v.to_owned())
}

fn one(name: &str, v: Option<String>, ty: ValueType) -> Result<Option<String>, ActionError> {
    v.map(|v| checked(ty)(&v).map_err(|e| bad(format!("`{name}`: {e}"))))
        .transpose()
}

impl Criteria {
    /// Checks the rendered parameters (templated values are only known now) and refuses a
    /// step that would match every instance of the account.
    pub(crate) fn from_params(p: FindInstancesParams) -> Result<Criteria, ActionError> {
        let max = p.max_instances.unwrap_or(DEFAULT_MAX_INSTANCES);
        if !(1..=LIMIT_MAX_INSTANCES).contains(&max) {
            return Err(bad(format!(
                "`max_instances` must be from 1 to {LIMIT_MAX_INSTANCES}, got {max}"
            )));
        }
        let ip = |v: &str| {
            checked(ValueType::IpAddress)(v)?
                .parse::<IpAddr>()
                .map_err(|e| e.to_string())
        };
        let c = Criteria {
            instance_ids: list(
                "instance_ids",
                p.instance_ids,
                checked(ValueType::InstanceId),
            )?,
            private_ips: list("private_ips", p.private_ips, ip)?,
            public_ips: list("public_ips", p.public_ips, ip)?,
            tags: p.tags.unwrap_or_default(),
            security_group_ids: list(
                "security_group_ids",
                p.security_group_ids,
                checked(ValueType::SecurityGroupId),
            )?,
            vpc_id: one("vpc_id", p.vpc_id, ValueType::VpcId)?,
            subnet_id: one("subnet_id", p.subnet_id, ValueType::SubnetId)?,
            image_id: one("image_id", p.image_id, ValueType::ImageId)?,
            launched_after: p
                .launched_after
                .map(|t| crate::types::parse_timestamp(&t).map_err(bad))
                .transpose()?,
            max_instances: max as usize,
        };
        if c.tags.keys().any(|k| k.is_empty()) {
            return Err(bad("a tag key is empty".into()));
        }
        let narrows = c.instance_ids.is_some()
            || c.private_ips.is_some()
            || c.public_ips.is_some()
            || !c.tags.is_empty()
            || c.security_group_ids.is_some()
            || c.vpc_id.is_some()
            || c.subnet_id.is_some()
            || c.image_id.is_some()
            || c.launched_after.is_some();
        if !narrows {
            return Err(bad(format!(
                "no criterion was given, so it would match every instance of the account: give at least one of {}",
                CRITERIA.join(", ")
            )));
        }
        Ok(c)
    }

    /// `true` when a list criterion was given but is empty: nothing can match, and nothing
    /// is asked.
    fn matches_nothing(&self) -> bool {
        self.instance_ids.as_ref().is_some_and(BTreeSet::is_empty)
            || self.private_ips.as_ref().is_some_and(BTreeSet::is_empty)
            || self.public_ips.as_ref().is_some_and(BTreeSet::is_empty)
            || self
                .security_group_ids
                .as_ref()
                .is_some_and(BTreeSet::is_empty)
    }

    /// The DescribeInstances queries whose answers, joined, are the candidates: one filter
    /// set per combination of address families. `emulator`: moto implements only
    /// `private-ip-address` (the primary address), not `network-interface.addresses.*`, and
    /// its `instance.group-id` misses the interfaces' groups (docs/emulator-notes.md).
    pub(crate) fn queries(&self, emulator: bool) -> Vec<Vec<(String, Vec<String>)>> {
        let mut base: Vec<(String, Vec<String>)> = vec![(
            "instance-state-name".into(),
            ["pending", "running", "shutting-down", "stopping", "stopped"]
                .map(String::from)
                .to_vec(),
        )];
        let mut add = |name: &str, values: Vec<String>| base.push((name.to_owned(), values));
        if let Some(ids) = &self.instance_ids {
            add("instance-id", ids.iter().cloned().collect());
        }
        for (k, v) in &self.tags {
            add(&format!("tag:{k}"), vec![v.clone()]);
        }
        // moto's `instance.group-id` sees only the groups given at launch outside the
        // interfaces: against it the groups are checked here only (`admits`).
        if let (Some(g), false) = (&self.security_group_ids, emulator) {
            add("instance.group-id", g.iter().cloned().collect());
        }
        for (name, v) in [
            ("vpc-id", &self.vpc_id),
            ("subnet-id", &self.subnet_id),
            ("image-id", &self.image_id),
        ] {
            if let Some(v) = v {
                add(name, vec![v.clone()]);
            }
        }
        let private_v4 = if emulator {
            "private-ip-address"
        } else {
            "network-interface.addresses.private-ip-address"
        };
        let v6 = "network-interface.ipv6-addresses.ipv6-address";
        let mut queries = vec![base];
        for (ips, v4_name) in [
            (&self.private_ips, private_v4),
            (&self.public_ips, "ip-address"),
        ] {
            let Some(ips) = ips else { continue };
            let by_family = |v4: bool| -> Vec<String> {
                ips.iter()
                    .filter(|ip| ip.is_ipv4() == v4)
                    .map(IpAddr::to_string)
                    .collect()
            };
            let alternatives: Vec<(&str, Vec<String>)> =
                [(v4_name, by_family(true)), (v6, by_family(false))]
                    .into_iter()
                    .filter(|(_, v)| !v.is_empty())
                    .collect();
            queries = queries
                .into_iter()
                .flat_map(|q| {
                    alternatives
                        .iter()
                        .filter_map(move |(name, values)| with_filter(q.clone(), name, values))
                })
                .collect();
        }
        queries
    }

    /// `Ok` when the instance meets every criterion (EC2's answer checked again), else the
    /// first criterion it fails.
    fn admits(&self, i: &Instance) -> Result<(), String> {
        let id = i.instance_id().unwrap_or_default();
        let state = i.state().and_then(|s| s.name()).map(|s| s.as_str());
        if matches!(state, Some("terminated") | None) {
            return Err(format!("state {}", state.unwrap_or("unknown")));
        }
        if self
            .instance_ids
            .as_ref()
            .is_some_and(|ids| !ids.contains(id))
        {
            return Err("instance id".into());
        }
        let (private, public) = addresses(i);
        if self
            .private_ips
            .as_ref()
            .is_some_and(|want| want.is_disjoint(&private))
        {
            return Err("private IP".into());
        }
        if self
            .public_ips
            .as_ref()
            .is_some_and(|want| want.is_disjoint(&public))
        {
            return Err("public IP".into());
        }
        for (k, want) in &self.tags {
            match tag_value(i.tags(), k) {
                Some(v) if crate::actions::glob::matches(want, v) => {}
                _ => return Err(format!("tag {k}")),
            }
        }
        if let Some(want) = &self.security_group_ids {
            let groups: BTreeSet<&str> = i
                .security_groups()
                .iter()
                .filter_map(|g| g.group_id())
                .chain(
                    i.network_interfaces()
                        .iter()
                        .flat_map(|n| n.groups())
                        .filter_map(|g| g.group_id()),
                )
                .collect();
            if !want.iter().any(|g| groups.contains(g.as_str())) {
                return Err("security group".into());
            }
        }
        for (what, want, got) in [
            ("VPC", &self.vpc_id, i.vpc_id()),
            ("subnet", &self.subnet_id, i.subnet_id()),
            ("AMI", &self.image_id, i.image_id()),
        ] {
            if want.as_deref().is_some_and(|w| Some(w) != got) {
                return Err(what.into());
            }
        }
        if let Some(after) = self.launched_after {
            // EC2 gives launch times to the second: compare seconds.
            if i.launch_time()
                .is_none_or(|t| t.secs() < after.unix_timestamp())
            {
                return Err("launched before launched_after".into());
            }
        }
        Ok(())
    }
}

/// `q` with the filter `name` = `values`; where `q` already filters on `name` (an IPv6
/// address asked for as private and as public), the values both allow, or `None` when no
/// value is left (that query can match nothing).
fn with_filter(
    mut q: Vec<(String, Vec<String>)>,
    name: &str,
    values: &[String],
) -> Option<Vec<(String, Vec<String>)>> {
    match q.iter_mut().find(|(n, _)| n == name) {
        Some((_, have)) => {
            have.retain(|v| values.contains(v));
            if have.is_empty() {
                return None;
            }
        }
        None => q.push((name.to_owned(), values.to_vec())),
    }
    Some(q)
}

/// Every private and public address of the instance, on any interface.
fn addresses(i: &Instance) -> (BTreeSet<IpAddr>, BTreeSet<IpAddr>) {
    let parse = |s: Option<&str>| s.and_then(|s| s.parse::<IpAddr>().ok());
    let mut private: BTreeSet<IpAddr> = parse(i.private_ip_address()).into_iter().collect();
    let mut public: BTreeSet<IpAddr> = parse(i.public_ip_address()).into_iter().collect();
    for n in i.network_interfaces() {
        private.extend(parse(n.private_ip_address()));
        public.extend(parse(n.association().and_then(|a| a.public_ip())));
        for a in n.private_ip_addresses() {
            private.extend(parse(a.private_ip_address()));
            public.extend(parse(a.association().and_then(|a| a.public_ip())));
        }
        for a in n.ipv6_addresses() {
            // IPv6 addresses are both: reachable from the internet unless filtered.
            let ip = parse(a.ipv6_address());
            private.extend(ip);
            public.extend(ip);
        }
    }
    (private, public)
}

/// What EC2 answered, checked as it comes: the matching instances in full, the others by id
/// and why (the first [`MAX_LEFT_OUT`] of them).
#[derive(Default)]
struct Answer {
    matched: BTreeMap<String, Instance>,
    left_out: Vec<Value>,
    left_out_ids: BTreeSet<String>,
    left_out_count: usize,
    pages: usize,
}

/// At most this many instances left out are recorded one by one (all are counted).
const MAX_LEFT_OUT: usize = 1000;

impl Answer {
    /// Reads every page of one query; `Some(why)` when it stopped at a bound.
    async fn read(
        &mut self,
        ctx: &ActionCtx,
        q: &[(String, Vec<String>)],
        criteria: &Criteria,
    ) -> Result<Option<String>, ActionError> {
        let filters: Vec<Filter> = q.iter().map(|(n, v)| filter(n, v.clone())).collect();
        let mut stream = ctx
            .aws
            .ec2
            .describe_instances()
            .set_filters(Some(filters))
            .max_results(1000)
            .into_paginator()
            .send();
        let mut query_pages = 0usize;
        while let Some(page) = stream.next().await {
            let page = page.map_err(read_err("ec2", "DescribeInstances"))?;
            self.pages += 1;
            query_pages += 1;
            for i in page.reservations().iter().flat_map(|r| r.instances()) {
                self.add(i, criteria);
            }
            if self.matched.len() > criteria.max_instances {
                return Ok(Some(format!(
                    "more than {} instances matched",
                    criteria.max_instances
                )));
            }
            if query_pages >= MAX_PAGES {
                return Ok(Some(format!(
                    "EC2 answered {MAX_PAGES} pages for one query and still had more"
                )));
            }
        }
        Ok(None)
    }

    fn add(&mut self, i: &Instance, criteria: &Criteria) {
        let Some(id) = i.instance_id() else { return };
        if self.matched.contains_key(id) || self.left_out_ids.contains(id) {
            return;
        }
        match criteria.admits(i) {
            Ok(()) => {
                self.matched.insert(id.to_owned(), i.clone());
            }
            Err(why) => {
                self.left_out_count += 1;
                if self.left_out.len() < MAX_LEFT_OUT {
                    self.left_out_ids.insert(id.to_owned());
                    self.left_out
                        .push(json!({"instance_id": id, "does_not_match": why}));
                }
            }
        }
    }
}

fn filters_json(q: &[(String, Vec<String>)]) -> Value {
    Value::Array(
        q.iter()
            .map(|(n, v)| json!({"name": n, "values": v}))
            .collect(),
    )
}

/// `ec2.find_instances`: lists the instances that meet every criterion (see the module
/// docs), records the queries, every instance EC2 answered with and why any was left out
/// (`find-instances.json`), and outputs `instance_ids`. Read-only; the same in a dry run.
pub async fn find_instances(
    ctx: &ActionCtx,
    p: FindInstancesParams,
) -> Result<ActionOutput, ActionError> {
    let criteria = Criteria::from_params(p)?;
    let queries = if criteria.matches_nothing() {
        Vec::new()
    } else {
        criteria.queries(ctx.aws.endpoint_override)
    };
    let mut answer = Answer::default();
    let mut capped = None;
    for q in &queries {
        capped = answer.read(ctx, q, &criteria).await?;
        if capped.is_some() {
            break;
        }
    }
    let matched: Vec<String> = answer.matched.keys().cloned().collect();
    let record = json!({
        "queries": queries.iter().map(|q| filters_json(q)).collect::<Vec<_>>(),
        "launched_after": criteria.launched_after.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok()),
        "pages": answer.pages,
        "complete": capped.is_none(),
        "capped": capped,
        "instance_ids": matched,
        "instances": answer.matched.values().map(instance_json).collect::<Vec<_>>(),
        "left_out_count": answer.left_out_count,
        "left_out": answer.left_out,
    });
    let artifact = ctx.evidence("find-instances.json", &record, "ec2:DescribeInstances")?;
    if let Some(why) = capped {
        return Err(ActionError::Target(format!(
            "ec2.find_instances: {why}; nothing is listed rather than part of the list (recorded in {artifact}): narrow the criteria, or raise max_instances (at most {LIMIT_MAX_INSTANCES})"
        )));
    }
    Ok(ActionOutput::default()
        .with("instance_ids", matched)
        .with("artifacts", vec![artifact]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(v: Value) -> FindInstancesParams {
        serde_json::from_value(v).unwrap()
    }

    fn names(q: &[(String, Vec<String>)]) -> Vec<(&str, Vec<&str>)> {
        q.iter()
            .map(|(n, v)| (n.as_str(), v.iter().map(String::as_str).collect()))
            .collect()
    }

    const LIVE: &[&str] = &["pending", "running", "shutting-down", "stopping", "stopped"];

    #[test]
    fn every_criterion_becomes_its_filter() {
        let c = Criteria::from_params(params(json!({
            "instance_ids": ["i-0123abcd"],
            "private_ips": ["10.0.1.5"],
            "public_ips": ["203.0.113.9"],
            "tags": {"app": "web", "env": "prod*"},
            "security_group_ids": ["sg-0123abcd"],
            "vpc_id": "vpc-0123abcd",
            "subnet_id": "subnet-0123abcd",
            "image_id": "ami-0123abcd",
            "launched_after": "2026-01-31T09:30:00Z",
        })))
        .unwrap();
        let q = c.queries(false);
        assert_eq!(q.len(), 1);
        assert_eq!(
            names(&q[0]),
            [
                ("instance-state-name", LIVE.to_vec()),
                ("instance-id", vec!["i-0123abcd"]),
                ("tag:app", vec!["web"]),
                ("tag:env", vec!["prod*"]),
                ("instance.group-id", vec!["sg-0123abcd"]),
                ("vpc-id", vec!["vpc-0123abcd"]),
                ("subnet-id", vec!["subnet-0123abcd"]),
                ("image-id", vec!["ami-0123abcd"]),
                (
                    "network-interface.addresses.private-ip-address",
                    vec!["10.0.1.5"]
                ),
                ("ip-address", vec!["203.0.113.9"]),
            ]
        );
        // moto knows only the primary private address, and its group filter misses the
        // interfaces' groups: checked here only.
        let emu = c.queries(true);
        assert_eq!(emu[0][7].0, "private-ip-address");
        assert!(emu[0].iter().all(|(n, _)| n != "instance.group-id"));
    }

    #[test]
    fn address_families_are_separate_queries() {
        let c = Criteria::from_params(params(json!({
            "private_ips": ["10.0.1.5", "2001:db8::5"],
            "public_ips": ["2001:db8::5", "203.0.113.9"],
        })))
        .unwrap();
        let all = c.queries(false);
        let q: Vec<_> = all.iter().map(|q| names(&q[1..])).collect();
        assert_eq!(
            q,
            [
                vec![
                    (
                        "network-interface.addresses.private-ip-address",
                        vec!["10.0.1.5"]
                    ),
                    ("ip-address", vec!["203.0.113.9"]),
                ],
                vec![
                    (
                        "network-interface.addresses.private-ip-address",
                        vec!["10.0.1.5"]
                    ),
                    (
                        "network-interface.ipv6-addresses.ipv6-address",
                        vec!["2001:db8::5"]
                    ),
                ],
                vec![
                    (
                        "network-interface.ipv6-addresses.ipv6-address",
                        vec!["2001:db8::5"]
                    ),
                    ("ip-address", vec!["203.0.113.9"]),
                ],
                // Private and public IPv6 are one filter: the addresses both allow.
                vec![(
                    "network-interface.ipv6-addresses.ipv6-address",
                    vec!["2001:db8::5"]
                )],
            ]
        );
    }

    #[test]
    fn nothing_to_narrow_by_is_refused() {
        for p in [json!({}), json!({"tags": {}}), json!({"max_instances": 5})] {
            let err = Criteria::from_params(params(p.clone()))
                .unwrap_err()
                .to_string();
            assert!(err.contains("would match every instance"), "{p}: {err}");
        }
        // An empty list narrows to nothing: no query at all.
        let c = Criteria::from_params(params(json!({"private_ips": [], "vpc_id": "vpc-0123abcd"})))
            .unwrap();
        assert!(c.matches_nothing());
    }

    #[test]
    fn templated_values_are_checked_when_rendered() {
        for (p, want) in [
            (
                json!({"private_ips": ["10.0.1"]}),
                "\"10.0.1\" is not an IP address",
            ),
            (json!({"vpc_id": "subnet-0123abcd"}), "is not a VPC id"),
            (
                json!({"launched_after": "last tuesday"}),
                "not an RFC 3339 timestamp",
            ),
            (
                json!({"vpc_id": "vpc-0123abcd", "max_instances": 0}),
                "max_instances",
            ),
            (
                json!({"instance_ids": vec!["i-0123abcd"; 201]}),
                "at most 200",
            ),
        ] {
            let err = Criteria::from_params(params(p.clone()))
                .unwrap_err()
                .to_string();
            assert!(err.contains(want), "{p}: {err}");
        }
    }

    fn instance(v: Value) -> Instance {
        let mut b = Instance::builder()
            .instance_id(v["id"].as_str().unwrap())
            .state(
                aws_sdk_ec2::types::InstanceState::builder()
                    .name(v["state"].as_str().unwrap_or("running").into())
                    .build(),
            )
            .private_ip_address(v["ip"].as_str().unwrap_or("10.0.0.1"))
            .vpc_id("vpc-0123abcd")
            .launch_time(aws_smithy_types::DateTime::from_secs(
                v["launched"].as_i64().unwrap_or(1_800_000_000),
            ));
        for (k, val) in v["tags"].as_object().cloned().unwrap_or_default() {
            b = b.tags(tag(&k, val.as_str().unwrap()));
        }
        b.build()
    }

    #[test]
    fn the_answer_is_checked_again() {
        let c = Criteria::from_params(params(json!({
            "private_ips": ["10.0.0.1"],
            "tags": {"env": "prod*"},
            "launched_after": "2027-01-15T08:00:00Z",
        })))
        .unwrap();
        let ok = json!({"id": "i-1", "tags": {"env": "production"}});
        assert_eq!(c.admits(&instance(ok)), Ok(()));
        for (v, why) in [
            (
                json!({"id": "i-2", "ip": "10.0.0.2", "tags": {"env": "prod"}}),
                "private IP",
            ),
            (json!({"id": "i-3", "tags": {"env": "dev"}}), "tag env"),
            (json!({"id": "i-4"}), "tag env"),
            (
                json!({"id": "i-5", "tags": {"env": "prod"}, "state": "terminated"}),
                "state terminated",
            ),
            (
                json!({"id": "i-6", "tags": {"env": "prod"}, "launched": 1_700_000_000}),
                "launched before",
            ),
        ] {
            let got = c.admits(&instance(v.clone())).unwrap_err();
            assert!(got.contains(why), "{v}: {got}");
        }
    }

    /// An EC2 client whose every DescribeInstances page holds `i-bad` (in another VPC than
    /// asked) and `i-good`, and always has a next page: a hostile answer.
    fn endless(rec: std::sync::Arc<crate::actions::test_support::NullRecorder>) -> ActionCtx {
        use aws_sdk_ec2::operation::describe_instances::DescribeInstancesOutput;
        use aws_smithy_mocks::{mock, MockResponseInterceptor, RuleMode};
        // A new token each page (the SDK's paginator stops at a repeated one).
        let page = mock!(aws_sdk_ec2::Client::describe_instances).then_compute_output(|r| {
            let mut bad = instance(json!({"id": "i-bad"}));
            bad.vpc_id = Some("vpc-0000dead".into());
            DescribeInstancesOutput::builder()
                .reservations(
                    aws_sdk_ec2::types::Reservation::builder()
                        .instances(bad)
                        .instances(instance(json!({"id": "i-good"})))
                        .build(),
                )
                .next_token(format!("{}x", r.next_token().unwrap_or_default()))
                .build()
        });
        let conf = aws_sdk_ec2::Config::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_ec2::config::Credentials::new(
                "k", "s", None, None, "t",
            ))
            .http_client(aws_smithy_mocks::create_mock_http_client())
            .interceptor(
                MockResponseInterceptor::new()
                    .rule_mode(RuleMode::MatchAny)
                    .with_rule(&page),
            )
            .build();
        let mut ctx = crate::actions::test_support::ctx_with_iam("IR-1", RuleMode::MatchAny, &[]);
        ctx.aws.ec2 = aws_sdk_ec2::Client::from_conf(conf);
        ctx.aws.endpoint_override = false;
        ctx.recorder = rec;
        ctx
    }

    #[tokio::test]
    async fn an_endless_answer_is_cut_and_a_wrong_instance_never_listed() {
        let ctx = endless(Default::default());
        let p = params(json!({"vpc_id": "vpc-0123abcd"}));
        let err = find_instances(&ctx, p).await.unwrap_err().to_string();
        assert!(
            err.contains(&format!("EC2 answered {MAX_PAGES} pages")),
            "{err}"
        );
        // What was read up to the cut: the wrong VPC's instance is left out, never listed.
        let c = Criteria::from_params(params(json!({"vpc_id": "vpc-0123abcd"}))).unwrap();
        let mut answer = Answer::default();
        let why = answer.read(&ctx, &c.queries(false)[0], &c).await.unwrap();
        assert!(why.is_some());
        assert_eq!(answer.matched.keys().collect::<Vec<_>>(), ["i-good"]);
        assert_eq!(answer.left_out_ids.iter().collect::<Vec<_>>(), ["i-bad"]);
    }
}
