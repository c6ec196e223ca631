//! The `targets:` section (and `irr run --targets FILE`, the same keys at its top level):
//! which accounts and regions a run fans out to, and the role it assumes in each.

use crate::diagnostic::{Diagnostic, Source};
use crate::load::{self, Node, NodeKind};
use crate::targets::{AccountSet, TargetsDecl, MAX_ACCOUNTS, MAX_CONCURRENCY, MAX_REGIONS};

use super::Validator;

/// The keys of `targets:`.
pub(super) const TARGETS_KEYS: &[&str] = &[
    "accounts",
    "organization",
    "regions",
    "role",
    "external_id",
    "concurrency",
];
const ORGANIZATION_KEYS: &[&str] = &["ous"];

/// Checks a `--targets FILE`: the keys of a `targets:` section at its top level (or under a
/// `targets:` key, as copied from a playbook). `Err` holds every problem, with its place.
pub fn targets_file(source: &Source) -> Result<TargetsDecl, Vec<Diagnostic>> {
    let root = load::parse(source)?;
    let node = match root.get("targets") {
        Some(n) if root.as_map().is_some_and(|m| m.len() == 1) => n,
        _ => &root,
    };
    let mut v = Validator::new(source);
    let decl = v.targets(node);
    match decl {
        Some(d) if v.problems.is_empty() => Ok(d),
        _ => Err(v.problems),
    }
}

/// A 12-digit account id.
fn is_account(s: &str) -> bool {
    s.len() == 12 && s.bytes().all(|b| b.is_ascii_digit())
}

/// A region name as AWS writes them (`us-east-1`, `ap-southeast-2`, `us-gov-west-1`).
fn is_region(s: &str) -> bool {
    let parts: Vec<&str> = s.split('-').collect();
    s.len() <= 32
        && parts.len() >= 3
        && parts[0].len() == 2
        && parts[0].bytes().all(|b| b.is_ascii_lowercase())
        && parts[1..parts.len() - 1]
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts[parts.len() - 1].parse::<u8>().is_ok_and(|n| n > 0)
}

/// An organizational unit id (`ou-` then the root's 4-32 and the unit's 8-32 characters).
fn is_ou(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("ou-") else {
        return false;
    };
    let Some((root, unit)) = rest.split_once('-') else {
        return false;
    };
    let ok = |p: &str, lo: usize| {
        (lo..=32).contains(&p.len())
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    ok(root, 4) && ok(unit, 8)
}

/// An IAM role name, with an optional path (`irr-responder`, `ir/irr-responder`).
fn is_role_name(s: &str) -> bool {
    let name = s.rsplit('/').next().unwrap_or(s);
    let ok = |c: char| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c);
    !name.is_empty()
        && name.len() <= 64
        && s.len() <= 512
        && name.chars().all(ok)
        && s.split('/').all(|p| !p.is_empty() && p.chars().all(ok))
}

/// An STS external id: 2 to 1224 of `[\w+=,.@:/-]`.
fn is_external_id(s: &str) -> bool {
    (2..=1224).contains(&s.len())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_+=,.@:/-".contains(c))
}

impl Validator<'_> {
    /// `targets:`.
    pub(super) fn targets(&mut self, node: &Node) -> Option<TargetsDecl> {
        self.mapping(node, "targets", TARGETS_KEYS)?;
        let accounts = match (node.get("accounts"), node.get("organization")) {
            (Some(a), None) => self.target_accounts(a).map(AccountSet::Ids),
            (None, Some(o)) => self.target_organization(o).map(AccountSet::Organization),
            (Some(a), Some(_)) => {
                self.help(&a.span, "targets has both \"accounts\" and \"organization\"", "give the accounts by id, or the organization's units to find them in, not both");
                None
            }
            (None, None) => {
                self.help(
                    &node.span,
                    "targets names no account",
                    "add \"accounts: [\\\"111111111111\\\"]\" or \"organization: {ous: [ou-...]}\"",
                );
                None
            }
        };
        let regions = match node.get("regions") {
            Some(r) => self.target_list(
                r,
                "targets.regions",
                MAX_REGIONS,
                is_region,
                "a region such as \"us-east-1\"",
            ),
            None => Some(Vec::new()),
        };
        let role = match node.get("role") {
            None => {
                self.help(&node.span, "targets names no role to assume", "add \"role: irr-responder\": irr assumes arn:aws:iam::ACCOUNT:role/irr-responder in each account");
                None
            }
            Some(r) => match self.string(r, "targets.role") {
                Some(s) if s.starts_with("arn:") => {
                    self.help(&r.span, "targets.role is a role name, not an ARN", "give the name (and path) of the role each account has, e.g. \"irr-responder\"; irr builds arn:aws:iam::ACCOUNT:role/NAME");
                    None
                }
                Some(s) if is_role_name(s) => Some(s.to_owned()),
                Some(s) => {
                    let shown: String = s.chars().take(64).collect();
                    self.help(&r.span, format!("targets.role \"{}\" is not an IAM role name", shown.escape_debug()), "a role name is up to 64 letters, digits and +=,.@_- (a path before it with \"/\")");
                    None
                }
                None => None,
            },
        };
        let external_id = match node.get("external_id") {
            None => Some(None),
            Some(e) => match self.string(e, "targets.external_id") {
                Some(s) if is_external_id(s) => Some(Some(s.to_owned())),
                Some(_) => {
                    self.help(
                        &e.span,
                        "targets.external_id is not an STS external id",
                        "2 to 1224 letters, digits and _+=,.@:/- (the value is not shown)",
                    );
                    None
                }
                None => None,
            },
        };
        let concurrency = match node.get("concurrency") {
            None => Some(None),
            Some(c) => match c.kind {
                NodeKind::Int(n) if (1..=MAX_CONCURRENCY as i64).contains(&n) => {
                    Some(Some(n as usize))
                }
                _ => {
                    let t = c.scalar_text().unwrap_or_else(|| c.type_name().to_owned());
                    self.help(&c.span, format!("targets.concurrency \"{t}\" must be a whole number from 1 to {MAX_CONCURRENCY}"), "how many items run at once in each account-region, e.g. \"concurrency: 4\"");
                    None
                }
            },
        };
        Some(TargetsDecl {
            accounts: accounts?,
            regions: regions?,
            role: role?,
            external_id: external_id?,
            concurrency: concurrency?,
        })
    }

    fn target_accounts(&mut self, node: &Node) -> Option<Vec<String>> {
        if let Some(items) = node.as_seq() {
            for n in items {
                if let NodeKind::Int(i) = n.kind {
                    self.help(
                        &n.span,
                        format!("account {i} is written as a number"),
                        "quote account ids (\"012345678901\"): as numbers, leading zeros are lost",
                    );
                    return None;
                }
            }
        }
        self.target_list(
            node,
            "targets.accounts",
            MAX_ACCOUNTS,
            is_account,
            "a 12-digit account id in quotes",
        )
    }

    fn target_organization(&mut self, node: &Node) -> Option<Vec<String>> {
        self.mapping(node, "targets.organization", ORGANIZATION_KEYS)?;
        let Some(ous) = node.get("ous") else {
            self.help(&node.span, "targets.organization names no unit", "add \"ous: [ou-abcd-12345678]\": every active account in those units (and the units below them)");
            return None;
        };
        self.target_list(
            ous,
            "targets.organization.ous",
            MAX_ACCOUNTS,
            is_ou,
            "an organizational unit id such as \"ou-ab12-34cd56ef\"",
        )
    }

    /// A non-empty list of distinct strings, each passing `ok`, at most `max` long.
    fn target_list(
        &mut self,
        node: &Node,
        what: &str,
        max: usize,
        ok: fn(&str) -> bool,
        expected: &str,
    ) -> Option<Vec<String>> {
        let Some(items) = node.as_seq() else {
            self.help(
                &node.span,
                format!("{what} must be a list, found {}", node.type_name()),
                format!("e.g. [{expected}]"),
            );
            return None;
        };
        if items.is_empty() {
            self.help(
                &node.span,
                format!("{what} is empty"),
                format!("give at least one: {expected}"),
            );
            return None;
        }
        if items.len() > max {
            self.help(
                &node.span,
                format!("{what} has {} entries; at most {max}", items.len()),
                "split the incident into several runs",
            );
            return None;
        }
        let mut out: Vec<String> = Vec::new();
        let mut bad = false;
        for n in items {
            match n.as_str() {
                Some(s) if ok(s) => {
                    if out.iter().any(|o| o == s) {
                        self.help(
                            &n.span,
                            format!("{what}: \"{s}\" is listed twice"),
                            "list each once",
                        );
                        bad = true;
                    } else {
                        out.push(s.to_owned());
                    }
                }
                _ => {
                    let t = n.scalar_text().unwrap_or_else(|| n.type_name().to_owned());
                    let t: String = t.chars().take(64).collect();
                    self.help(
                        &n.span,
                        format!("{what}: \"{}\" is not {expected}", t.escape_debug()),
                        format!("each entry is {expected}"),
                    );
                    bad = true;
                }
            }
        }
        (!bad).then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str) -> Result<TargetsDecl, Vec<String>> {
        let source = Source::new("targets.yaml", text);
        targets_file(&source).map_err(|ps| {
            ps.iter()
                .map(|p| format!("{}:{} {}", p.span.line, p.span.column, p.message))
                .collect()
        })
    }

    #[test]
    fn a_list_of_accounts_and_regions() {
        let t = check("accounts: [\"111111111111\", \"222222222222\"]\nregions: [us-east-1, us-west-2]\nrole: irr-responder\nexternal_id: ext-123\nconcurrency: 4\n").unwrap();
        assert_eq!(
            t.accounts,
            AccountSet::Ids(vec!["111111111111".into(), "222222222222".into()])
        );
        assert_eq!(t.regions, ["us-east-1", "us-west-2"]);
        assert_eq!(t.role, "irr-responder");
        assert_eq!(t.external_id.as_deref(), Some("ext-123"));
        assert_eq!(t.concurrency, Some(4));
        // The same under a `targets:` key.
        let t2 =
            check("targets:\n  accounts: [\"111111111111\"]\n  role: ir/irr-responder\n").unwrap();
        assert!(t2.regions.is_empty());
        assert_eq!(t2.role, "ir/irr-responder");
        let t3 = check("organization: {ous: [ou-ab12-34cd56ef]}\nrole: r\n").unwrap();
        assert_eq!(
            t3.accounts,
            AccountSet::Organization(vec!["ou-ab12-34cd56ef".into()])
        );
    }

    #[test]
    fn every_mistake_is_named_with_its_place() {
        let e = check("accounts: [111111111111]\nrole: irr\n").unwrap_err();
        assert!(
            e[0].starts_with("1:12 account 111111111111 is written as a number"),
            "{e:?}"
        );
        let e = check("accounts: [\"1111\"]\nregions: [us-east-1, Mars]\nrole: \"arn:aws:iam::1:role/x\"\nconcurrency: 0\nextra: 1\n").unwrap_err();
        let all = e.join("\n");
        for want in [
            "unknown key \"extra\" in targets",
            "1:12 targets.accounts: \"1111\" is not a 12-digit account id",
            "2:22 targets.regions: \"Mars\" is not a region",
            "3:7 targets.role is a role name, not an ARN",
            "4:14 targets.concurrency \"0\"",
        ] {
            assert!(all.contains(want), "{want} not in:\n{all}");
        }
        let e = check("accounts: [\"111111111111\", \"111111111111\"]\n").unwrap_err();
        let all = e.join("\n");
        assert!(
            all.contains("listed twice") && all.contains("names no role"),
            "{all}"
        );
        let e = check(
            "accounts: [\"111111111111\"]\norganization: {ous: [ou-ab12-34cd56ef]}\nrole: r\n",
        )
        .unwrap_err();
        assert!(e[0].contains("both"), "{e:?}");
        let e = check("organization: {ous: [ou-x]}\nrole: r\n").unwrap_err();
        assert!(e[0].contains("not an organizational unit id"), "{e:?}");
        let e = check("accounts: [\"111111111111\"]\nrole: r\nexternal_id: \"a b\"\n").unwrap_err();
        assert!(
            e[0].contains("not an STS external id") && !e[0].contains("a b"),
            "{e:?}"
        );
    }

    #[test]
    fn names() {
        assert!(
            is_region("us-east-1") && is_region("us-gov-west-1") && is_region("ap-southeast-2")
        );
        assert!(!is_region("us-east") && !is_region("US-EAST-1") && !is_region("us--1"));
        assert!(is_ou("ou-ab12-34cd56ef") && !is_ou("ou-ab12-34c") && !is_ou("r-ab12"));
        assert!(
            is_role_name("a")
                && is_role_name("p/q/r")
                && !is_role_name("a//b")
                && !is_role_name("a b")
        );
    }
}
