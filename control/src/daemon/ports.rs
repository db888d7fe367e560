//! Opening the node's ports from their backend specs.
//!
//! | spec | port |
//! | --- | --- |
//! | `mem:NAME` | an in-memory port that receives nothing and counts and frees what it sends (for tests and dry runs of a configuration) |
//! | `pcap:in=FILE,out=FILE[,repeat=true][,speed=X]` | reads frames from one capture file and writes what it sends to another; either side may be left out. `speed` replays at the recorded pace times X; `repeat` loops the input |
//! | `afpacket:IFACE[,v2][,queues=N]` | the Linux interface IFACE (in the daemon's network namespace) through AF_PACKET rings: TPACKET_V3 receive rings, or TPACKET_V2 with `v2` (lower latency when traffic is light); `queues` receive sockets in a hash fanout group (default: one per worker); one transmit ring per worker. Puts IFACE in promiscuous mode while open |
//! | `tap:NAME` | creates the TAP device NAME (`%d` picks a free number), brings it up and is the far end of its link: what the host sends out of NAME the port receives. One queue pair per worker |
//! | `memif:SOCKET[,master\|slave][,id=N][,queues=N]` | a memif interface (shared memory with VPP, DPDK's `net_memif` or another CNF) on the Unix socket `SOCKET` (a path, or `@NAME` in the abstract namespace). `master` (the default; DPDK calls it `server`) listens, `slave` (`client`) connects and reconnects; `id` is the interface id both sides agree on (default 0); `queues` defaults to one pair per worker and may not be fewer |
//! | `dpdk:DEVICE[,DEVARGS]` | a device DPDK drives (sluiced built with `--features dpdk`): everything after `dpdk:` is DPDK's own device string, a PCI address (`dpdk:0000:01:00.0`) or a virtual device with its arguments (`dpdk:net_pcap0,rx_pcap=/in.pcap,tx_pcap=/out.pcap`); a queue pair per worker. EAL's arguments come from the configuration's `[dpdk]` section |
//! | `afxdp:IFACE[,queues=N][,zerocopy][,skb]` | the Linux interface IFACE through AF_XDP sockets, one per queue: queues `0..N` of the interface (N defaults to the number of workers and must be at least that). The XDP program attaches natively where the driver can, else generically; `skb` forces the generic hook. `zerocopy` binds the sockets zero-copy (native hook and driver support needed; refused otherwise). The mode in use is logged and reported as the port's driver |
//!
//! dpdk in a build without the feature is refused with a clear error.
//!
//! The spec is also the port's identity: an Interface object configures
//! the port only if its `spec.backend` is the same string.

use core::fmt;
use sluice_dataplane::io::afpacket::{AfPacketConfig, AfPacketPort, RxRingVersion};
use sluice_dataplane::io::afxdp::{AfXdpConfig, AfXdpPort, XdpAttach};
use sluice_dataplane::io::mem::{MemPort, MemPortConfig, RssMode};
use sluice_dataplane::io::memif::{MemifConfig, MemifPort, MemifRole};
use sluice_dataplane::io::pcap::{PcapPort, PcapReadConfig, PcapWriteConfig, Timing};
use sluice_dataplane::io::tap::{TapConfig, TapPort};
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
    /// A memif interface on a Unix socket.
    Memif {
        socket: String,
        role: MemifRole,
        id: u32,
        /// Queue pairs; one per worker when `None`.
        queues: Option<u16>,
    },
    /// A DPDK device: `devargs` is DPDK's device string.
    #[cfg(feature = "dpdk")]
    Dpdk {
        devargs: String,
    },
    AfPacket {
        interface: String,
        /// TPACKET_V2 receive rings instead of V3.
        v2: bool,
        /// Receive queues (fanout sockets); one per worker when `None`.
        queues: Option<u16>,
    },
    Tap {
        name: String,
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

/// Checks a Linux interface name: 1 to 15 bytes, no `/`, `,`, `:`,
/// whitespace or NUL.
fn interface_name(spec: &str, name: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && name.len() < 16
        && name != "."
        && name != ".."
        && !name
            .bytes()
            .any(|b| b == b'/' || b == b',' || b == b':' || b == 0 || b.is_ascii_whitespace());
    if ok {
        Ok(name.to_string())
    } else {
        Err(format!(
            "{spec:?}: {name:?} is not an interface name (1 to 15 bytes, no '/', ',', ':' or spaces)"
        ))
    }
}

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
            "dpdk" => Backend::parse_dpdk(s, rest),
            "afpacket" | "af_packet" => {
                let mut parts = rest.split(',');
                let interface = interface_name(s, parts.next().unwrap_or(""))
                    .map_err(|e| format!("{e}; expected afpacket:IFACE[,v2][,queues=N]"))?;
                let (mut v2, mut queues) = (false, None);
                for part in parts {
                    match part.split_once('=') {
                        None if part == "v2" => v2 = true,
                        Some(("queues", v)) => {
                            let n: u16 = v.parse().ok().filter(|&n| n > 0).ok_or_else(|| {
                                format!("{s:?}: queues must be a number from 1 to 65535, not {v:?}")
                            })?;
                            queues = Some(n);
                        }
                        _ => {
                            return Err(format!(
                                "{s:?}: unknown option {part:?} (options: v2, queues=N)"
                            ))
                        }
                    }
                }
                Ok(Backend::AfPacket {
                    interface,
                    v2,
                    queues,
                })
            }
            "tap" => Ok(Backend::Tap {
                name: interface_name(s, rest).map_err(|e| format!("{e}; expected tap:NAME"))?,
            }),
            "afxdp" => parse_afxdp(s, rest),
            "memif" => Backend::parse_memif(s, rest),
            _ => Err(format!(
                "{s:?}: unknown backend {kind:?}; expected mem:NAME, pcap:in=FILE,out=FILE, afpacket:IFACE, afxdp:IFACE, tap:NAME, memif:SOCKET or dpdk:DEVICE"
            )),
        }
    }
}

impl Backend {
    fn parse_memif(s: &str, rest: &str) -> Result<Backend, String> {
        const USAGE: &str = "memif:SOCKET[,master|slave][,id=N][,queues=N]";
        let mut parts = rest.split(',');
        let socket = parts.next().unwrap_or("");
        if socket.is_empty() || socket == "@" || socket.contains('=') {
            return Err(format!(
                "{s:?}: expected {USAGE}; the socket path comes first"
            ));
        }
        let (mut role, mut id, mut queues) = (None, None, None);
        for part in parts {
            match part.split_once('=') {
                None => {
                    let r = match part {
                        "master" | "server" => MemifRole::Master,
                        "slave" | "client" => MemifRole::Slave,
                        _ => {
                            return Err(format!(
                                "{s:?}: {part:?} is not a role (master or slave) nor KEY=VALUE (keys: id, queues)"
                            ))
                        }
                    };
                    if role.replace(r).is_some() {
                        return Err(format!("{s:?}: the role is given twice"));
                    }
                }
                Some(("id", v)) => {
                    let n: u32 = v.parse().map_err(|_| {
                        format!(
                            "{s:?}: id must be a number from 0 to {}, not {v:?}",
                            u32::MAX
                        )
                    })?;
                    if id.replace(n).is_some() {
                        return Err(format!("{s:?}: id is given twice"));
                    }
                }
                Some(("queues", v)) => {
                    let n: u16 = v
                        .parse()
                        .ok()
                        .filter(|n| (1..=256).contains(n))
                        .ok_or_else(|| format!("{s:?}: queues must be 1 to 256, not {v:?}"))?;
                    if queues.replace(n).is_some() {
                        return Err(format!("{s:?}: queues is given twice"));
                    }
                }
                Some((k, _)) => return Err(format!("{s:?}: unknown key {k:?} (keys: id, queues)")),
            }
        }
        Ok(Backend::Memif {
            socket: socket.to_string(),
            role: role.unwrap_or(MemifRole::Master),
            id: id.unwrap_or(0),
            queues,
        })
    }

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
            Backend::Memif {
                socket,
                role,
                id: iface,
                queues,
            } => {
                let workers = u16::try_from(workers).unwrap_or(u16::MAX);
                let queues = queues.unwrap_or(workers);
                if queues < workers {
                    return Err(format!(
                        "port {name}: queues={queues} is fewer than the {workers} workers (each sends on a queue of its own)"
                    ));
                }
                let port = MemifPort::open(
                    name,
                    MemifConfig {
                        port_id: id,
                        role: *role,
                        socket: socket.clone(),
                        id: *iface,
                        queues,
                        name: name.to_string(),
                        ..MemifConfig::default()
                    },
                )
                .map_err(fail)?;
                Ok(port)
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
            Backend::AfPacket {
                interface,
                v2,
                queues,
            } => {
                let workers = u16::try_from(workers.max(1)).unwrap_or(u16::MAX);
                let port = AfPacketPort::open(
                    name,
                    interface,
                    AfPacketConfig {
                        port_id: id,
                        rx_queues: queues.unwrap_or(workers),
                        tx_queues: workers,
                        rx_version: if *v2 {
                            RxRingVersion::V2
                        } else {
                            RxRingVersion::V3
                        },
                        ..AfPacketConfig::default()
                    },
                )
                .map_err(fail)?;
                Ok(port)
            }
            Backend::Tap { name: device } => {
                let workers = u16::try_from(workers.max(1)).unwrap_or(u16::MAX);
                let port = TapPort::open(
                    name,
                    device,
                    TapConfig {
                        port_id: id,
                        queues: workers,
                    },
                )
                .map_err(fail)?;
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
            Backend::Memif { .. } => f.write_str("memif"),
            #[cfg(feature = "dpdk")]
            Backend::Dpdk { .. } => f.write_str("dpdk"),
            Backend::AfPacket { .. } => f.write_str("afpacket"),
            Backend::Tap { .. } => f.write_str("tap"),
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
        let e = "warp:x".parse::<Backend>().unwrap_err();
        assert!(e.contains("unknown backend"), "{e}");
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
    fn afpacket_and_tap_specs_parse() {
        let ok = |s: &str| s.parse::<Backend>().unwrap();
        assert_eq!(
            ok("afpacket:eth0"),
            Backend::AfPacket {
                interface: "eth0".into(),
                v2: false,
                queues: None
            }
        );
        assert_eq!(
            ok("afpacket:veth-r0,v2,queues=4"),
            Backend::AfPacket {
                interface: "veth-r0".into(),
                v2: true,
                queues: Some(4)
            }
        );
        assert_eq!(
            ok("afpacket:eth1,queues=2"),
            Backend::AfPacket {
                interface: "eth1".into(),
                v2: false,
                queues: Some(2)
            }
        );
        assert_eq!(ok("tap:sl0"), Backend::Tap { name: "sl0".into() });
        assert_eq!(
            ok("tap:tap%d"),
            Backend::Tap {
                name: "tap%d".into()
            }
        );
        let err = |s: &str| s.parse::<Backend>().unwrap_err();
        for (spec, says) in [
            ("afpacket:", "not an interface name"),
            ("afpacket", "not an interface name"),
            ("afpacket:a-name-much-too-long", "not an interface name"),
            ("afpacket:../x", "not an interface name"),
            ("afpacket:eth0,v3", "unknown option \"v3\""),
            ("afpacket:eth0,queues=0", "queues must be"),
            ("afpacket:eth0,queues=lots", "queues must be"),
            ("afpacket:eth0,colour=red", "unknown option"),
            ("tap:", "expected tap:NAME"),
            ("tap:a b", "not an interface name"),
            ("tap:x,y", "not an interface name"),
        ] {
            let e = err(spec);
            assert!(e.contains(says), "{spec}: {e}");
        }
        assert_eq!(ok("afpacket:eth0").to_string(), "afpacket");
        assert_eq!(ok("tap:t0").to_string(), "tap");
    }

    #[test]
    fn a_missing_interface_stops_the_port_with_its_name() {
        let e = "afpacket:sluice-none0"
            .parse::<Backend>()
            .unwrap()
            .open(0, "p0", 1)
            .err()
            .unwrap();
        assert!(e.starts_with("port p0: "), "{e}");
        assert!(e.contains("sluice-none0"), "{e}");
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
    fn memif_specs_parse() {
        let memif = |socket: &str, role, id, queues| Backend::Memif {
            socket: socket.into(),
            role,
            id,
            queues,
        };
        let ok = |s: &str| s.parse::<Backend>().unwrap();
        assert_eq!(
            ok("memif:/run/a.sock"),
            memif("/run/a.sock", MemifRole::Master, 0, None)
        );
        assert_eq!(
            ok("memif:/run/a.sock,slave,id=3,queues=4"),
            memif("/run/a.sock", MemifRole::Slave, 3, Some(4))
        );
        assert_eq!(
            ok("memif:@cnf,queues=2,client"),
            memif("@cnf", MemifRole::Slave, 0, Some(2))
        );
        assert_eq!(
            ok("memif:/a,server,id=4294967295"),
            memif("/a", MemifRole::Master, u32::MAX, None)
        );
        assert_eq!(ok("memif:/a").to_string(), "memif");
        for (bad, why) in [
            ("memif:", "socket path comes first"),
            ("memif:@", "socket path comes first"),
            ("memif:id=1", "socket path comes first"),
            ("memif:/a,boss", "not a role"),
            ("memif:/a,master,slave", "role is given twice"),
            ("memif:/a,id=-1", "id must be a number"),
            ("memif:/a,id=1,id=2", "id is given twice"),
            ("memif:/a,queues=0", "queues must be 1 to 256"),
            ("memif:/a,queues=257", "queues must be 1 to 256"),
            ("memif:/a,queues=2,queues=2", "queues is given twice"),
            ("memif:/a,ring=10", "unknown key \"ring\""),
        ] {
            let e = bad.parse::<Backend>().unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.starts_with(&format!("{bad:?}")), "{bad}: {e}");
        }
    }

    #[test]
    fn memif_ports_open_with_a_queue_pair_per_worker() {
        let dir = std::env::temp_dir().join(format!("sluice-ports-memif-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("m.sock");
        let b: Backend = format!("memif:{}", sock.display()).parse().unwrap();
        let p = b.open(2, "cnf", 3).unwrap();
        let i = p.info();
        assert_eq!(
            (i.driver, i.rx_queues, i.tx_queues, i.link_up),
            ("memif", 3, 3, false)
        );
        assert!(sock.exists(), "the master listens");
        let few: Backend = format!("memif:{},queues=2", dir.join("n.sock").display())
            .parse()
            .unwrap();
        let e = few.open(0, "cnf2", 3).err().unwrap();
        assert!(e.contains("fewer than the 3 workers"), "{e}");
        drop(p);
        assert!(!sock.exists(), "the socket goes with the port");
        std::fs::remove_dir_all(&dir).ok();
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
