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
//! [api]
//! listen = ["unix:/run/sluice/api.sock"]
//!
//! [metrics]
//! listen = "127.0.0.1:9090"
//!
//! [[port]]
//! name = "p0"
//! backend = "mem:p0"
//! ```

use super::ports::Backend;
use crate::api::listen::{ListenAddr, TlsFiles, DEFAULT_API};
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
    #[serde(default)]
    pub api: ApiConfig,
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// The node's ports, in port-id order.
    #[serde(default, rename = "port")]
    pub ports: Vec<PortConfig>,
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
            api: ApiConfig::default(),
            metrics: MetricsConfig::default(),
            ports: Vec::new(),
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
        let bad = "[[port]]\nname = \"a\"\nbackend = \"afpacket:eth0\"\n";
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
}
