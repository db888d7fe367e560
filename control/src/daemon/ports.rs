//! Opening the node's ports from their backend specs.
//!
//! | spec | port |
//! | --- | --- |
//! | `mem:NAME` | an in-memory port that receives nothing and counts and frees what it sends (for tests and dry runs of a configuration) |
//! | `pcap:in=FILE,out=FILE[,repeat=true][,speed=X]` | reads frames from one capture file and writes what it sends to another; either side may be left out. `speed` replays at the recorded pace times X; `repeat` loops the input |
//! | `dpdk:DEVICE[,DEVARGS]` | a device DPDK drives (sluiced built with `--features dpdk`): everything after `dpdk:` is DPDK's own device string, a PCI address (`dpdk:0000:01:00.0`) or a virtual device with its arguments (`dpdk:net_pcap0,rx_pcap=/in.pcap,tx_pcap=/out.pcap`); a queue pair per worker. EAL's arguments come from the configuration's `[dpdk]` section |
//!
//! afpacket, afxdp, tap and memif are named but not available yet, nor is
//! dpdk in a build without the feature: the daemon refuses them with a
//! clear error.
//!
//! The spec is also the port's identity: an Interface object configures
//! the port only if its `spec.backend` is the same string.

use core::fmt;
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
    /// A DPDK device: `devargs` is DPDK's device string.
    #[cfg(feature = "dpdk")]
    Dpdk {
        devargs: String,
    },
}

const LATER: &[&str] = &["afpacket", "afxdp", "tap", "memif"];

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
            "dpdk" => Backend::parse_dpdk(s, rest),
            k if LATER.contains(&k) => Err(format!(
                "{s:?}: the {k} backend is not available in this build yet (available: mem, pcap)"
            )),
            _ => Err(format!(
                "{s:?}: unknown backend {kind:?}; expected mem:NAME or pcap:in=FILE,out=FILE"
            )),
        }
    }
}

impl Backend {
    #[cfg(feature = "dpdk")]
    fn parse_dpdk(s: &str, devargs: &str) -> Result<Backend, String> {
        let device = devargs.split(',').next().unwrap_or("");
        if device.is_empty() || devargs.chars().any(char::is_whitespace) {
            return Err(format!(
                "{s:?}: expected dpdk:DEVICE[,DEVARGS] (a PCI address such as 0000:01:00.0, or a virtual device such as net_pcap0,rx_pcap=FILE), without spaces"
            ));
        }
        Ok(Backend::Dpdk {
            devargs: devargs.to_string(),
        })
    }

    #[cfg(not(feature = "dpdk"))]
    fn parse_dpdk(s: &str, _devargs: &str) -> Result<Backend, String> {
        Err(format!(
            "{s:?}: this sluiced was built without DPDK (build it with --features dpdk)"
        ))
    }

    /// Whether the port is a DPDK device (EAL must be started first, see
    /// [`start_dpdk`]).
    pub fn is_dpdk(&self) -> bool {
        #[cfg(feature = "dpdk")]
        if let Backend::Dpdk { .. } = self {
            return true;
        }
        false
    }

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
                        rss: RssMode::Symmetric,
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
            #[cfg(feature = "dpdk")]
            Backend::Dpdk { devargs } => {
                use sluice_dataplane::io::dpdk::{Dpdk, DpdkPort, DpdkPortConfig};
                let dpdk = Dpdk::get().ok_or_else(|| {
                    format!("port {name}: DPDK is not started (start_dpdk runs first)")
                })?;
                let queues = u16::try_from(workers).unwrap_or(u16::MAX);
                let port = DpdkPort::open(
                    dpdk,
                    name,
                    devargs,
                    DpdkPortConfig {
                        port_id: id,
                        rx_queues: queues,
                        tx_queues: queues,
                        ..DpdkPortConfig::default()
                    },
                )
                .map_err(|e| e.to_string())?;
                Ok(port)
            }
        }
    }
}

/// Starts DPDK's EAL with the `[dpdk]` section's arguments, once, before
/// any DPDK port opens (see `sluice_dataplane::io::dpdk` for what it does
/// to the calling thread's CPU affinity, and why that is put back).
#[cfg(feature = "dpdk")]
pub fn start_dpdk(cfg: &super::config::DpdkSection) -> Result<(), String> {
    use sluice_dataplane::io::dpdk::{Dpdk, DpdkConfig};
    let defaults = DpdkConfig::default();
    Dpdk::init(&DpdkConfig {
        eal_args: cfg.eal.clone(),
        mbufs: cfg.mbufs.unwrap_or(defaults.mbufs),
        mbuf_cache: defaults.mbuf_cache,
    })
    .map(|_| ())
    .map_err(|e| format!("dpdk: {e}"))
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Backend::Mem => f.write_str("mem"),
            Backend::Pcap { .. } => f.write_str("pcap"),
            #[cfg(feature = "dpdk")]
            Backend::Dpdk { .. } => f.write_str("dpdk"),
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
        let e = "afxdp:eth0".parse::<Backend>().unwrap_err();
        assert!(e.contains("not available"), "{e}");
        assert!("bogus:x".parse::<Backend>().is_err());
        let dpdk = "dpdk:net_pcap0,rx_pcap=/a.pcap".parse::<Backend>();
        #[cfg(feature = "dpdk")]
        {
            assert_eq!(
                dpdk.unwrap(),
                Backend::Dpdk {
                    devargs: "net_pcap0,rx_pcap=/a.pcap".into()
                }
            );
            assert!("dpdk:0000:01:00.0".parse::<Backend>().unwrap().is_dpdk());
            assert!("dpdk:".parse::<Backend>().is_err());
            assert!("dpdk:,x=1".parse::<Backend>().is_err());
            assert!("dpdk:net_null0, x".parse::<Backend>().is_err());
        }
        #[cfg(not(feature = "dpdk"))]
        assert!(dpdk.unwrap_err().contains("--features dpdk"));
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
