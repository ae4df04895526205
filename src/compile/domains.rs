//! `connect.domains`: names resolved to addresses with the system resolver,
//! entered as full-length networks in the CIDR tries. Re-resolving (on a
//! schedule, through `Enforcer::refresh_domains`) builds a new policy and
//! swaps it in atomically.

use std::{
    collections::BTreeMap,
    net::{IpAddr, ToSocketAddrs},
    sync::Arc,
};

use super::{insert_strongest, KernelPolicy};

/// What resolving the domains of a policy found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DomainResolution {
    /// Address → the domain that produced it (for events).
    pub by_address: BTreeMap<IpAddr, Arc<str>>,
    /// Domains that resolved to nothing (no record, or no resolver): not
    /// enforced until a refresh resolves them.
    pub unresolved: Vec<String>,
}

impl KernelPolicy {
    /// Resolves `domains` with the system resolver (getaddrinfo: /etc/hosts,
    /// DNS) and adds each address as a /32 or /128 entry of its rule. A name
    /// that does not resolve is listed in the result, not an error: pools
    /// come and go, and enforcement of everything else must not wait on DNS.
    pub fn resolve_domains(&mut self) -> DomainResolution {
        self.resolve_domains_with(|name| {
            (name, 0)
                .to_socket_addrs()
                .map(|it| it.map(|a| a.ip()).collect())
                .unwrap_or_default()
        })
    }

    /// [`KernelPolicy::resolve_domains`] with a given resolver (for tests).
    pub fn resolve_domains_with(
        &mut self,
        mut resolve: impl FnMut(&str) -> Vec<IpAddr>,
    ) -> DomainResolution {
        let mut out = DomainResolution::default();
        let domains: Vec<(String, super::RuleRef)> =
            self.domains.iter().map(|(d, r)| (d.clone(), *r)).collect();
        for (domain, rule) in domains {
            let mut addrs = resolve(&domain);
            addrs.sort();
            addrs.dedup();
            if addrs.is_empty() {
                out.unresolved.push(domain);
                continue;
            }
            let name: Arc<str> = domain.as_str().into();
            for ip in addrs {
                match ip {
                    IpAddr::V4(a) => insert_strongest(&mut self.cidrs4, (a.octets(), 32), rule),
                    IpAddr::V6(a) => insert_strongest(&mut self.cidrs6, (a.octets(), 128), rule),
                }
                out.by_address.entry(ip).or_insert_with(|| name.clone());
            }
        }
        self.domain_addresses = out.by_address.clone();
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::{Action, Profile, Rule};

    #[test]
    fn resolved_addresses_join_the_cidr_tries_and_name_their_domain() {
        let p = Profile::new("d").rule(Rule::connect_domains(
            "pools",
            Action::Deny,
            ["pool.example", "gone.example"],
        ));
        let mut k = KernelPolicy::compile(&p).unwrap();
        let r = k.resolve_domains_with(|name| match name {
            "pool.example" => vec![
                "203.0.113.7".parse().unwrap(),
                "2001:db8::7".parse().unwrap(),
            ],
            _ => vec![],
        });
        assert_eq!(r.unresolved, ["gone.example"]);
        assert_eq!(k.cidrs4[&([203, 0, 113, 7], 32)].rule_idx, 0);
        assert_eq!(k.cidrs6.len(), 1);
        let ip: IpAddr = "203.0.113.7".parse().unwrap();
        assert_eq!(&*k.domain_addresses[&ip], "pool.example");
    }
}
