//! `sluiced run`'s configuration: a TOML file, with command-line flags that
//! override some of it. Unknown keys are refused, and every error names the
//! file, the line and the key.
//!
//! ```toml
//! state_dir = "/var/lib/sluice"
//! workers = 1
//!
//! [node]
//! name = "edge-1"
//! zone = "zone-a"
//! addresses = ["192.0.2.10"]
//!
//! [services]
//! cluster_cidrs = ["10.244.0.0/16"]
//! service_cidrs = ["10.96.0.0/12"]
//! node_port_addresses = ["192.0.2.0/24"]
//! masquerade_all = false
//!
//! [api]
//! listen = ["unix:/run/sluice/api.sock"]
//!
//! [metrics]
//! listen = "127.0.0.1:9090"
//!
//! [[port]]
//! name = "p0"
//! backend = "mem:p0"
//!
//! # Only for dpdk: ports (sluiced built with --features dpdk).
//! [dpdk]
//! eal = ["--in-memory", "--no-pci"]
//! mbufs = 32767
//! ```

use super::ports::Backend;
use crate::api::listen::{ListenAddr, TlsFiles, DEFAULT_API};
use crate::compile::ServiceSettings;
use ipnet::IpNet;
use serde::Deserialize;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};

/// Where the store lives when the configuration names no directory.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/sluice";

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The store's directory.
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    /// Worker threads (poll-mode, one per core).
    #[serde(default = "one")]
    pub workers: usize,
    /// Cores to pin workers to, in order; empty: the highest-numbered ones.
    #[serde(default)]
    pub cores: Vec<usize>,
    /// Packet buffers in the pool.
    #[serde(default)]
    pub pool_size: Option<u32>,
    #[serde(default)]
    pub node: NodeConfig,
    /// kube-proxy's node settings for the Service rules.
    #[serde(default)]
    pub services: ServicesConfig,
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The node's ports, in port-id order.
    #[serde(default, rename = "port")]
    pub ports: Vec<PortConfig>,
    #[serde(default)]
    pub dpdk: DpdkSection,
}

/// How to start DPDK, for `dpdk:` ports. Accepted in every build, so one
/// configuration file serves builds with and without the feature.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DpdkSection {
    /// EAL arguments, one per element (`["--in-memory", "--no-pci"]`, or
    /// `["--no-huge", "-m", "1024", "--file-prefix", "sluice"]` without
    /// hugepages). Without a core list, EAL gets the first CPU sluiced may
    /// run on as its only lcore.
    #[serde(default)]
    pub eal: Vec<String>,
    /// Mbufs in the pool every DPDK port receives into (default 32767).
    pub mbufs: Option<u32>,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeConfig {
    /// The node's name; the host name when empty.
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub zone: String,
    #[serde(default)]
    pub addresses: Vec<IpAddr>,
}

/// The `[services]` table: what kube-proxy takes from its flags and
/// configuration for the Service rules.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServicesConfig {
    /// The cluster's pod CIDRs (`--cluster-cidr`): sources in them are pods.
    /// Cluster-IP traffic from other sources is masqueraded; none of a
    /// family means no pod detection (and no such masquerade) in it.
    #[serde(default)]
    pub cluster_cidrs: Vec<IpNet>,
    /// The service CIDRs: packets to an address in them that no Service
    /// holds are dropped.
    #[serde(default)]
    pub service_cidrs: Vec<IpNet>,
    /// `--nodeport-addresses`: NodePorts are served on the node's
    /// addresses inside these CIDRs; none of a family means every
    /// non-loopback node address of that family.
    #[serde(default)]
    pub node_port_addresses: Vec<IpNet>,
    /// `--masquerade-all`: masquerade all traffic to cluster IPs.
    #[serde(default)]
    pub masquerade_all: bool,
}

impl ServicesConfig {
    /// Checks the CIDRs: no host bits set, and no pod CIDR overlapping a
    /// service CIDR (an address cannot be both a pod and a Service).
    pub fn check(&self) -> Result<(), String> {
        let lists = [
            ("cluster_cidrs", &self.cluster_cidrs),
            ("service_cidrs", &self.service_cidrs),
            ("node_port_addresses", &self.node_port_addresses),
        ];
        for (name, list) in lists {
            for (i, net) in list.iter().enumerate() {
                if net.trunc() != *net {
                    return Err(format!(
                        "services.{name}[{i}]: {net} has host bits set; expected {}",
                        net.trunc()
                    ));
                }
                if list[..i].contains(net) {
                    return Err(format!("services.{name}[{i}]: {net} is listed twice"));
                }
            }
        }
        for (i, s) in self.service_cidrs.iter().enumerate() {
            for (j, c) in self.cluster_cidrs.iter().enumerate() {
                if s.contains(&c.network()) || c.contains(&s.network()) {
                    return Err(format!(
                        "services.service_cidrs[{i}]: {s} overlaps services.cluster_cidrs[{j}] ({c}); pod and service addresses must be apart"
                    ));
                }
            }
        }
        Ok(())
    }

    /// The settings as the compiler takes them.
    pub fn settings(&self) -> ServiceSettings {
        ServiceSettings {
            cluster_cidrs: self.cluster_cidrs.clone(),
            service_cidrs: self.service_cidrs.clone(),
            node_port_addresses: self.node_port_addresses.clone(),
            masquerade_all: self.masquerade_all,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiConfig {
    /// `unix:PATH` or `tcp:IP:PORT` (TCP needs `tls_cert` and `tls_key`).
    #[serde(default = "default_listen")]
    pub listen: Vec<String>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA on TCP listeners.
    pub tls_client_ca: Option<PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: default_listen(),
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Serve Prometheus metrics at `http://ADDR/metrics`; off when absent.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortConfig {
    pub name: String,
    /// `mem:NAME`, `pcap:in=FILE,out=FILE`, ...; an Interface object
    /// configures the port by naming the same backend.
    pub backend: String,
}

fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}

fn one() -> usize {
    1
}

fn default_listen() -> Vec<String> {
    vec![DEFAULT_API.to_string()]
}

impl Default for Config {
    fn default() -> Self {
        Config {
            state_dir: default_state_dir(),
            workers: 1,
            cores: Vec::new(),
            pool_size: None,
            node: NodeConfig::default(),
            services: ServicesConfig::default(),
            api: ApiConfig::default(),
            metrics: MetricsConfig::default(),
            ports: Vec::new(),
            dpdk: DpdkSection::default(),
        }
    }
}

/// Flags that override the file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub api: Vec<String>,
    pub state_dir: Option<PathBuf>,
    pub workers: Option<usize>,
    pub metrics: Option<SocketAddr>,
}

/// A configuration checked and ready to start from.
#[derive(Debug, Clone)]
pub struct Checked {
    pub config: Config,
    pub listen: Vec<ListenAddr>,
    pub tls: Option<TlsFiles>,
    pub backends: Vec<Backend>,
}

impl Config {
    /// Reads a configuration file.
    pub fn load(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read the configuration {}: {e}", path.display()))?;
        Config::parse(&text).map_err(|e| format!("{}{e}", path.display()))
    }

    /// Parses configuration text; errors start with ` line N: ` (or `: `).
    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            let message = e.message().trim().replace('\n', " ");
            match line {
                Some(n) => format!(" line {n}: {message}"),
                None => format!(": {message}"),
            }
        })
    }

    pub fn apply(&mut self, o: &Overrides) {
        if !o.api.is_empty() {
            self.api.listen = o.api.clone();
        }
        if let Some(d) = &o.state_dir {
            self.state_dir = d.clone();
        }
        if let Some(w) = o.workers {
            self.workers = w;
        }
        if let Some(m) = o.metrics {
            self.metrics.listen = Some(m);
        }
    }

    /// Checks what the types cannot: port names, backends, listeners, TLS.
    pub fn check(self) -> Result<Checked, String> {
        if self.workers == 0 {
            return Err("workers: must be at least 1".into());
        }
        self.services.check()?;
        let mut backends = Vec::with_capacity(self.ports.len());
        for (i, p) in self.ports.iter().enumerate() {
            let at = format!("port[{i}] ({})", p.name);
            if p.name.is_empty() {
                return Err(format!("port[{i}].name: required"));
            }
            if self.ports[..i].iter().any(|q| q.name == p.name) {
                return Err(format!("{at}.name: another port has this name"));
            }
            if self.ports[..i].iter().any(|q| q.backend == p.backend) {
                return Err(format!("{at}.backend: another port uses {:?}", p.backend));
            }
            let b: Backend = p
                .backend
                .parse()
                .map_err(|e| format!("{at}.backend: {e}"))?;
            if b.single_tx_queue() && self.workers > 1 {
                return Err(format!(
                    "{at}.backend: a capture file written by {} workers would need one queue per worker; it has one (set workers = 1)",
                    self.workers
                ));
            }
            if let Some(queues) = b.queues() {
                if usize::from(queues) < self.workers {
                    return Err(format!(
                        "{at}.backend: {} workers need {} queues, the spec gives {queues}",
                        self.workers, self.workers
                    ));
                }
            }
            backends.push(b);
        }
        if self.ports.len() > sluice_dataplane::stats::MAX_PORTS {
            return Err(format!(
                "port: at most {} ports",
                sluice_dataplane::stats::MAX_PORTS
            ));
        }
        if self.api.listen.is_empty() {
            return Err("api.listen: at least one address is needed".into());
        }
        let mut listen = Vec::new();
        for (i, a) in self.api.listen.iter().enumerate() {
            listen.push(
                a.parse::<ListenAddr>()
                    .map_err(|e| format!("api.listen[{i}]: {e}"))?,
            );
        }
        let tls = match (&self.api.tls_cert, &self.api.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: self.api.tls_client_ca.clone(),
            }),
            (None, None) if self.api.tls_client_ca.is_some() => {
                return Err("api.tls_client_ca: needs api.tls_cert and api.tls_key".into())
            }
            (None, None) => None,
            _ => return Err("api.tls_cert and api.tls_key go together".into()),
        };
        if tls.is_none() {
            if let Some((i, a)) = listen
                .iter()
                .enumerate()
                .find(|(_, a)| matches!(a, ListenAddr::Tcp(_)))
            {
                return Err(format!(
                    "api.listen[{i}]: {a}: a TCP listener needs TLS: set api.tls_cert and api.tls_key"
                ));
            }
        }
        Ok(Checked {
            config: self,
            listen,
            tls,
            backends,
        })
    }
}

/// The host's name, for a node that names none.
pub fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
state_dir = "/tmp/s"
workers = 1
cores = [1]

[node]
name = "edge-1"
zone = "a"
addresses = ["192.0.2.10", "2001:db8::10"]

[services]
cluster_cidrs = ["10.244.0.0/16", "fd00:10::/48"]
service_cidrs = ["10.96.0.0/12"]
node_port_addresses = ["192.0.2.0/24"]
masquerade_all = true

[api]
listen = ["unix:/tmp/s/api.sock", "tcp:127.0.0.1:7443"]
tls_cert = "/etc/sluice/cert.pem"
tls_key = "/etc/sluice/key.pem"
tls_client_ca = "/etc/sluice/ca.pem"

[metrics]
listen = "127.0.0.1:9090"

[[port]]
name = "p0"
backend = "mem:p0"

[[port]]
name = "p1"
backend = "pcap:in=/tmp/in.pcap,out=/tmp/out.pcap"
"#;

    #[test]
    fn a_full_configuration_reads() {
        let c = Config::parse(FULL).unwrap().check().unwrap();
        assert_eq!(c.config.node.addresses.len(), 2);
        assert_eq!(c.listen.len(), 2);
        assert!(c.tls.as_ref().unwrap().client_ca.is_some());
        assert_eq!(c.backends.len(), 2);
        let s = c.config.services.settings();
        assert_eq!(s.cluster_cidrs.len(), 2);
        assert_eq!(s.service_cidrs, vec!["10.96.0.0/12".parse().unwrap()]);
        assert_eq!(s.node_port_addresses, vec!["192.0.2.0/24".parse().unwrap()]);
        assert!(s.masquerade_all);
        assert_eq!(
            c.config.metrics.listen,
            Some("127.0.0.1:9090".parse().unwrap())
        );
    }

    #[test]
    fn defaults_and_overrides() {
        let mut c = Config::parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.api.listen, vec![DEFAULT_API.to_string()]);
        c.apply(&Overrides {
            api: vec!["unix:/x.sock".into()],
            state_dir: Some("/y".into()),
            workers: Some(2),
            metrics: None,
        });
        assert_eq!(c.api.listen, vec!["unix:/x.sock".to_string()]);
        assert_eq!(c.state_dir, PathBuf::from("/y"));
        assert_eq!(c.workers, 2);
    }

    #[test]
    fn errors_name_the_line_and_key() {
        let e = Config::parse("workers = 1\nwrokers = 2\n").unwrap_err();
        assert!(e.starts_with(" line 2: "), "{e}");
        assert!(e.contains("wrokers"), "{e}");
        let e = Config::parse("[[port]]\nname = \"p0\"\n").unwrap_err();
        assert!(e.contains("backend"), "{e}");
    }

    #[test]
    fn checks_refuse_what_cannot_start() {
        let tcp = "[api]\nlisten = [\"tcp:127.0.0.1:7443\"]\n";
        let e = Config::parse(tcp).unwrap().check().unwrap_err();
        assert!(e.contains("needs TLS"), "{e}");
        let dup = "[[port]]\nname = \"a\"\nbackend = \"mem:a\"\n[[port]]\nname = \"a\"\nbackend = \"mem:b\"\n";
        let e = Config::parse(dup).unwrap().check().unwrap_err();
        assert!(e.contains("port[1] (a).name"), "{e}");
        let bad = "[[port]]\nname = \"a\"\nbackend = \"warp:x\"\n";
        let e = Config::parse(bad).unwrap().check().unwrap_err();
        assert!(e.contains("port[0] (a).backend"), "{e}");
        let few = "workers = 2\n[[port]]\nname = \"a\"\nbackend = \"afxdp:eth0,queues=1\"\n";
        let e = Config::parse(few).unwrap().check().unwrap_err();
        assert!(
            e.contains("port[0] (a).backend: 2 workers need 2 queues"),
            "{e}"
        );
        let enough = "workers = 2\n[[port]]\nname = \"a\"\nbackend = \"afxdp:eth0,queues=2\"\n";
        assert!(Config::parse(enough).unwrap().check().is_ok());
        let two = "workers = 2\n[[port]]\nname = \"a\"\nbackend = \"pcap:out=/tmp/x.pcap\"\n";
        let e = Config::parse(two).unwrap().check().unwrap_err();
        assert!(e.contains("workers = 1"), "{e}");
    }

    #[test]
    fn service_settings_are_checked() {
        let check = |t: &str| Config::parse(t).and_then(|c| c.check().map(|_| ()));
        assert!(Config::parse("").unwrap().services == ServicesConfig::default());
        let e = check("[services]\ncluster_cidrs = [\"10.244.0.1/16\"]\n").unwrap_err();
        assert!(
            e.contains("services.cluster_cidrs[0]") && e.contains("host bits"),
            "{e}"
        );
        let e = check(
            "[services]\ncluster_cidrs = [\"10.0.0.0/8\"]\nservice_cidrs = [\"10.96.0.0/12\"]\n",
        )
        .unwrap_err();
        assert!(
            e.contains("services.service_cidrs[0]") && e.contains("overlaps"),
            "{e}"
        );
        let e = check("[services]\nnode_port_addresses = [\"192.0.2.0/24\", \"192.0.2.0/24\"]\n")
            .unwrap_err();
        assert!(e.contains("services.node_port_addresses[1]"), "{e}");
        let e = Config::parse("[services]\nservice_cidr = []\n").unwrap_err();
        assert!(e.contains("service_cidr"), "{e}");
        let e = Config::parse("[services]\nservice_cidrs = [\"10.96.0.0\"]\n").unwrap_err();
        assert!(e.starts_with(" line 2: "), "{e}");
    }

    #[test]
    fn dpdk_section() {
        let c = Config::parse("[dpdk]\neal = [\"--no-huge\", \"-m\", \"512\"]\nmbufs = 4095\n")
            .unwrap();
        assert_eq!(c.dpdk.eal, ["--no-huge", "-m", "512"]);
        assert_eq!(c.dpdk.mbufs, Some(4095));
        assert_eq!(Config::parse("").unwrap().dpdk, DpdkSection::default());
        let e = Config::parse("[dpdk]\nhugepages = 1\n").unwrap_err();
        assert!(e.contains("hugepages"), "{e}");
    }

    #[test]
    fn the_example_configuration_reads() {
        let text = include_str!("../../../examples/sluiced.toml");
        let c = Config::parse(text).unwrap().check().unwrap();
        assert_eq!(c.config.services.service_cidrs.len(), 1);
    }
}
