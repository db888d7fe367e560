//! Opening the node's ports from their backend specs.
//!
//! | spec | port |
//! | --- | --- |
//! | `mem:NAME` | an in-memory port that receives nothing and counts and frees what it sends (for tests and dry runs of a configuration) |
//! | `pcap:in=FILE,out=FILE[,repeat=true][,speed=X]` | reads frames from one capture file and writes what it sends to another; either side may be left out. `speed` replays at the recorded pace times X; `repeat` loops the input |
//! | `afxdp:IFACE[,queues=N][,zerocopy][,skb]` | the Linux interface IFACE through AF_XDP sockets, one per queue: queues `0..N` of the interface (N defaults to the number of workers and must be at least that). The XDP program attaches natively where the driver can, else generically; `skb` forces the generic hook. `zerocopy` binds the sockets zero-copy (native hook and driver support needed; refused otherwise). The mode in use is logged and reported as the port's driver |
//!
//! afpacket, tap, memif and dpdk are named but not available yet: the
//! daemon refuses them with a clear error.
//!
//! The spec is also the port's identity: an Interface object configures
//! the port only if its `spec.backend` is the same string.

use core::fmt;
use sluice_dataplane::io::afxdp::{AfXdpConfig, AfXdpPort, XdpAttach};
use sluice_dataplane::io::mem::{MemPort, MemPortConfig, RssMode};
use sluice_dataplane::io::pcap::{PcapPort, PcapReadConfig, PcapWriteConfig, Timing};
use sluice_dataplane::io::{Port, PortError, PortInfo, PortStats, RxQueue, TxQueue};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

/// A parsed backend spec.
#[derive(Debug, Clone, PartialEq)]
pub enum Backend {
    Mem,
    Pcap {
        input: Option<PathBuf>,
        output: Option<PathBuf>,
        repeat: bool,
        /// Replay at the recorded pace (times this); as fast as possible
        /// when `None`.
        speed: Option<f64>,
    },
    AfXdp {
        iface: String,
        /// Queue pairs; the number of workers when `None`.
        queues: Option<u16>,
        zerocopy: bool,
        /// Attach to the generic (skb) hook only.
        skb: bool,
    },
}

const LATER: &[&str] = &["afpacket", "tap", "memif", "dpdk"];

/// Parses the part after `afxdp:`.
fn parse_afxdp(s: &str, rest: &str) -> Result<Backend, String> {
    let mut parts = rest.split(',');
    let iface = parts.next().unwrap_or_default();
    if iface.is_empty() || iface.contains('=') {
        return Err(format!(
            "{s:?}: expected afxdp:IFACE[,queues=N][,zerocopy][,skb]"
        ));
    }
    if iface.len() > 15 || iface.contains(['/', ' ', '\t', ':']) {
        return Err(format!(
            "{s:?}: {iface:?} is not an interface name (at most 15 bytes, no '/', ':' or spaces)"
        ));
    }
    let (mut queues, mut zerocopy, mut skb) = (None, false, false);
    for part in parts {
        match part.split_once('=') {
            Some(("queues", v)) => {
                let n: u16 = v.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                    format!("{s:?}: queues must be a number from 1 to 65535, not {v:?}")
                })?;
                queues = Some(n);
            }
            None if part == "zerocopy" => zerocopy = true,
            None if part == "skb" => skb = true,
            _ => {
                return Err(format!(
                    "{s:?}: unknown option {part:?} (options: queues=N, zerocopy, skb)"
                ))
            }
        }
    }
    if zerocopy && skb {
        return Err(format!(
            "{s:?}: zerocopy needs the native XDP hook, skb asks for the generic one; pick one"
        ));
    }
    Ok(Backend::AfXdp {
        iface: iface.to_string(),
        queues,
        zerocopy,
        skb,
    })
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(s: &str) -> Result<Backend, String> {
        let (kind, rest) = s.split_once(':').unwrap_or((s, ""));
        match kind {
            "mem" => {
                if rest.is_empty() {
                    return Err(format!("{s:?}: expected mem:NAME"));
                }
                Ok(Backend::Mem)
            }
            "pcap" => {
                let (mut input, mut output, mut repeat, mut speed) = (None, None, false, None);
                for part in rest.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = part.split_once('=').ok_or_else(|| {
                        format!("{s:?}: {part:?} is not KEY=VALUE (keys: in, out, repeat, speed)")
                    })?;
                    match k {
                        "in" => input = Some(PathBuf::from(v)),
                        "out" => output = Some(PathBuf::from(v)),
                        "repeat" => {
                            repeat = v.parse().map_err(|_| {
                                format!("{s:?}: repeat must be true or false, not {v:?}")
                            })?
                        }
                        "speed" => {
                            let x: f64 = v
                                .parse()
                                .map_err(|_| format!("{s:?}: speed must be a number, not {v:?}"))?;
                            if !(x.is_finite() && x > 0.0) {
                                return Err(format!("{s:?}: speed must be positive, not {v:?}"));
                            }
                            speed = Some(x)
                        }
                        _ => {
                            return Err(format!(
                                "{s:?}: unknown key {k:?} (keys: in, out, repeat, speed)"
                            ))
                        }
                    }
                }
                if input.is_none() && output.is_none() {
                    return Err(format!(
                        "{s:?}: expected pcap:in=FILE,out=FILE (at least one of them)"
                    ));
                }
                Ok(Backend::Pcap {
                    input,
                    output,
                    repeat,
                    speed,
                })
            }
            "afxdp" => parse_afxdp(s, rest),
            k if LATER.contains(&k) => Err(format!(
                "{s:?}: the {k} backend is not available in this build yet (available: mem, pcap, afxdp)"
            )),
            _ => Err(format!(
                "{s:?}: unknown backend {kind:?}; expected mem:NAME, pcap:in=FILE,out=FILE or afxdp:IFACE"
            )),
        }
    }
}

impl Backend {
    /// Whether the port has a single transmit queue (so only one worker can
    /// send to it).
    pub fn single_tx_queue(&self) -> bool {
        matches!(
            self,
            Backend::Pcap {
                output: Some(_),
                ..
            }
        )
    }

    /// Opens the port with id `id`, with a queue pair per worker where the
    /// backend has queues.
    pub fn open(&self, id: u16, name: &str, workers: usize) -> Result<Arc<dyn Port>, String> {
        let fail = |e: PortError| format!("port {name}: {e}");
        match self {
            Backend::Mem => {
                let queues = u16::try_from(workers).unwrap_or(u16::MAX);
                let [hi, lo] = id.to_be_bytes();
                Ok(MemPort::sink(
                    name,
                    MemPortConfig {
                        port_id: id,
                        rx_queues: queues,
                        tx_queues: queues,
                        mac: [0x02, 0x5c, 0, 0, hi, lo],
                        rss: RssMode::Toeplitz,
                        ..MemPortConfig::default()
                    },
                ))
            }
            Backend::Pcap {
                input,
                output,
                repeat,
                speed,
            } => {
                let input = match input {
                    Some(path) => Some(
                        PcapPort::open_read(
                            path,
                            PcapReadConfig {
                                port_id: id,
                                timing: match speed {
                                    Some(speed) => Timing::Recorded { speed: *speed },
                                    None => Timing::AsFastAsPossible,
                                },
                                repeat: *repeat,
                            },
                        )
                        .map_err(fail)?,
                    ),
                    None => None,
                };
                let output = match output {
                    Some(path) => Some(
                        PcapPort::create_write(path, PcapWriteConfig::default()).map_err(fail)?,
                    ),
                    None => None,
                };
                Ok(Arc::new(PcapDuplex {
                    name: name.to_string(),
                    input,
                    output,
                }))
            }
            Backend::AfXdp {
                iface,
                queues,
                zerocopy,
                skb,
            } => {
                let port = AfXdpPort::open(
                    name,
                    iface,
                    AfXdpConfig {
                        port_id: id,
                        queues: queues.unwrap_or(u16::try_from(workers).unwrap_or(u16::MAX)),
                        zerocopy: *zerocopy,
                        attach: if *skb {
                            XdpAttach::Generic
                        } else {
                            XdpAttach::Auto
                        },
                        ..AfXdpConfig::default()
                    },
                )
                .map_err(|e| e.to_string())?;
                Ok(port)
            }
        }
    }

    /// The queue pairs the spec fixes, if it fixes them.
    pub fn queues(&self) -> Option<u16> {
        match self {
            Backend::AfXdp { queues, .. } => *queues,
            _ => None,
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Mem => f.write_str("mem"),
            Backend::Pcap { .. } => f.write_str("pcap"),
            Backend::AfXdp { .. } => f.write_str("afxdp"),
        }
    }
}

/// One port made of a capture to read and a capture to write.
struct PcapDuplex {
    name: String,
    input: Option<Arc<PcapPort>>,
    output: Option<Arc<PcapPort>>,
}

impl PcapDuplex {
    fn no_queue(&self, queue: u16) -> PortError {
        PortError::NoSuchQueue {
            port: self.name.clone(),
            queue,
            queues: 0,
        }
    }
}

impl Port for PcapDuplex {
    fn info(&self) -> PortInfo {
        let queues = |p: &Option<Arc<PcapPort>>, rx: bool| {
            p.as_ref().map_or(0, |p| {
                let i = p.info();
                if rx {
                    i.rx_queues
                } else {
                    i.tx_queues
                }
            })
        };
        PortInfo {
            name: self.name.clone(),
            driver: "pcap",
            mac: [0; 6],
            mtu: 1500,
            rx_queues: queues(&self.input, true),
            tx_queues: queues(&self.output, false),
            link_up: true,
            speed_mbps: 0,
        }
    }

    fn stats(&self) -> PortStats {
        let mut s = PortStats::default();
        for p in self.input.iter().chain(self.output.iter()) {
            s += p.stats();
        }
        s
    }

    fn rx_queue(&self, queue: u16) -> Result<Box<dyn RxQueue>, PortError> {
        match &self.input {
            Some(p) => p.rx_queue(queue),
            None => Err(self.no_queue(queue)),
        }
    }

    fn tx_queue(&self, queue: u16) -> Result<Box<dyn TxQueue>, PortError> {
        match &self.output {
            Some(p) => p.tx_queue(queue),
            None => Err(self.no_queue(queue)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse() {
        assert_eq!("mem:a".parse::<Backend>().unwrap(), Backend::Mem);
        assert!("mem:".parse::<Backend>().is_err());
        assert_eq!(
            "pcap:in=/a.pcap,out=/b.pcap,repeat=true,speed=2"
                .parse::<Backend>()
                .unwrap(),
            Backend::Pcap {
                input: Some("/a.pcap".into()),
                output: Some("/b.pcap".into()),
                repeat: true,
                speed: Some(2.0),
            }
        );
        assert!("pcap:".parse::<Backend>().is_err());
        assert!("pcap:in=/a,colour=red".parse::<Backend>().is_err());
        let e = "afpacket:eth0".parse::<Backend>().unwrap_err();
        assert!(e.contains("not available"), "{e}");
        assert!("bogus:x".parse::<Backend>().is_err());
    }

    #[test]
    fn afxdp_specs_parse() {
        let afxdp = |iface: &str, queues, zerocopy, skb| Backend::AfXdp {
            iface: iface.into(),
            queues,
            zerocopy,
            skb,
        };
        let ok = |s: &str| s.parse::<Backend>().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(ok("afxdp:eth0"), afxdp("eth0", None, false, false));
        assert_eq!(
            ok("afxdp:ens1f0,queues=4,zerocopy"),
            afxdp("ens1f0", Some(4), true, false)
        );
        assert_eq!(ok("afxdp:veth-r1,skb"), afxdp("veth-r1", None, false, true));
        assert_eq!(
            ok("afxdp:v0,skb,queues=2"),
            afxdp("v0", Some(2), false, true)
        );
        assert_eq!(ok("afxdp:eth0").to_string(), "afxdp");
        assert_eq!(ok("afxdp:eth0,queues=3").queues(), Some(3));
        let err = |s: &str| s.parse::<Backend>().unwrap_err();
        for (spec, says) in [
            ("afxdp:", "expected afxdp:IFACE"),
            ("afxdp", "expected afxdp:IFACE"),
            ("afxdp:queues=2", "expected afxdp:IFACE"),
            ("afxdp:a-name-that-is-too-long", "not an interface name"),
            ("afxdp:a/b", "not an interface name"),
            ("afxdp:eth0,queues=0", "queues must be"),
            ("afxdp:eth0,queues=x", "queues must be"),
            ("afxdp:eth0,queues=70000", "queues must be"),
            ("afxdp:eth0,turbo", "unknown option \"turbo\""),
            ("afxdp:eth0,zerocopy=1", "unknown option"),
            ("afxdp:eth0,zerocopy,skb", "pick one"),
        ] {
            let e = err(spec);
            assert!(e.contains(says), "{spec}: {e}");
            assert!(e.starts_with(&format!("{spec:?}")), "{spec}: {e}");
        }
    }

    /// Opens real AF_XDP ports on a veth pair made for the test (root only).
    #[test]
    fn afxdp_ports_open_with_the_asked_hook_and_queues() {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            println!("skipped: AF_XDP needs root");
            return;
        }
        struct Veth(String);
        impl Drop for Veth {
            fn drop(&mut self) {
                let _ = std::process::Command::new("ip")
                    .args(["link", "del", &self.0])
                    .output();
            }
        }
        let name = format!("sxc{}", std::process::id());
        let veth = Veth(name.clone());
        let ok = std::process::Command::new("ip")
            .args([
                "link",
                "add",
                &veth.0,
                "numtxqueues",
                "2",
                "numrxqueues",
                "2",
            ])
            .args(["type", "veth", "peer", "name", &format!("{name}p")])
            .args(["numtxqueues", "2", "numrxqueues", "2"])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip link add");
        let open = |spec: &str, workers| {
            let b: Backend = spec.parse().unwrap();
            b.open(0, "x", workers).map(|p| p.info())
        };
        let i = open(&format!("afxdp:{name}"), 2).unwrap();
        assert_eq!(
            (i.driver, i.rx_queues, i.tx_queues),
            ("afxdp-native-copy", 2, 2)
        );
        let i = open(&format!("afxdp:{name},skb,queues=1"), 1).unwrap();
        assert_eq!((i.driver, i.rx_queues), ("afxdp-generic-copy", 1));
        let e = open(&format!("afxdp:{name}"), 3).unwrap_err();
        assert!(e.contains("3 queues asked for"), "{e}");
        drop(veth);
    }

    #[test]
    fn afxdp_on_a_missing_interface_says_so() {
        let b: Backend = "afxdp:sx-absent0".parse().unwrap();
        let e = b.open(0, "up0", 1).err().unwrap();
        assert!(e.starts_with("port up0 (af_xdp on sx-absent0): "), "{e}");
    }

    #[test]
    fn ports_open_with_a_queue_pair_per_worker() {
        let p = Backend::Mem.open(3, "p3", 2).unwrap();
        let i = p.info();
        assert_eq!((i.name.as_str(), i.rx_queues, i.tx_queues), ("p3", 2, 2));
        let dir = std::env::temp_dir().join(format!("sluice-ports-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("out.pcap");
        let b: Backend = format!("pcap:out={}", out.display()).parse().unwrap();
        assert!(b.single_tx_queue());
        let p = b.open(0, "cap", 1).unwrap();
        let i = p.info();
        assert_eq!((i.rx_queues, i.tx_queues), (0, 1));
        assert!(p.rx_queue(0).is_err());
        assert!(p.tx_queue(0).is_ok());
        let missing: Backend = "pcap:in=/nonexistent/x.pcap".parse().unwrap();
        let e = missing.open(0, "cap", 1).err().unwrap();
        assert!(e.starts_with("port cap: "), "{e}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
