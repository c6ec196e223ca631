//! Shell-style wildcards, as the discovery actions match names and tag values: `*` is any run
//! of characters (none included), `?` exactly one, everything else itself. No character
//! classes, no escapes: bucket names and EC2's own tag-filter wildcards need no more.
//!
//! Matching is linear in the pattern times the text at worst (the classic backtracking-free
//! two-pointer walk), so a hostile pattern or name cannot make it slow.

/// `true` when `text` matches `pattern` as a whole.
pub fn matches(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.chars().collect();
    let t: Vec<char> = text.chars().collect();
    let (mut pi, mut ti) = (0usize, 0usize);
    // The last `*` seen and the text position it was tried from.
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(&c) if c == '?' || c == t[ti] => {
                pi += 1;
                ti += 1;
            }
            _ => match star {
                // Let the last `*` swallow one more character and try again from there.
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// `true` when `pattern` holds a wildcard (`*` or `?`).
pub fn is_pattern(pattern: &str) -> bool {
    pattern.contains(['*', '?'])
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn wildcards() {
        assert!(matches("logs-*", "logs-2026"));
        assert!(matches("logs-*", "logs-"));
        assert!(!matches("logs-*", "log-2026"));
        assert!(matches("*-prod-*", "app-prod-eu"));
        assert!(!matches("*-prod-*", "app-production"));
        assert!(matches("a?c", "abc"));
        assert!(!matches("a?c", "ac"));
        assert!(matches("*", ""));
        assert!(matches("exact", "exact"));
        assert!(!matches("exact", "exactly"));
        assert!(matches("**a*b", "xxaxxb"));
        assert!(!matches("*a*b", "xxaxx"));
    }

    #[test]
    fn a_hostile_pattern_stays_fast() {
        let text = "a".repeat(10_000);
        let pattern = format!("{}b", "*a".repeat(100));
        let started = std::time::Instant::now();
        assert!(!matches(&pattern, &text));
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
    }
}
