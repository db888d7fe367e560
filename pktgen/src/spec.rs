//! Stream specifications: what a stream sends, read from the short form on
//! the command line or from a profile file (YAML or TOML), checked once.
//!
//! Both forms are a protocol and a set of `key=value` fields with the same
//! keys and the same value syntax ([`crate::field`]); a profile is a list of
//! streams, each a map of those keys. Errors name the stream and the field.
//!
//! ```text
//! udp src=10.0.0.1-10.0.0.255 dst=10.1.0.1 sport=1000-2000 dport=53 size=64
//! tcp src=2001:db8::1 dst=2001:db8:1::1-2001:db8:1::ff dport=80 flags=syn size=rand:64-1518
//! vxlan outer_src=192.0.2.1 outer_dst=192.0.2.2 vni=100-199 src=10.0.0.1 dst=10.0.0.2 size=imix
//! ```

use crate::field::{self, AddrField, Variation};
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::Path;

/// The L4 protocol of a stream (for VXLAN: of the inner packet).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum L4Proto {
    Udp,
    /// TCP with these flags.
    Tcp {
        flags: u8,
    },
    Sctp,
    /// ICMP echo request (ICMPv6 over IPv6).
    Icmp,
}

/// The outer headers of a VXLAN stream (IPv4 outside, UDP checksum zero as
/// RFC 7348 allows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VxlanSpec {
    pub outer_smac: [u8; 6],
    pub outer_dmac: [u8; 6],
    pub outer_src: AddrField,
    pub outer_dst: AddrField,
    pub outer_sport: Variation,
    pub vni: Variation,
}

/// One checked stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSpec {
    pub name: String,
    pub proto: L4Proto,
    pub smac: [u8; 6],
    pub dmac: [u8; 6],
    /// Up to two VLAN tags, outermost first.
    pub vlans: Vec<Variation>,
    pub src: AddrField,
    pub dst: AddrField,
    /// Ignored for ICMP.
    pub sport: Variation,
    pub dport: Variation,
    pub ttl: u8,
    /// Frame sizes in bytes, without the FCS.
    pub size: Variation,
    pub vxlan: Option<VxlanSpec>,
    /// Share of the packets relative to the other streams.
    pub weight: u32,
    /// Whether packets carry a measurement mark; `None` marks them when the
    /// smallest frame has room.
    pub mark: Option<bool>,
}

/// A bad stream or profile: where, and what was expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError(pub String);

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SpecError {}

/// IMIX: 64, 594 and 1514-byte frames (without FCS; 1514 is the largest
/// a 1500-byte MTU carries) in the proportion 7:4:1.
pub const IMIX: [(u32, u32); 3] = [(64, 7), (594, 4), (1514, 1)];

/// Every key a stream may have.
pub const KEYS: &[&str] = &[
    "proto",
    "name",
    "smac",
    "dmac",
    "vlan",
    "vlan2",
    "src",
    "dst",
    "sport",
    "dport",
    "ttl",
    "flags",
    "size",
    "weight",
    "mark",
    "vni",
    "outer_src",
    "outer_dst",
    "outer_smac",
    "outer_dmac",
    "outer_sport",
];

fn parse_mac(s: &str) -> Result<[u8; 6], String> {
    let parts: Vec<&str> = s.split(':').collect();
    if parts.len() != 6 {
        return Err(format!(
            "expected a MAC address like 02:00:00:00:00:01, got {s:?}"
        ));
    }
    let mut mac = [0u8; 6];
    for (i, p) in parts.iter().enumerate() {
        mac[i] = u8::from_str_radix(p, 16)
            .map_err(|_| format!("expected a MAC address like 02:00:00:00:00:01, got {s:?}"))?;
    }
    Ok(mac)
}

fn parse_flags(s: &str) -> Result<u8, String> {
    let mut flags = 0u8;
    for f in s.split(['|', '+']) {
        flags |= match f.trim().to_ascii_lowercase().as_str() {
            "fin" => 0x01,
            "syn" => 0x02,
            "rst" => 0x04,
            "psh" => 0x08,
            "ack" => 0x10,
            "urg" => 0x20,
            "none" | "" => 0,
            other => {
                return Err(format!(
                "unknown TCP flag {other:?} (expected fin, syn, rst, psh, ack, urg joined by '|')"
            ))
            }
        };
    }
    Ok(flags)
}

/// Parses a size: a variation of frame sizes, or `imix`, or
/// `imix:SIZE*WEIGHT,...`.
pub fn parse_size(text: &str) -> Result<Variation, String> {
    let text = text.trim();
    let mix: Vec<(u32, u32)> = if text == "imix" {
        IMIX.to_vec()
    } else if let Some(body) = text.strip_prefix("imix:") {
        body.split(',')
            .map(|part| {
                let (s, w) = part
                    .split_once('*')
                    .ok_or_else(|| format!("imix entries are SIZE*WEIGHT, got {part:?}"))?;
                let s = field::parse_int_variation(s.trim(), 1, MAX_FRAME as u32)?;
                let w = field::parse_int_variation(w.trim(), 1, 1000)?;
                match (s, w) {
                    (Variation::Fixed(s), Variation::Fixed(w)) => Ok((s, w)),
                    _ => Err(format!("imix entries are SIZE*WEIGHT, got {part:?}")),
                }
            })
            .collect::<Result<_, String>>()?
    } else {
        return field::parse_int_variation(text, 1, MAX_FRAME as u32);
    };
    Ok(Variation::List(interleave(&mix)))
}

/// Spreads weighted values evenly over one cycle (smooth weighted
/// round-robin), so a mix never sends all of one size in a row.
pub fn interleave(mix: &[(u32, u32)]) -> Vec<u32> {
    let total: i64 = mix.iter().map(|(_, w)| *w as i64).sum();
    let mut current = vec![0i64; mix.len()];
    let mut out = Vec::with_capacity(total as usize);
    for _ in 0..total {
        let mut best = 0;
        for (i, (_, w)) in mix.iter().enumerate() {
            current[i] += *w as i64;
            if current[i] > current[best] {
                best = i;
            }
        }
        current[best] -= total;
        out.push(mix[best].0);
    }
    out
}

/// The largest frame a packet buffer holds.
pub const MAX_FRAME: usize = sluice_dataplane::buf::DATA_ROOM;

impl StreamSpec {
    /// Checks a stream given as `key -> value` text. `index` numbers the
    /// stream in error messages (from 1).
    pub fn from_fields(
        index: usize,
        fields: &BTreeMap<String, String>,
    ) -> Result<StreamSpec, SpecError> {
        let label = match fields.get("name") {
            Some(n) => format!("stream {index} ({n})"),
            None => format!("stream {index}"),
        };
        let err = |key: &str, msg: String| SpecError(format!("{label}: field {key}: {msg}"));
        for key in fields.keys() {
            if !KEYS.contains(&key.as_str()) {
                return Err(SpecError(format!(
                    "{label}: unknown field {key:?} (known: {})",
                    KEYS.join(", ")
                )));
            }
        }
        let get = |k: &str| fields.get(k).map(|s| s.as_str());
        let proto_text = get("proto").unwrap_or("udp");
        let (is_vxlan, l4) = match proto_text {
            "udp" => (false, L4Proto::Udp),
            "tcp" => (false, L4Proto::Tcp { flags: 0x02 }),
            "sctp" => (false, L4Proto::Sctp),
            "icmp" | "icmp6" => (false, L4Proto::Icmp),
            "vxlan" => (true, L4Proto::Udp),
            other => {
                return Err(err(
                    "proto",
                    format!("expected udp, tcp, sctp, icmp or vxlan, got {other:?}"),
                ))
            }
        };
        let proto = match (l4, get("flags")) {
            (L4Proto::Tcp { .. }, Some(f)) => L4Proto::Tcp {
                flags: parse_flags(f).map_err(|m| err("flags", m))?,
            },
            (_, Some(_)) => return Err(err("flags", "only TCP streams have flags".into())),
            (p, None) => p,
        };
        let mac = |k: &str, default: [u8; 6]| -> Result<[u8; 6], SpecError> {
            get(k).map_or(Ok(default), |s| parse_mac(s).map_err(|m| err(k, m)))
        };
        let addr = |k: &str, default: &str| -> Result<AddrField, SpecError> {
            field::parse_addr_variation(get(k).unwrap_or(default)).map_err(|m| err(k, m))
        };
        let int = |k: &str, default: &str, min: u32, max: u32| -> Result<Variation, SpecError> {
            field::parse_int_variation(get(k).unwrap_or(default), min, max).map_err(|m| err(k, m))
        };
        let src = addr("src", "10.0.0.1")?;
        let default_dst = if src.is_v6() {
            "2001:db8:1::1"
        } else {
            "10.1.0.1"
        };
        let dst = addr("dst", default_dst)?;
        if src.is_v6() != dst.is_v6() {
            return Err(err("dst", "src and dst must be of one IP family".into()));
        }
        let mut vlans = Vec::new();
        if let Some(v) = get("vlan") {
            vlans.push(field::parse_int_variation(v, 0, 4095).map_err(|m| err("vlan", m))?);
        }
        if let Some(v) = get("vlan2") {
            if vlans.is_empty() {
                return Err(err(
                    "vlan2",
                    "an inner tag needs an outer one (vlan=)".into(),
                ));
            }
            vlans.push(field::parse_int_variation(v, 0, 4095).map_err(|m| err("vlan2", m))?);
        }
        let ttl = match int("ttl", "64", 1, 255)? {
            Variation::Fixed(t) => t as u8,
            _ => return Err(err("ttl", "must be one value".into())),
        };
        let size = parse_size(get("size").unwrap_or("64")).map_err(|m| err("size", m))?;
        let weight = match int("weight", "1", 1, 1_000_000)? {
            Variation::Fixed(w) => w,
            _ => return Err(err("weight", "must be one value".into())),
        };
        let mark = match get("mark") {
            None => None,
            Some("on" | "true" | "yes" | "1") => Some(true),
            Some("off" | "false" | "no" | "0") => Some(false),
            Some(other) => return Err(err("mark", format!("expected on or off, got {other:?}"))),
        };
        let vxlan = if is_vxlan {
            let outer_src = addr("outer_src", "192.0.2.1")?;
            let outer_dst = addr("outer_dst", "192.0.2.2")?;
            if outer_src.is_v6() || outer_dst.is_v6() {
                return Err(err("outer_src", "VXLAN streams carry IPv4 outside".into()));
            }
            Some(VxlanSpec {
                outer_smac: mac("outer_smac", [2, 0, 0, 0, 0xc0, 2])?,
                outer_dmac: mac("outer_dmac", [2, 0, 0, 0, 0, 1])?,
                outer_src,
                outer_dst,
                outer_sport: int("outer_sport", "49152", 0, 65535)?,
                vni: int("vni", "1", 0, 0x00ff_ffff)?,
            })
        } else {
            for k in [
                "vni",
                "outer_src",
                "outer_dst",
                "outer_smac",
                "outer_dmac",
                "outer_sport",
            ] {
                if get(k).is_some() {
                    return Err(err(k, "only VXLAN streams have outer headers".into()));
                }
            }
            None
        };
        if matches!(proto, L4Proto::Icmp) && (get("sport").is_some() || get("dport").is_some()) {
            return Err(err("sport", "ICMP streams have no ports".into()));
        }
        Ok(StreamSpec {
            name: get("name").map_or_else(|| format!("s{index}"), str::to_string),
            proto,
            smac: mac("smac", [2, 0, 0, 0, 0xc0, 1])?,
            dmac: mac("dmac", [2, 0, 0, 0, 0, 1])?,
            vlans,
            src,
            dst,
            sport: int("sport", "1024", 0, 65535)?,
            dport: int("dport", "9", 0, 65535)?,
            ttl,
            size,
            vxlan,
            weight,
            mark,
        })
    }

    /// Parses the short form: an optional protocol word, then `key=value`
    /// pairs separated by spaces.
    pub fn parse_short(index: usize, text: &str) -> Result<StreamSpec, SpecError> {
        let mut fields = BTreeMap::new();
        for (i, word) in text.split_whitespace().enumerate() {
            match word.split_once('=') {
                Some((k, v)) => {
                    if fields.insert(k.to_string(), v.to_string()).is_some() {
                        return Err(SpecError(format!(
                            "stream {index}: field {k} is given twice"
                        )));
                    }
                }
                None if i == 0 => {
                    fields.insert("proto".to_string(), word.to_string());
                }
                None => {
                    return Err(SpecError(format!(
                        "stream {index}: expected key=value, got {word:?}"
                    )))
                }
            }
        }
        StreamSpec::from_fields(index, &fields)
    }

    /// The smallest frame the headers of this stream need.
    pub fn header_len(&self) -> usize {
        let l2 = 14 + 4 * self.vlans.len();
        let l3 = if self.src.is_v6() { 40 } else { 20 };
        let l4 = match self.proto {
            L4Proto::Udp | L4Proto::Icmp => 8,
            L4Proto::Tcp { .. } => 20,
            L4Proto::Sctp => 12,
        };
        let outer = if self.vxlan.is_some() {
            14 + 20 + 8 + 8
        } else {
            0
        };
        outer + l2 + l3 + l4
    }

    pub fn is_v6(&self) -> bool {
        self.src.is_v6()
    }

    /// The stream's template addresses.
    pub fn addresses(&self) -> (IpAddr, IpAddr) {
        (self.src.base, self.dst.base)
    }
}

/// A profile file: streams, and optionally the run's rate and length.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Profile {
    pub streams: Vec<StreamSpec>,
    pub rate: Option<String>,
    pub seconds: Option<f64>,
}

/// The text of one profile value: numbers and booleans as the short form
/// would spell them; lists and maps are not values.
fn scalar_text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(true) => Some("on".into()),
        serde_json::Value::Bool(false) => Some("off".into()),
        _ => None,
    }
}

impl Profile {
    /// Reads a profile: `.toml` files as TOML, anything else as YAML.
    pub fn load(path: &Path) -> Result<Profile, SpecError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| SpecError(format!("{}: {e}", path.display())))?;
        let is_toml = path.extension().is_some_and(|e| e == "toml");
        Profile::parse(&text, is_toml).map_err(|e| SpecError(format!("{}: {e}", path.display())))
    }

    /// Parses profile text (TOML or YAML).
    pub fn parse(text: &str, is_toml: bool) -> Result<Profile, SpecError> {
        // Both formats go through one generic value, so errors are the
        // same whichever was written.
        let doc: serde_json::Value = if is_toml {
            toml::from_str(text).map_err(|e| SpecError(one_line(&e.to_string())))?
        } else {
            serde_yaml::from_str(text).map_err(|e| SpecError(one_line(&e.to_string())))?
        };
        let serde_json::Value::Object(top) = doc else {
            return Err(SpecError(
                "the profile must be a map with a streams list (and optionally rate and seconds)"
                    .into(),
            ));
        };
        let mut profile = Profile::default();
        for (key, value) in &top {
            match key.as_str() {
                "rate" => {
                    profile.rate = Some(scalar_text(value).ok_or_else(|| {
                        SpecError("rate: expected a rate like 1mpps, 5gbps or 50%".into())
                    })?)
                }
                "seconds" => {
                    let s = value.as_f64().filter(|s| s.is_finite() && *s > 0.0);
                    profile.seconds = Some(s.ok_or_else(|| {
                        SpecError(format!("seconds: expected a positive number, got {value}"))
                    })?);
                }
                "streams" => {}
                other => {
                    return Err(SpecError(format!(
                        "unknown top-level field {other:?} (expected streams, rate, seconds)"
                    )))
                }
            }
        }
        let streams = match top.get("streams") {
            Some(serde_json::Value::Array(a)) if !a.is_empty() => a,
            Some(serde_json::Value::Array(_)) | None => {
                return Err(SpecError("streams: the profile has no stream".into()))
            }
            Some(_) => return Err(SpecError("streams: expected a list of streams".into())),
        };
        for (i, stream) in streams.iter().enumerate() {
            let serde_json::Value::Object(map) = stream else {
                return Err(SpecError(format!(
                    "stream {}: expected a map of fields (proto, src, dst, ...)",
                    i + 1
                )));
            };
            let mut fields = BTreeMap::new();
            for (k, v) in map {
                let text = scalar_text(v).ok_or_else(|| {
                    SpecError(format!(
                        "stream {}: field {k}: expected one value (a list is written \"a,b,c\"), got {v}",
                        i + 1
                    ))
                })?;
                fields.insert(k.clone(), text);
            }
            profile
                .streams
                .push(StreamSpec::from_fields(i + 1, &fields)?);
        }
        Ok(profile)
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_form() {
        let s = StreamSpec::parse_short(
            1,
            "udp src=10.0.0.1-10.0.0.255 dst=10.1.0.1 sport=1000-2000 dport=53 size=64",
        )
        .unwrap();
        assert_eq!(s.proto, L4Proto::Udp);
        assert_eq!(s.size, Variation::Fixed(64));
        assert!(!s.src.var.is_fixed());
        assert_eq!(s.dport, Variation::Fixed(53));
        let t = StreamSpec::parse_short(2, "tcp flags=syn|ack src=2001:db8::1 dst=2001:db8::2")
            .unwrap();
        assert_eq!(t.proto, L4Proto::Tcp { flags: 0x12 });
        assert!(t.is_v6());
    }

    #[test]
    fn errors_name_the_stream_and_field() {
        let e = StreamSpec::parse_short(3, "udp sport=70000").unwrap_err();
        assert_eq!(e.0, "stream 3: field sport: 70000 is out of range 0-65535");
        let e = StreamSpec::parse_short(1, "udp name=dns spot=1").unwrap_err();
        assert!(
            e.0.starts_with("stream 1 (dns): unknown field \"spot\""),
            "{e}"
        );
        let e = StreamSpec::parse_short(1, "ftp").unwrap_err();
        assert!(e.0.contains("field proto"), "{e}");
        let e = StreamSpec::parse_short(1, "udp src=10.0.0.1 dst=::1").unwrap_err();
        assert!(e.0.contains("field dst"), "{e}");
        let e = StreamSpec::parse_short(1, "udp flags=syn").unwrap_err();
        assert!(e.0.contains("field flags"), "{e}");
        let e = StreamSpec::parse_short(1, "udp size=imix:64").unwrap_err();
        assert!(e.0.contains("field size"), "{e}");
    }

    #[test]
    fn imix_interleaves() {
        let v = interleave(&IMIX);
        assert_eq!(v.len(), 12);
        assert_eq!(v.iter().filter(|s| **s == 64).count(), 7);
        assert_eq!(v.iter().filter(|s| **s == 1514).count(), 1);
        // No long runs of one size.
        assert!(v
            .windows(3)
            .all(|w| !(w[0] == w[1] && w[1] == w[2] && w[0] != 64)));
    }

    #[test]
    fn yaml_and_toml_profiles() {
        let yaml = "rate: 1mpps\nstreams:\n  - proto: udp\n    name: dns\n    src: 10.0.0.1-10.0.0.9\n    dport: 53\n    size: 64\n  - proto: tcp\n    dport: 80\n    size: imix\n    weight: 2\n";
        let p = Profile::parse(yaml, false).unwrap();
        assert_eq!(p.streams.len(), 2);
        assert_eq!(p.rate.as_deref(), Some("1mpps"));
        assert_eq!(p.streams[1].weight, 2);
        let toml = "seconds = 2\n[[streams]]\nproto = \"udp\"\ndport = 53\nsize = \"64-128\"\n";
        let p = Profile::parse(toml, true).unwrap();
        assert_eq!(p.seconds, Some(2.0));
        let e = Profile::parse("streams:\n  - dport: 99999\n", false).unwrap_err();
        assert_eq!(e.0, "stream 1: field dport: 99999 is out of range 0-65535");
        let e = Profile::parse("stream: []\n", false).unwrap_err();
        assert!(!e.0.contains('\n'));
        let e = Profile::parse("streams:\n  - src: [1, 2]\n", false).unwrap_err();
        assert!(
            e.0.starts_with("stream 1: field src: expected one value"),
            "{e}"
        );
        let e = Profile::parse("seconds = -1\n[[streams]]\n", true).unwrap_err();
        assert!(e.0.starts_with("seconds:"), "{e}");
        let e = Profile::parse("streams: 5\n", false).unwrap_err();
        assert!(e.0.starts_with("streams:"), "{e}");
    }
}
