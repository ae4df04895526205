//! Built-in crypto-miner indicators, as data. Each list names its source.
//!
//! Falco's lists are from falcosecurity/rules, `rules/falco-sandbox_rules.yaml`
//! (lists `miner_binaries`, `miner_ports`, `miner_domains`).

/// Known miner executables (Falco `miner_binaries`, 21 names).
pub const MINER_BINARIES: &[&str] = &[
    "xmrig",
    "xmr-stak",
    "minerd",
    "minergate",
    "cpuminer",
    "ccminer",
    "ethminer",
    "cgminer",
    "bfgminer",
    "sgminer",
    "claymore",
    "nbminer",
    "t-rex",
    "gminer",
    "lolminer",
    "phoenixminer",
    "teamredminer",
    "nanominer",
    "bminer",
    "wildrig",
    "srbminer",
];

/// Mining-pool ports (Falco `miner_ports`, 29 ports). Includes ports that
/// ordinary services use (25, 8000, 8080, 8888), so host-wide profiles audit
/// them rather than deny.
pub const MINER_PORTS: &[u16] = &[
    25, 3333, 3334, 3335, 3336, 3357, 4444, 5555, 5556, 5588, 5730, 6099, 6666, 7777, 7778, 8000,
    8001, 8008, 8080, 8118, 8333, 8888, 8899, 9332, 9999, 14433, 14444, 45560, 45700,
];

/// The ports of [`MINER_PORTS`] that ordinary services also use: 25 (SMTP),
/// 8000, 8008, 8080, 8888 (HTTP alternates, dev servers, Jupyter), 8001
/// (kubectl proxy), 8118 (Privoxy), 8333 (Bitcoin P2P: a node, not a pool),
/// 8899 (Solana RPC, HTTP alternate), 9999 (admin consoles, Dash P2P). The
/// bundled `container-strict` profile denies the rest of [`MINER_PORTS`] and
/// only audits these (#20).
pub const SHARED_MINER_PORTS: &[u16] = &[25, 8000, 8001, 8008, 8080, 8118, 8333, 8888, 8899, 9999];

/// Mining-pool domains (Falco `miner_domains`, 63 names).
pub const MINER_DOMAINS: &[&str] = &[
    "asia1.ethpool.org",
    "ca.minexmr.com",
    "cn.stratum.slushpool.com",
    "de.minexmr.com",
    "eth-ar.dwarfpool.com",
    "eth-asia.dwarfpool.com",
    "eth-asia1.nanopool.org",
    "eth-au.dwarfpool.com",
    "eth-au1.nanopool.org",
    "eth-br.dwarfpool.com",
    "eth-cn.dwarfpool.com",
    "eth-cn2.dwarfpool.com",
    "eth-eu.dwarfpool.com",
    "eth-eu1.nanopool.org",
    "eth-eu2.nanopool.org",
    "eth-hk.dwarfpool.com",
    "eth-jp1.nanopool.org",
    "eth-ru.dwarfpool.com",
    "eth-ru2.dwarfpool.com",
    "eth-sg.dwarfpool.com",
    "eth-us-east1.nanopool.org",
    "eth-us-west1.nanopool.org",
    "eth-us.dwarfpool.com",
    "eth-us2.dwarfpool.com",
    "eu.stratum.slushpool.com",
    "eu1.ethermine.org",
    "eu1.ethpool.org",
    "fr.minexmr.com",
    "mine.moneropool.com",
    "mine.xmrpool.net",
    "pool.minexmr.com",
    "pool.monero.hashvault.pro",
    "pool.supportxmr.com",
    "sg.minexmr.com",
    "sg.stratum.slushpool.com",
    "stratum-eth.antpool.com",
    "stratum-ltc.antpool.com",
    "stratum-zec.antpool.com",
    "stratum.antpool.com",
    "us-east.stratum.slushpool.com",
    "us1.ethermine.org",
    "us1.ethpool.org",
    "us2.ethermine.org",
    "us2.ethpool.org",
    "xmr-asia1.nanopool.org",
    "xmr-au1.nanopool.org",
    "xmr-eu1.nanopool.org",
    "xmr-eu2.nanopool.org",
    "xmr-jp1.nanopool.org",
    "xmr-us-east1.nanopool.org",
    "xmr-us-west1.nanopool.org",
    "xmr.crypto-pool.fr",
    "xmr.pool.minergate.com",
    "rx.unmineable.com",
    "ss.antpool.com",
    "dash.antpool.com",
    "eth.antpool.com",
    "zec.antpool.com",
    "xmc.antpool.com",
    "btm.antpool.com",
    "stratum-dash.antpool.com",
    "stratum-xmc.antpool.com",
    "stratum-btm.antpool.com",
];

/// Command-line pool URL schemes (Stratum v1 and v2, plain and TLS), as
/// miners take them (`-o stratum+tcp://pool:3333`).
pub const STRATUM_URL_SCHEMES: &[&str] = &[
    "stratum+tcp://",
    "stratum2+tcp://",
    "stratum+ssl://",
    "stratum2+ssl://",
];

/// The mining methods a `stratum` rule refuses unless it lists its own
/// (`stratum.methods`). Compared without case; `x.*` is any method
/// starting `x.`. Sources:
/// - Stratum v1 (slushpool's "Stratum mining protocol" and BIP 310):
///   `mining.subscribe`, `mining.authorize`, `mining.configure`,
///   `mining.submit`, `mining.extranonce.subscribe`, ... — all `mining.*`;
/// - XMRig and the CryptoNote pools (xmrig `src/base/net/stratum/Client.cpp`,
///   nodejs-pool `lib/pool.js`): `login`, `submit`, `getjob`, `keepalived`;
/// - EthProxy (ethminer `libpoolprotocols/stratum/EthStratumClient.cpp`):
///   `eth_submitLogin`, `eth_getWork`, `eth_submitWork`,
///   `eth_submitHashrate`;
/// - solo mining against a node (Bitcoin Core RPC, monerod's `/json_rpc`;
///   XMRig `--daemon`): `getblocktemplate`, `submitblock`.
pub const STRATUM_METHODS: &[&str] = &[
    "mining.*",
    "login",
    "submit",
    "getjob",
    "keepalived",
    "eth_submitlogin",
    "eth_getwork",
    "eth_submitwork",
    "eth_submithashrate",
    "getblocktemplate",
    "submitblock",
];

/// Stratum V2 plaintext `SetupConnection`: 6-byte frame header (extension
/// type 0x0000, message type 0x00, 3-byte length), then protocol 0 (mining)
/// and min/max version 2 (Stratum V2 spec, "Common Protocol Messages").
pub const STRATUM_V2_SETUP_CONNECTION_PREFIX: &[u8] = &[0x00, 0x00, 0x00];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn falco_list_sizes() {
        assert_eq!(MINER_BINARIES.len(), 21);
        assert_eq!(MINER_PORTS.len(), 29);
        assert_eq!(MINER_DOMAINS.len(), 63);
        assert!(SHARED_MINER_PORTS.iter().all(|p| MINER_PORTS.contains(p)));
    }

    /// `container-strict` denies the pool-only ports and audits the shared
    /// ones: together Falco's whole list, each port once.
    #[test]
    fn container_strict_denies_pool_ports_and_audits_shared_ones() {
        use crate::profile::{Action, Matcher, Profile};
        let strict = Profile::bundled("container-strict").unwrap();
        let ports_of = |name: &str| {
            let rule = strict.rules.iter().find(|r| r.name.as_str() == name);
            let rule = rule.unwrap_or_else(|| panic!("no rule {name}"));
            let Some(Matcher::ConnectPorts(ports)) = rule.matcher() else {
                panic!("{name} is not a connect.ports rule");
            };
            let mut ports: Vec<u16> = ports.iter().flat_map(|r| r.first..=r.last).collect();
            ports.sort_unstable();
            (rule.action, ports)
        };
        let (deny_action, denied) = ports_of("miner-pool-port");
        let (audit_action, audited) = ports_of("miner-pool-port-shared");
        assert_eq!(deny_action, Action::Deny);
        assert_eq!(audit_action, Action::Audit);
        assert_eq!(audited, SHARED_MINER_PORTS);
        let pool_only: Vec<u16> = (MINER_PORTS.iter().copied())
            .filter(|p| !SHARED_MINER_PORTS.contains(p))
            .collect();
        assert_eq!(denied, pool_only);
        for port in [3333, 4444, 5555, 7777, 14433, 14444, 45560, 45700] {
            assert!(denied.contains(&port), "{port}");
        }
    }
}
