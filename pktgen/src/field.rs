//! Field variation: how a header field changes from one packet to the next.
//!
//! A [`Variation`] is parsed once from text (the same syntax on the command
//! line and in profiles) and becomes a [`Gen`], the per-packet state the
//! generator steps. Values are `u32`: ports, VLAN IDs, IPv4 addresses, the
//! low 32 bits of IPv6 addresses, VNIs and frame sizes all fit.
//!
//! Syntax (`A`, `B` are values of the field's kind):
//!
//! | text | meaning |
//! |---|---|
//! | `A` | fixed |
//! | `A-B` | a sequence from A to B, then again from A |
//! | `A-B+S` | the same sequence in steps of S |
//! | `P/L` | (addresses) every address of the prefix, in sequence |
//! | `rand:A-B`, `rand:P/L` | uniformly random in the range |
//! | `A,B,C` | the list, in turn |

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How a field's value changes per packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Variation {
    Fixed(u32),
    /// `lo`, `lo + step`, ... up to `hi`, then `lo` again.
    Seq {
        lo: u32,
        hi: u32,
        step: u32,
    },
    /// Uniform in `lo..=hi`.
    Random {
        lo: u32,
        hi: u32,
    },
    /// The values in turn.
    List(Vec<u32>),
}

impl Variation {
    /// The value the template carries (the first one sent).
    pub fn first(&self) -> u32 {
        match self {
            Variation::Fixed(v) => *v,
            Variation::Seq { lo, .. } | Variation::Random { lo, .. } => *lo,
            Variation::List(v) => v[0],
        }
    }

    pub fn is_fixed(&self) -> bool {
        matches!(self, Variation::Fixed(_))
    }

    /// The largest value it can take.
    pub fn max(&self) -> u32 {
        match self {
            Variation::Fixed(v) => *v,
            Variation::Seq { hi, .. } | Variation::Random { hi, .. } => *hi,
            Variation::List(v) => *v.iter().max().expect("lists are never empty"),
        }
    }

    /// The smallest value it can take.
    pub fn min(&self) -> u32 {
        match self {
            Variation::Fixed(v) => *v,
            Variation::Seq { lo, .. } | Variation::Random { lo, .. } => *lo,
            Variation::List(v) => *v.iter().min().expect("lists are never empty"),
        }
    }

    /// The per-packet state.
    pub fn gen(&self) -> Gen {
        match self {
            Variation::Fixed(v) => Gen::List {
                values: vec![*v].into_boxed_slice(),
                index: 0,
            },
            Variation::Seq { lo, hi, step } => Gen::Seq {
                lo: *lo,
                span: (*hi as u64) - (*lo as u64) + 1,
                step: *step as u64,
                cur: 0,
            },
            Variation::Random { lo, hi } => Gen::Random {
                lo: *lo,
                span: (*hi as u64) - (*lo as u64) + 1,
            },
            Variation::List(v) => Gen::List {
                values: v.clone().into_boxed_slice(),
                index: 0,
            },
        }
    }
}

/// The stepping state of one varying field.
#[derive(Debug, Clone)]
pub enum Gen {
    Seq {
        lo: u32,
        span: u64,
        step: u64,
        cur: u64,
    },
    Random {
        lo: u32,
        span: u64,
    },
    List {
        values: Box<[u32]>,
        index: usize,
    },
}

impl Gen {
    #[inline(always)]
    pub fn next(&mut self, rng: &mut Rng) -> u32 {
        match self {
            Gen::Seq {
                lo,
                span,
                step,
                cur,
            } => {
                let v = *lo as u64 + *cur;
                *cur += *step;
                if *cur >= *span {
                    *cur -= *span;
                }
                v as u32
            }
            Gen::Random { lo, span } => {
                // Lemire's multiply-shift: uniform enough for traffic, no division.
                (*lo as u64 + ((rng.next_u32() as u64 * *span) >> 32)) as u32
            }
            Gen::List { values, index } => {
                let v = values[*index];
                *index += 1;
                if *index == values.len() {
                    *index = 0;
                }
                v
            }
        }
    }
}

impl Gen {
    /// Fills `out` with the next values: one match per burst, not per value.
    #[inline]
    pub fn fill(&mut self, rng: &mut Rng, out: &mut [u32]) {
        match self {
            Gen::Seq {
                lo,
                span,
                step,
                cur,
            } => {
                let (lo, span, step) = (*lo as u64, *span, *step);
                let mut c = *cur;
                for v in out.iter_mut() {
                    *v = (lo + c) as u32;
                    c += step;
                    if c >= span {
                        c -= span;
                    }
                }
                *cur = c;
            }
            Gen::Random { lo, span } => {
                for v in out.iter_mut() {
                    *v = (*lo as u64 + ((rng.next_u32() as u64 * *span) >> 32)) as u32;
                }
            }
            Gen::List { values, index } => {
                for v in out.iter_mut() {
                    *v = values[*index];
                    *index += 1;
                    if *index == values.len() {
                        *index = 0;
                    }
                }
            }
        }
    }
}

/// wyrand: one multiply per number, good statistical quality, no state
/// beyond a `u64`.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    #[inline(always)]
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0xa076_1d64_78bd_642f);
        let t = (self.0 as u128).wrapping_mul((self.0 ^ 0xe703_7ed1_a0b4_28db) as u128);
        ((t >> 64) ^ t) as u64
    }

    #[inline(always)]
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in [0, 1).
    #[inline]
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// What kind of value a field holds: decides how text is read and what is
/// in range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An integer in `min..=max`.
    Int {
        min: u32,
        max: u32,
    },
    Ipv4,
    /// An IPv6 address; only its low 32 bits may vary, the rest is `base`.
    Ipv6,
}

/// A parsed address field: the fixed high part (IPv6) and the variation of
/// the low 32 bits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrField {
    /// The address the template carries.
    pub base: IpAddr,
    pub var: Variation,
}

impl AddrField {
    pub fn is_v6(&self) -> bool {
        self.base.is_ipv6()
    }
}

fn parse_int(s: &str, min: u32, max: u32) -> Result<u32, String> {
    let v: u64 = if let Some(hex) = s.strip_prefix("0x") {
        u64::from_str_radix(hex, 16).map_err(|_| format!("expected a number, got {s:?}"))?
    } else {
        s.parse()
            .map_err(|_| format!("expected a number, got {s:?}"))?
    };
    if v < min as u64 || v > max as u64 {
        return Err(format!("{v} is out of range {min}-{max}"));
    }
    Ok(v as u32)
}

/// Parses a variation of integers in `min..=max`.
pub fn parse_int_variation(text: &str, min: u32, max: u32) -> Result<Variation, String> {
    parse_variation(text, |s| parse_int(s, min, max), |_| None).map(|(v, _)| v)
}

/// Parses a variation of addresses (both ends in one family; for IPv6 the
/// ends must share their first 96 bits).
pub fn parse_addr_variation(text: &str) -> Result<AddrField, String> {
    let mut family: Option<IpAddr> = None;
    let mut high: Option<u128> = None;
    let mut err: Option<String> = None;
    let mut one = |s: &str| -> Result<u32, String> {
        let a: IpAddr = s
            .parse()
            .map_err(|_| format!("expected an IPv4 or IPv6 address, got {s:?}"))?;
        match (&family, a) {
            (Some(IpAddr::V4(_)), IpAddr::V6(_)) | (Some(IpAddr::V6(_)), IpAddr::V4(_)) => {
                return Err(format!("{s} mixes IPv4 and IPv6"));
            }
            _ => {}
        }
        if family.is_none() {
            family = Some(a);
        }
        Ok(match a {
            IpAddr::V4(v) => u32::from(v),
            IpAddr::V6(v) => {
                let x = u128::from(v);
                let h = x >> 32;
                match high {
                    None => high = Some(h),
                    Some(prev) if prev != h => {
                        err = Some(format!(
                            "IPv6 values may differ only in their last 32 bits ({s} does not share the first 96 bits)"
                        ));
                    }
                    _ => {}
                }
                x as u32
            }
        })
    };
    let (var, _) = parse_variation(text, &mut one, Some)?;
    if let Some(e) = err {
        return Err(e);
    }
    let base = match family.expect("a parsed variation has a value") {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(var.first())),
        IpAddr::V6(_) => {
            let h = high.expect("set with the family");
            IpAddr::V6(Ipv6Addr::from(h << 32 | var.first() as u128))
        }
    };
    Ok(AddrField { base, var })
}

/// The common grammar. `one` parses a single value; `cidr` is given the text
/// of a `P/L` form and says whether prefixes are allowed.
fn parse_variation<'a, F>(
    text: &'a str,
    mut one: F,
    cidr: impl Fn(&'a str) -> Option<&'a str>,
) -> Result<(Variation, ()), String>
where
    F: FnMut(&str) -> Result<u32, String>,
{
    let text = text.trim();
    if text.is_empty() {
        return Err("empty value".into());
    }
    let (random, body) = match text
        .strip_prefix("rand:")
        .or_else(|| text.strip_prefix("random:"))
    {
        Some(b) => (true, b),
        None => (false, text),
    };
    if body.contains(',') {
        if random {
            return Err("rand: takes a range, not a list".into());
        }
        let values = body
            .split(',')
            .map(|s| one(s.trim()))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok((Variation::List(values), ()));
    }
    let (lo, hi, step) = if let Some((a, b)) = body.split_once('-') {
        let (b, step) = match b.split_once('+') {
            Some((b, s)) => (b, Some(parse_int(s.trim(), 1, u32::MAX)?)),
            None => (b, None),
        };
        let lo = one(a.trim())?;
        let hi = one(b.trim())?;
        if hi < lo {
            return Err(format!("range {body:?} ends below its start"));
        }
        (lo, hi, step)
    } else if let Some((p, l)) = body.split_once('/') {
        if cidr(body).is_none() {
            return Err(format!("{body:?}: a prefix is not a value of this field"));
        }
        let start = one(p.trim())?;
        let len = parse_int(l.trim(), 0, 128)?;
        // The prefix length counts from the address's top bit; only the low
        // 32 bits vary, so an IPv6 prefix must be /96 or longer.
        let is_v6 = p.contains(':');
        let host_bits = if is_v6 {
            if len < 96 {
                return Err(format!(
                    "{body}: IPv6 prefixes must be /96 or longer (only the last 32 bits vary)"
                ));
            }
            128 - len
        } else {
            if len > 32 {
                return Err(format!("{body}: an IPv4 prefix is at most /32"));
            }
            32 - len
        };
        let mask = if host_bits >= 32 {
            0
        } else {
            !0u32 << host_bits
        };
        let lo = start & mask;
        let hi = lo | !mask;
        (lo, hi, None)
    } else {
        if random {
            return Err("rand: takes a range A-B".into());
        }
        return Ok((Variation::Fixed(one(body)?), ()));
    };
    if random {
        if step.is_some() {
            return Err("rand: takes no step".into());
        }
        return Ok((Variation::Random { lo, hi }, ()));
    }
    if lo == hi {
        return Ok((Variation::Fixed(lo), ()));
    }
    let step = step.unwrap_or(1);
    if step as u64 > hi as u64 - lo as u64 {
        return Err(format!("step {step} is larger than the range {body:?}"));
    }
    Ok((Variation::Seq { lo, hi, step }, ()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(text: &str) -> Variation {
        parse_int_variation(text, 0, 65535).unwrap()
    }

    #[test]
    fn forms() {
        assert_eq!(ints("53"), Variation::Fixed(53));
        assert_eq!(
            ints("1000-2000"),
            Variation::Seq {
                lo: 1000,
                hi: 2000,
                step: 1
            }
        );
        assert_eq!(
            ints("1000-2000+10"),
            Variation::Seq {
                lo: 1000,
                hi: 2000,
                step: 10
            }
        );
        assert_eq!(ints("rand:1-9"), Variation::Random { lo: 1, hi: 9 });
        assert_eq!(ints("1,5,9"), Variation::List(vec![1, 5, 9]));
        assert!(parse_int_variation("70000", 0, 65535)
            .unwrap_err()
            .contains("out of range"));
        assert!(parse_int_variation("9-1", 0, 65535).is_err());
        assert!(parse_int_variation("x", 0, 65535).is_err());
        assert!(parse_int_variation("rand:5", 0, 65535).is_err());
        assert!(parse_int_variation("", 0, 65535).is_err());
    }

    #[test]
    fn addresses() {
        let a = parse_addr_variation("10.0.0.1-10.0.0.255").unwrap();
        assert_eq!(a.base, "10.0.0.1".parse::<IpAddr>().unwrap());
        assert_eq!(
            a.var,
            Variation::Seq {
                lo: 0x0a00_0001,
                hi: 0x0a00_00ff,
                step: 1
            }
        );
        let p = parse_addr_variation("rand:10.1.0.0/16").unwrap();
        assert_eq!(
            p.var,
            Variation::Random {
                lo: 0x0a01_0000,
                hi: 0x0a01_ffff
            }
        );
        let v6 = parse_addr_variation("2001:db8::1-2001:db8::ff").unwrap();
        assert!(v6.is_v6());
        assert_eq!(v6.var.max(), 0xff);
        assert!(parse_addr_variation("2001:db8::1-2001:db9::1")
            .unwrap_err()
            .contains("96"));
        assert!(parse_addr_variation("10.0.0.1-2001:db8::1")
            .unwrap_err()
            .contains("mixes"));
        assert!(parse_addr_variation("10.0.0.300").is_err());
    }

    #[test]
    fn gens_step_and_wrap() {
        let mut rng = Rng::new(1);
        let mut g = ints("10-14+2").gen();
        let v: Vec<u32> = (0..6).map(|_| g.next(&mut rng)).collect();
        assert_eq!(v, [10, 12, 14, 11, 13, 10]);
        let mut g = ints("3,4").gen();
        let v: Vec<u32> = (0..3).map(|_| g.next(&mut rng)).collect();
        assert_eq!(v, [3, 4, 3]);
        let mut g = ints("rand:100-199").gen();
        let mut seen = [false; 100];
        for _ in 0..10_000 {
            let v = g.next(&mut rng);
            assert!((100..=199).contains(&v));
            seen[(v - 100) as usize] = true;
        }
        assert!(seen.iter().all(|s| *s));
        // The full 32-bit range does not overflow.
        let mut g = Variation::Seq {
            lo: 0,
            hi: u32::MAX,
            step: 1,
        }
        .gen();
        assert_eq!(g.next(&mut rng), 0);
    }
}
