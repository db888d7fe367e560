//! Port specs: the text after `--port`, and the port it opens.
//!
//! | spec | port |
//! |---|---|
//! | `mem:loop[,loss=1%][,dup=1%][,reorder=1%][,delay=100us][,cap=1mpps][,depth=N][,ring=16384][,seed=1]` | an in-memory link back to the generator ([`crate::link`]) |
//! | `mem:sink` | counts and frees everything (the dataplane's `MemPort::sink`) |
//! | `pcap:out=FILE[,snaplen=N]` | writes every frame to a capture |
//! | `pcap:in=FILE[,speed=X][,repeat]` | receives a capture's frames, at their recorded pace scaled by X (or as fast as possible without `speed`) |
//! | `afpacket:IFACE[,v2]` | a Linux interface through memory-mapped AF_PACKET rings (the dataplane's `AfPacketPort`; promiscuous while open) |
//! | `afxdp:IFACE[,native\|skb][,zerocopy][,ring=N]` | a Linux interface's queue 0 through an AF_XDP socket (the dataplane's `AfXdpPort`) |

use crate::clock::Clock;
use crate::link::{LinkConfig, LinkPort};
use crate::rate::Rate;
use sluice_dataplane::io::afpacket::{AfPacketConfig, AfPacketPort, RxRingVersion};
use sluice_dataplane::io::afxdp::{AfXdpConfig, AfXdpPort, XdpAttach};
use sluice_dataplane::io::mem::{MemPort, MemPortConfig};
use sluice_dataplane::io::pcap::{PcapPort, PcapReadConfig, PcapWriteConfig, Timing};
use sluice_dataplane::io::Port;
use std::path::PathBuf;
use std::sync::Arc;

/// A parsed port spec.
#[derive(Debug, Clone, PartialEq)]
pub enum PortSpec {
    Loop(LinkConfig),
    Sink,
    PcapOut {
        path: PathBuf,
        snaplen: u32,
    },
    PcapIn {
        path: PathBuf,
        speed: Option<f64>,
        repeat: bool,
    },
    /// A Linux interface through AF_PACKET (TPACKET_V3 receive, or V2).
    AfPacket {
        iface: String,
        v2: bool,
    },
    /// A Linux interface's queue 0 through AF_XDP.
    AfXdp {
        iface: String,
        attach: XdpAttach,
        zerocopy: bool,
        ring: u32,
    },
}

/// Parses a duration: `100us`, `1.5ms`, `2s`, `500ns` (a bare number is
/// nanoseconds).
pub fn parse_duration_ns(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n
        .parse()
        .map_err(|_| format!("expected a duration like 100us or 2ms, got {s:?}"))?;
    let scale = match unit {
        "" | "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "s" => 1e9,
        _ => {
            return Err(format!(
                "unknown time unit {unit:?} in {s:?} (ns, us, ms or s)"
            ))
        }
    };
    Ok((n * scale).round() as u64)
}

fn parse_fraction(s: &str) -> Result<f64, String> {
    let (t, scale) = match s.strip_suffix('%') {
        Some(t) => (t, 100.0),
        None => (s, 1.0),
    };
    let v: f64 = t
        .parse()
        .map_err(|_| format!("expected a fraction (0.01) or a percentage (1%), got {s:?}"))?;
    let v = v / scale;
    if !(0.0..=1.0).contains(&v) {
        return Err(format!("{s} is not within 0-100%"));
    }
    Ok(v)
}

impl PortSpec {
    pub fn parse(text: &str) -> Result<PortSpec, String> {
        let err = |m: String| format!("port {text:?}: {m}");
        let (kind, rest) = text.split_once(':').ok_or_else(|| {
            err("expected mem:loop, mem:sink, pcap:out=FILE, pcap:in=FILE, afpacket:IFACE or afxdp:IFACE".into())
        })?;
        let mut parts = rest.split(',');
        let head = parts.next().unwrap_or("");
        let opts: Vec<(&str, &str)> = parts
            .map(|p| p.split_once('=').unwrap_or((p, "")))
            .collect();
        match (kind, head) {
            ("mem", "loop") => {
                let mut cfg = LinkConfig::default();
                for (k, v) in opts {
                    match k {
                        "reorder" => {
                            cfg.reorder =
                                parse_fraction(v).map_err(|m| err(format!("reorder: {m}")))?
                        }
                        "dup" => {
                            cfg.dup = parse_fraction(v).map_err(|m| err(format!("dup: {m}")))?
                        }
                        "loss" => {
                            cfg.loss = parse_fraction(v).map_err(|m| err(format!("loss: {m}")))?
                        }
                        "delay" => {
                            cfg.delay_ns =
                                parse_duration_ns(v).map_err(|m| err(format!("delay: {m}")))?
                        }
                        "ring" => {
                            cfg.ring = v.parse().ok().filter(|r| *r > 0).ok_or_else(|| {
                                err(format!("ring: expected a positive count, got {v:?}"))
                            })?
                        }
                        "depth" => {
                            cfg.cap_depth =
                                Some(v.parse().ok().filter(|d| *d > 0).ok_or_else(|| {
                                    err(format!(
                                        "depth: expected a positive packet count, got {v:?}"
                                    ))
                                })?)
                        }
                        "seed" => {
                            cfg.seed = v
                                .parse()
                                .map_err(|_| err(format!("seed: expected a number, got {v:?}")))?
                        }
                        "cap" => {
                            cfg.cap_pps =
                                match Rate::parse(v, 1e10).map_err(|m| err(format!("cap: {m}")))? {
                                    Rate::Pps(p) => Some(p),
                                    _ => {
                                        return Err(err(format!(
                                            "cap: expected packets per second (1mpps), got {v:?}"
                                        )))
                                    }
                                }
                        }
                        other => {
                            return Err(err(format!(
                            "unknown option {other:?} (loss, dup, reorder, delay, cap, depth, ring, seed)"
                        )))
                        }
                    }
                }
                Ok(PortSpec::Loop(cfg))
            }
            ("mem", "sink") if opts.is_empty() => Ok(PortSpec::Sink),
            ("pcap", h) if h.starts_with("out=") => {
                let mut snaplen = sluice_dataplane::io::pcap::DEFAULT_SNAPLEN;
                for (k, v) in opts {
                    match k {
                        "snaplen" => {
                            snaplen = v.parse().map_err(|_| {
                                err(format!("snaplen: expected a number, got {v:?}"))
                            })?
                        }
                        other => return Err(err(format!("unknown option {other:?} (snaplen)"))),
                    }
                }
                Ok(PortSpec::PcapOut {
                    path: PathBuf::from(&h[4..]),
                    snaplen,
                })
            }
            ("pcap", h) if h.starts_with("in=") => {
                let (mut speed, mut repeat) = (None, false);
                for (k, v) in opts {
                    match k {
                        "speed" => {
                            let s: f64 = v
                                .parse()
                                .map_err(|_| err(format!("speed: expected a number, got {v:?}")))?;
                            if !(s.is_finite() && s > 0.0) {
                                return Err(err(format!("speed: must be above zero, got {v}")));
                            }
                            speed = Some(s);
                        }
                        "repeat" => repeat = true,
                        other => {
                            return Err(err(format!("unknown option {other:?} (speed, repeat)")))
                        }
                    }
                }
                Ok(PortSpec::PcapIn {
                    path: PathBuf::from(&h[3..]),
                    speed,
                    repeat,
                })
            }
            ("afpacket" | "afxdp", "") => Err(err("name the interface, e.g. afpacket:eth1".into())),
            ("afpacket", iface) => {
                check_iface(iface).map_err(err)?;
                let mut v2 = false;
                for (k, _) in opts {
                    match k {
                        "v2" => v2 = true,
                        "v3" => v2 = false,
                        other => return Err(err(format!("unknown option {other:?} (v2, v3)"))),
                    }
                }
                Ok(PortSpec::AfPacket {
                    iface: iface.to_string(),
                    v2,
                })
            }
            ("afxdp", iface) => {
                check_iface(iface).map_err(err)?;
                let (mut attach, mut zerocopy, mut ring) = (XdpAttach::Auto, false, 2048u32);
                for (k, v) in opts {
                    match k {
                        "native" => attach = XdpAttach::Native,
                        "skb" | "generic" => attach = XdpAttach::Generic,
                        "zerocopy" => zerocopy = true,
                        "ring" => {
                            ring = v
                                .parse()
                                .ok()
                                .filter(|r: &u32| r.is_power_of_two() && (64..=32768).contains(r))
                                .ok_or_else(|| {
                                    err(format!(
                                        "ring: expected a power of two from 64 to 32768, got {v:?}"
                                    ))
                                })?
                        }
                        other => {
                            return Err(err(format!(
                                "unknown option {other:?} (native, skb, zerocopy, ring)"
                            )))
                        }
                    }
                }
                if zerocopy && attach == XdpAttach::Generic {
                    return Err(err("zerocopy needs the native hook, not skb".into()));
                }
                Ok(PortSpec::AfXdp {
                    iface: iface.to_string(),
                    attach,
                    zerocopy,
                    ring,
                })
            }
            _ => Err(err(
                "expected mem:loop[,...], mem:sink, pcap:out=FILE, pcap:in=FILE, afpacket:IFACE or afxdp:IFACE"
                    .into(),
            )),
        }
    }

    /// Opens the port.
    pub fn open(&self, name: &str, clock: Clock) -> Result<Arc<dyn Port>, String> {
        let e = |e: sluice_dataplane::io::PortError| format!("{name}: {e}");
        Ok(match self {
            PortSpec::Loop(cfg) => LinkPort::new(name, cfg.clone(), clock).map_err(e)?,
            PortSpec::Sink => MemPort::sink(name, MemPortConfig::default()),
            PortSpec::PcapOut { path, snaplen } => {
                PcapPort::create_write(path, PcapWriteConfig { snaplen: *snaplen }).map_err(e)?
            }
            PortSpec::PcapIn {
                path,
                speed,
                repeat,
            } => PcapPort::open_read(
                path,
                PcapReadConfig {
                    port_id: 0,
                    timing: match speed {
                        Some(s) => Timing::Recorded { speed: *s },
                        None => Timing::AsFastAsPossible,
                    },
                    repeat: *repeat,
                },
            )
            .map_err(e)?,
            PortSpec::AfPacket { iface, v2 } => AfPacketPort::open(
                name,
                iface,
                AfPacketConfig {
                    rx_version: if *v2 {
                        RxRingVersion::V2
                    } else {
                        RxRingVersion::V3
                    },
                    ..AfPacketConfig::default()
                },
            )
            .map_err(e)?,
            PortSpec::AfXdp {
                iface,
                attach,
                zerocopy,
                ring,
            } => AfXdpPort::open(
                name,
                iface,
                AfXdpConfig {
                    queues: 1,
                    zerocopy: *zerocopy,
                    attach: *attach,
                    ring_size: *ring,
                    ..AfXdpConfig::default()
                },
            )
            .map_err(e)?,
        })
    }

    /// Whether what is sent on this port comes back on it.
    pub fn loops_back(&self) -> bool {
        matches!(self, PortSpec::Loop(_))
    }

    /// Whether this is a real interface (one port can both send and
    /// receive, so a `--rx-port` naming the same one shares it).
    pub fn is_interface(&self) -> bool {
        matches!(self, PortSpec::AfPacket { .. } | PortSpec::AfXdp { .. })
    }
}

/// An interface name as Linux takes it: 1 to 15 bytes, no `/`, no space.
fn check_iface(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 15 || name.contains(['/', ' ', ':']) {
        return Err(format!(
            "{name:?} is not an interface name (1-15 characters, no '/', ':' or space)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs() {
        assert_eq!(PortSpec::parse("mem:sink").unwrap(), PortSpec::Sink);
        let PortSpec::Loop(c) = PortSpec::parse("mem:loop,loss=1%,delay=250us,cap=1mpps").unwrap()
        else {
            panic!()
        };
        assert_eq!(c.loss, 0.01);
        assert_eq!(c.delay_ns, 250_000);
        assert_eq!(c.cap_pps, Some(1e6));
        assert!(matches!(
            PortSpec::parse("pcap:out=/tmp/x.pcap").unwrap(),
            PortSpec::PcapOut { .. }
        ));
        assert!(PortSpec::parse("mem:loop,loss=101%")
            .unwrap_err()
            .contains("loss"));
        assert!(PortSpec::parse("mem:loop,lose=1")
            .unwrap_err()
            .contains("unknown option"));
        assert!(PortSpec::parse("eth0").is_err());
        assert_eq!(
            PortSpec::parse("afpacket:veth0").unwrap(),
            PortSpec::AfPacket {
                iface: "veth0".into(),
                v2: false
            }
        );
        assert_eq!(
            PortSpec::parse("afxdp:eth1,native,zerocopy,ring=4096").unwrap(),
            PortSpec::AfXdp {
                iface: "eth1".into(),
                attach: XdpAttach::Native,
                zerocopy: true,
                ring: 4096
            }
        );
        assert!(PortSpec::parse("afxdp:eth1,skb,zerocopy")
            .unwrap_err()
            .contains("zerocopy"));
        assert!(PortSpec::parse("afxdp:eth1,ring=1000")
            .unwrap_err()
            .contains("ring"));
        assert!(PortSpec::parse("afpacket:")
            .unwrap_err()
            .contains("interface"));
        assert!(PortSpec::parse("afpacket:a-very-long-interface-name")
            .unwrap_err()
            .contains("not an interface name"));
        assert_eq!(parse_duration_ns("1.5ms").unwrap(), 1_500_000);
    }
}
