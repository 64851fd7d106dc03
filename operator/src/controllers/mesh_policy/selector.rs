//! Label selectors of a MeshPolicy: checking them as the API server checks a Deployment's selector,
//! matching pod labels, and writing them as `kubectl` does (`app=web,tier in (a,b),!legacy`).

use std::collections::BTreeMap;
use weft_crds::mesh_policy::{LabelSelectorRequirement, SelectorOperator, WorkloadSelector};

/// Every problem of `selector`, in words; empty when it is valid.
pub fn problems(selector: &WorkloadSelector) -> Vec<String> {
    let mut problems = Vec::new();
    for (key, value) in &selector.match_labels {
        if let Err(why) = check_label_key(key) {
            problems.push(format!("matchLabels key {key:?}: {why}"));
        }
        if let Err(why) = check_label_value(value) {
            problems.push(format!("matchLabels[{key:?}] value {value:?}: {why}"));
        }
    }
    for requirement in &selector.match_expressions {
        let key = &requirement.key;
        if let Err(why) = check_label_key(key) {
            problems.push(format!("matchExpressions key {key:?}: {why}"));
        }
        match requirement.operator {
            SelectorOperator::In | SelectorOperator::NotIn if requirement.values.is_empty() => {
                problems.push(format!(
                    "matchExpressions on {key:?}: {:?} needs at least one value",
                    requirement.operator
                ))
            }
            SelectorOperator::Exists | SelectorOperator::DoesNotExist
                if !requirement.values.is_empty() =>
            {
                problems.push(format!(
                    "matchExpressions on {key:?}: {:?} takes no values",
                    requirement.operator
                ))
            }
            _ => {}
        }
        for value in &requirement.values {
            if let Err(why) = check_label_value(value) {
                problems.push(format!(
                    "matchExpressions on {key:?}: value {value:?}: {why}"
                ));
            }
        }
    }
    problems
}

/// Whether `labels` satisfy every part of `selector` (an empty selector matches everything).
pub fn matches(selector: &WorkloadSelector, labels: &BTreeMap<String, String>) -> bool {
    selector
        .match_labels
        .iter()
        .all(|(key, value)| labels.get(key) == Some(value))
        && selector
            .match_expressions
            .iter()
            .all(|requirement| requirement_holds(requirement, labels))
}

fn requirement_holds(
    requirement: &LabelSelectorRequirement,
    labels: &BTreeMap<String, String>,
) -> bool {
    let value = labels.get(&requirement.key);
    match requirement.operator {
        SelectorOperator::In => value.is_some_and(|v| requirement.values.contains(v)),
        SelectorOperator::NotIn => value.is_none_or(|v| !requirement.values.contains(v)),
        SelectorOperator::Exists => value.is_some(),
        SelectorOperator::DoesNotExist => value.is_none(),
    }
}

/// The selector as `kubectl` writes one, in a canonical order, so two selectors that mean the same
/// write the same (policies with equal renderings have the same target). `<all pods>` when empty.
pub fn render(selector: &WorkloadSelector) -> String {
    let mut parts: Vec<String> = selector
        .match_labels
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect();
    let mut expressions: Vec<String> = selector
        .match_expressions
        .iter()
        .map(|requirement| {
            let mut values = requirement.values.clone();
            values.sort();
            values.dedup();
            let key = &requirement.key;
            match requirement.operator {
                SelectorOperator::In => format!("{key} in ({})", values.join(",")),
                SelectorOperator::NotIn => format!("{key} notin ({})", values.join(",")),
                SelectorOperator::Exists => key.clone(),
                SelectorOperator::DoesNotExist => format!("!{key}"),
            }
        })
        .collect();
    expressions.sort();
    expressions.dedup();
    parts.extend(expressions);
    if parts.is_empty() {
        "<all pods>".to_string()
    } else {
        parts.join(",")
    }
}

/// A label key: an optional DNS-subdomain prefix and `/`, then a name (Kubernetes' qualified name).
pub fn check_label_key(key: &str) -> Result<(), &'static str> {
    let name = match key.split_once('/') {
        Some((prefix, name)) => {
            if prefix.is_empty() || prefix.len() > 253 || !is_dns_subdomain(prefix) {
                return Err(
                    "the prefix before '/' must be a DNS subdomain of at most 253 characters",
                );
            }
            name
        }
        None => key,
    };
    if name.is_empty() {
        return Err("the name part must not be empty");
    }
    check_label_value(name).map_err(|_| {
        "the name part must be at most 63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric"
    })
}

/// A label value: empty, or at most 63 characters of `[A-Za-z0-9-_.]` starting and ending alphanumeric.
pub fn check_label_value(value: &str) -> Result<(), &'static str> {
    if value.is_empty() {
        return Ok(());
    }
    let bytes = value.as_bytes();
    let edges_ok =
        bytes[0].is_ascii_alphanumeric() && bytes[bytes.len() - 1].is_ascii_alphanumeric();
    let body_ok = bytes
        .iter()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if value.len() <= 63 && edges_ok && body_ok {
        Ok(())
    } else {
        Err("must be at most 63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric")
    }
}

/// A DNS-1123 subdomain: dot-separated labels of `[a-z0-9-]`, each starting and ending alphanumeric.
pub fn is_dns_subdomain(text: &str) -> bool {
    !text.is_empty() && text.len() <= 253 && text.split('.').all(is_dns_label_part)
}

/// A DNS-1035 label (Service names): `[a-z]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub fn is_dns_label(text: &str) -> bool {
    is_dns_label_part(text) && text.as_bytes()[0].is_ascii_lowercase()
}

fn is_dns_label_part(part: &str) -> bool {
    let bytes = part.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn requirement(
        key: &str,
        operator: SelectorOperator,
        values: &[&str],
    ) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.to_string(),
            operator,
            values: values.iter().map(|v| v.to_string()).collect(),
        }
    }

    fn selector(
        match_labels: &[(&str, &str)],
        match_expressions: Vec<LabelSelectorRequirement>,
    ) -> WorkloadSelector {
        WorkloadSelector {
            match_labels: labels(match_labels),
            match_expressions,
        }
    }

    #[test]
    fn matches_like_kubernetes() {
        let s = selector(
            &[("app", "web")],
            vec![
                requirement("tier", SelectorOperator::In, &["a", "b"]),
                requirement("legacy", SelectorOperator::DoesNotExist, &[]),
                requirement("env", SelectorOperator::NotIn, &["dev"]),
            ],
        );
        assert!(matches(&s, &labels(&[("app", "web"), ("tier", "a")])));
        assert!(matches(
            &s,
            &labels(&[("app", "web"), ("tier", "b"), ("env", "prod")])
        ));
        assert!(!matches(&s, &labels(&[("app", "web"), ("tier", "c")])));
        assert!(!matches(
            &s,
            &labels(&[("app", "web"), ("tier", "a"), ("legacy", "")])
        ));
        assert!(!matches(
            &s,
            &labels(&[("app", "web"), ("tier", "a"), ("env", "dev")])
        ));
        assert!(!matches(&s, &labels(&[("app", "api"), ("tier", "a")])));
        let exists = selector(&[], vec![requirement("app", SelectorOperator::Exists, &[])]);
        assert!(matches(&exists, &labels(&[("app", "")])));
        assert!(!matches(&exists, &labels(&[])));
    }

    #[test]
    fn empty_selector_matches_every_pod() {
        assert!(matches(&WorkloadSelector::default(), &labels(&[])));
        assert_eq!(render(&WorkloadSelector::default()), "<all pods>");
    }

    #[test]
    fn renders_canonically() {
        let a = selector(
            &[("b", "2"), ("a", "1")],
            vec![
                requirement("tier", SelectorOperator::In, &["y", "x"]),
                requirement("old", SelectorOperator::DoesNotExist, &[]),
            ],
        );
        let b = selector(
            &[("a", "1"), ("b", "2")],
            vec![
                requirement("old", SelectorOperator::DoesNotExist, &[]),
                requirement("tier", SelectorOperator::In, &["x", "y"]),
            ],
        );
        assert_eq!(render(&a), "a=1,b=2,!old,tier in (x,y)");
        assert_eq!(render(&a), render(&b));
    }

    #[test]
    fn reports_each_kind_of_bad_selector() {
        let bad = selector(
            &[("-app", "web"), ("ok", "has space")],
            vec![
                requirement("tier", SelectorOperator::In, &[]),
                requirement("app", SelectorOperator::Exists, &["x"]),
                requirement("Example.com/x", SelectorOperator::NotIn, &["a"]),
            ],
        );
        let found = problems(&bad);
        assert_eq!(found.len(), 5, "{found:#?}");
        assert!(found.iter().any(|p| p.contains("\"-app\"")));
        assert!(found.iter().any(|p| p.contains("has space")));
        assert!(found.iter().any(|p| p.contains("needs at least one value")));
        assert!(found.iter().any(|p| p.contains("takes no values")));
        assert!(found.iter().any(|p| p.contains("Example.com/x")));
    }

    #[test]
    fn accepts_qualified_keys_and_empty_values() {
        let good = selector(
            &[("app.kubernetes.io/name", ""), ("a_b.c-d", "v1.2_3")],
            vec![],
        );
        assert!(problems(&good).is_empty());
        assert!(check_label_key(&"a".repeat(63)).is_ok());
        assert!(check_label_key(&"a".repeat(64)).is_err());
        assert!(check_label_key("/name").is_err());
        assert!(check_label_key("example.com/").is_err());
    }

    #[test]
    fn dns_names() {
        assert!(is_dns_label("web-v1"));
        assert!(!is_dns_label("1web"));
        assert!(!is_dns_label("web-"));
        assert!(!is_dns_label("Web"));
        assert!(is_dns_subdomain("default.svc"));
        assert!(!is_dns_subdomain("a..b"));
    }
}
