//! Fan-out targets: the accounts and regions a run acts in (`targets:` in the playbook, or
//! `irr run --targets FILE`), resolved to a list of account-regions, each reached through a
//! role assumed from the caller's credentials.
//!
//! - Accounts are given by id, or found in AWS Organizations: every `ACTIVE` account in the
//!   named organizational units and the units below them (`ListAccountsForParent`,
//!   `ListOrganizationalUnitsForParent`, paged and bounded).
//! - Regions default to the caller's region.
//! - The role is `arn:PARTITION:iam::ACCOUNT:role/NAME` (the partition of the caller's ARN),
//!   assumed with the external id when given, under a session name that carries the case
//!   (`irr-CASE`, shortened and cleaned to what STS accepts), so CloudTrail in each account
//!   shows which case acted.

use std::collections::BTreeSet;

use irr_forensics::manifest::Target;

/// The most accounts one run fans out to.
pub const MAX_ACCOUNTS: usize = 1000;
/// The most regions.
pub const MAX_REGIONS: usize = 40;
/// The highest `targets.concurrency`.
pub const MAX_CONCURRENCY: usize = 256;
/// The most organizational units walked (the named ones and every one below them).
const MAX_OUS: usize = 1000;

/// `targets:` as validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetsDecl {
    /// The accounts.
    pub accounts: AccountSet,
    /// The regions (empty: the caller's region).
    pub regions: Vec<String>,
    /// The role name (with its path, if any) assumed in each account.
    pub role: String,
    /// The external id the role's trust policy asks for.
    pub external_id: Option<String>,
    /// Items at once per account-region (`None`: `--concurrency`).
    pub concurrency: Option<usize>,
}

/// Where the accounts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountSet {
    /// These ids.
    Ids(Vec<String>),
    /// Every active account in these organizational units (and those below them).
    Organization(Vec<String>),
}

/// What a fan-out parent's `run.json` records: the targets resolved when it started (resume
/// fans out to exactly these), and how each is reached.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FanoutRecord {
    /// Every account-region, in order.
    pub targets: Vec<Target>,
    /// The role name assumed in each account.
    pub role: String,
    /// The external id, when the role asks for one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// The partition of the role ARNs.
    pub partition: String,
    /// Items at once in each account-region.
    pub concurrency: usize,
}

impl FanoutRecord {
    /// Each target with its role ARN.
    pub fn resolved(&self) -> Vec<Resolved> {
        self.targets
            .iter()
            .map(|t| Resolved {
                target: t.clone(),
                role_arn: role_arn(&self.partition, &t.account, &self.role),
            })
            .collect()
    }
}

/// One account-region of a fan-out, with the role to assume there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    /// Account and region.
    pub target: Target,
    /// `arn:PARTITION:iam::ACCOUNT:role/NAME`.
    pub role_arn: String,
}

/// The partition of an ARN (`aws`, `aws-us-gov`, `aws-cn`), `aws` when it is not an ARN.
pub fn partition_of(arn: &str) -> &str {
    arn.split(':')
        .nth(1)
        .filter(|p| p.starts_with("aws"))
        .unwrap_or("aws")
}

/// The role's ARN in `account`.
pub fn role_arn(partition: &str, account: &str, role: &str) -> String {
    format!("arn:{partition}:iam::{account}:role/{role}")
}

/// The session name under which each role is assumed: `irr-CASE`, with what STS does not
/// accept (`[\w+=,.@-]`, 2 to 64 characters) replaced by `-`.
pub fn session_name(case_id: &str) -> String {
    let clean: String = case_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "+=,.@_-".contains(c) {
                c
            } else {
                '-'
            }
        })
        .take(60)
        .collect();
    format!("irr-{clean}")
}

/// Every account-region, in the order accounts and regions were given.
pub fn expand(
    accounts: &[String],
    regions: &[String],
    partition: &str,
    role: &str,
) -> Vec<Resolved> {
    accounts
        .iter()
        .flat_map(|a| {
            regions.iter().map(move |r| Resolved {
                target: Target {
                    account: a.clone(),
                    region: r.clone(),
                },
                role_arn: role_arn(partition, a, role),
            })
        })
        .collect()
}

/// The active accounts of the organizational units `ous` and every unit below them, sorted.
/// `Err` is what to say (nothing was changed).
pub async fn organization_accounts(
    client: &aws_sdk_organizations::Client,
    ous: &[String],
) -> Result<Vec<String>, String> {
    let mut pending: Vec<String> = ous.to_vec();
    let mut seen: BTreeSet<String> = BTreeSet::new();
    let mut accounts: BTreeSet<String> = BTreeSet::new();
    while let Some(ou) = pending.pop() {
        if !seen.insert(ou.clone()) {
            continue;
        }
        if seen.len() > MAX_OUS {
            return Err(format!(
                "the organizational units named hold more than {MAX_OUS} units; name fewer"
            ));
        }
        let mut pages = client
            .list_accounts_for_parent()
            .parent_id(&ou)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                irr_forensics::awserr::describe("organizations", "ListAccountsForParent", &e).line()
            })?;
            for a in page.accounts() {
                let active = a.status().is_none_or(|s| s.as_str() == "ACTIVE");
                match a.id() {
                    Some(id)
                        if active && id.len() == 12 && id.bytes().all(|b| b.is_ascii_digit()) =>
                    {
                        accounts.insert(id.to_owned());
                    }
                    _ => {}
                }
            }
            if accounts.len() > MAX_ACCOUNTS {
                return Err(format!("the organizational units named hold more than {MAX_ACCOUNTS} accounts; name fewer"));
            }
        }
        let mut pages = client
            .list_organizational_units_for_parent()
            .parent_id(&ou)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                irr_forensics::awserr::describe(
                    "organizations",
                    "ListOrganizationalUnitsForParent",
                    &e,
                )
                .line()
            })?;
            pending.extend(
                page.organizational_units()
                    .iter()
                    .filter_map(|u| u.id().map(str::to_owned)),
            );
        }
    }
    if accounts.is_empty() {
        return Err(format!(
            "the organizational units {} hold no active account",
            ous.join(", ")
        ));
    }
    Ok(accounts.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_sessions_and_the_product() {
        assert_eq!(partition_of("arn:aws-us-gov:iam::1:user/x"), "aws-us-gov");
        assert_eq!(partition_of("none"), "aws");
        assert_eq!(
            role_arn("aws", "111111111111", "ir/irr-responder"),
            "arn:aws:iam::111111111111:role/ir/irr-responder"
        );
        assert_eq!(session_name("IR 2026/07:x"), "irr-IR-2026-07-x");
        assert!(session_name(&"c".repeat(200)).len() <= 64);
        let r = expand(
            &["111111111111".into(), "222222222222".into()],
            &["us-east-1".into(), "us-west-2".into()],
            "aws",
            "irr",
        );
        let got: Vec<String> = r.iter().map(|r| r.target.to_string()).collect();
        assert_eq!(
            got,
            [
                "111111111111/us-east-1",
                "111111111111/us-west-2",
                "222222222222/us-east-1",
                "222222222222/us-west-2"
            ]
        );
    }
}
