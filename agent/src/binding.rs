//! Which binding a container falls under: the first whose every criterion
//! holds.

use crate::{
    config::{Binding, Match},
    identity::ContainerInfo,
};

/// Whether `text` matches `pattern`, where `*` matches any run of
/// characters (none included) and everything else itself.
pub fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

impl Match {
    /// Whether `c` matches every criterion given.
    pub fn matches(&self, c: &ContainerInfo) -> bool {
        (self.namespaces.is_empty() || self.namespaces.contains(&c.namespace))
            && self
                .pod_labels
                .iter()
                .all(|(k, v)| c.pod_labels.get(k) == Some(v))
            && (self.containers.is_empty() || self.containers.contains(&c.name))
            && (self.images.is_empty() || self.images.iter().any(|p| glob(p, &c.image)))
    }
}

/// The first binding `c` matches.
pub fn binding_for<'a>(bindings: &'a [Binding], c: &ContainerInfo) -> Option<&'a Binding> {
    bindings.iter().find(|b| b.matcher.matches(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        for (p, t, want) in [
            ("registry.example/app:*", "registry.example/app:1.2", true),
            ("registry.example/app:*", "registry.example/app", false),
            ("registry.example/app:*", "registry.example/app:", true),
            ("*/app:*", "registry.example/app:v1", true),
            ("*", "", true),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "acb", false),
            ("ab*ba", "aba", false),
            ("exact", "exact", true),
            ("exact", "exactly", false),
        ] {
            assert_eq!(glob(p, t), want, "{p} ~ {t}");
        }
    }

    #[test]
    fn every_criterion_must_hold() {
        let c = ContainerInfo {
            name: "app".into(),
            image: "registry.example/app:1".into(),
            namespace: "tenant-a".into(),
            pod_labels: [("tier".to_string(), "web".to_string())].into(),
            ..Default::default()
        };
        let m = |ns: &[&str], labels: &[(&str, &str)], names: &[&str], images: &[&str]| Match {
            namespaces: ns.iter().map(|s| s.to_string()).collect(),
            pod_labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            containers: names.iter().map(|s| s.to_string()).collect(),
            images: images.iter().map(|s| s.to_string()).collect(),
        };
        assert!(m(
            &["tenant-a"],
            &[("tier", "web")],
            &["app"],
            &["registry.example/app:*"]
        )
        .matches(&c));
        assert!(m(&["tenant-b", "tenant-a"], &[], &[], &[]).matches(&c));
        assert!(!m(&["tenant-b"], &[], &[], &[]).matches(&c));
        assert!(!m(&[], &[("tier", "db")], &[], &[]).matches(&c));
        assert!(!m(&[], &[("zone", "a")], &[], &[]).matches(&c));
        assert!(!m(&[], &[], &["sidecar"], &[]).matches(&c));
        assert!(!m(&["tenant-a"], &[], &[], &["other/*"]).matches(&c));
    }
}
