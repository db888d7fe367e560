//! The Internet checksum (RFC 1071), its incremental update (RFC 1624), and
//! the pseudo-headers of TCP, UDP and ICMPv6 for both IP families.
//!
//! Sums are carried in a `u32` accumulator and folded at the end; [`combine`]
//! joins partial sums, so a header and a payload can be summed separately.

/// Adds `data` to a running one's-complement sum (not yet folded).
///
/// Bytes are taken as big-endian 16-bit words; an odd trailing byte is padded
/// with a zero byte, as RFC 1071 specifies.
#[inline]
pub fn sum(data: &[u8], initial: u32) -> u32 {
    // Sum 32-bit big-endian words into a u64 so carries cannot be lost, then
    // fold. Adding 32-bit halves is equivalent to adding the 16-bit words.
    let mut acc = initial as u64;
    let mut chunks = data.chunks_exact(4);
    for c in &mut chunks {
        acc += u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u64;
    }
    let rest = chunks.remainder();
    let mut i = 0;
    while i + 1 < rest.len() {
        acc += u16::from_be_bytes([rest[i], rest[i + 1]]) as u64;
        i += 2;
    }
    if i < rest.len() {
        acc += (rest[i] as u64) << 8;
    }
    fold64(acc)
}

#[inline]
fn fold64(mut acc: u64) -> u32 {
    while acc >> 32 != 0 {
        acc = (acc & 0xffff_ffff) + (acc >> 32);
    }
    acc as u32
}

/// Folds a running sum into 16 bits (without complementing it).
#[inline]
pub fn fold(mut acc: u32) -> u16 {
    while acc >> 16 != 0 {
        acc = (acc & 0xffff) + (acc >> 16);
    }
    acc as u16
}

/// Joins two running sums.
#[inline]
pub fn combine(a: u32, b: u32) -> u32 {
    fold64(a as u64 + b as u64)
}

/// The checksum field value for `data`: the complement of its folded sum.
#[inline]
pub fn checksum(data: &[u8]) -> u16 {
    !fold(sum(data, 0))
}

/// Whether `data`, which includes its checksum field, verifies.
#[inline]
pub fn verify(data: &[u8]) -> bool {
    fold(sum(data, 0)) == 0xffff
}

/// Whether a 20-byte IPv4 header (no options) verifies: five 32-bit words
/// summed without loops, the router's per-packet check.
#[inline(always)]
pub fn verify_ipv4_header_20(h: &[u8; 20]) -> bool {
    let w = |i: usize| u32::from_be_bytes([h[i], h[i + 1], h[i + 2], h[i + 3]]) as u64;
    let acc = w(0) + w(4) + w(8) + w(12) + w(16);
    // At most 5 * (2^32 - 1): two folds to 32 bits, two to 16 suffice.
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    let acc = (acc & 0xffff) + (acc >> 16);
    let acc = (acc & 0xffff) + (acc >> 16);
    acc as u16 == 0xffff
}

/// RFC 1624 eqn. 3: the new checksum after one 16-bit word changed from
/// `old` to `new`: `HC' = ~(~HC + ~m + m')`.
#[inline]
pub fn update16(check: u16, old: u16, new: u16) -> u16 {
    let acc = (!check as u32) + (!old as u32) + (new as u32);
    !fold(acc)
}

/// RFC 1624 update for a 32-bit field (an IPv4 address, say).
#[inline]
pub fn update32(check: u16, old: u32, new: u32) -> u16 {
    let acc = (!check as u32)
        + (!(old >> 16) as u16 as u32)
        + (!(old as u16) as u32)
        + (new >> 16)
        + (new & 0xffff);
    !fold(acc)
}

/// RFC 1624 update for a 128-bit field (an IPv6 address).
#[inline]
pub fn update128(check: u16, old: u128, new: u128) -> u16 {
    let mut acc = !check as u32;
    for i in 0..8 {
        let shift = i * 16;
        acc += !((old >> shift) as u16) as u32;
        acc += ((new >> shift) as u16) as u32;
    }
    !fold(acc)
}

/// The change in a one's-complement sum when a 32-bit field goes from
/// `old` to `new` (`~m + m'` over its two words), unfolded: add several
/// with [`apply_delta`] to update a checksum once for many fields.
#[inline(always)]
pub fn delta32(old: u32, new: u32) -> u32 {
    (!(old >> 16) as u16 as u32) + (!(old as u16) as u32) + (new >> 16) + (new & 0xffff)
}

/// [`delta32`] for a 16-bit field.
#[inline(always)]
pub fn delta16(old: u16, new: u16) -> u32 {
    (!old as u32) + new as u32
}

/// [`delta32`] for a 128-bit field, folded to 32 bits.
#[inline(always)]
pub fn delta128(old: u128, new: u128) -> u32 {
    let mut acc = 0u64;
    for i in 0..8 {
        let shift = i * 16;
        acc += !((old >> shift) as u16) as u64;
        acc += ((new >> shift) as u16) as u64;
    }
    fold64_to_32(acc)
}

#[inline(always)]
fn fold64_to_32(acc: u64) -> u32 {
    let acc = (acc & 0xffff_ffff) + (acc >> 32);
    ((acc & 0xffff_ffff) + (acc >> 32)) as u32
}

/// RFC 1624 eqn. 3 for a sum of field changes (each from [`delta16`],
/// [`delta32`] or [`delta128`], added as `u64` so nothing overflows).
#[inline(always)]
pub fn apply_delta(check: u16, delta: u64) -> u16 {
    let acc = fold64_to_32(!check as u64 + delta);
    !fold(acc)
}

/// The running sum of the IPv4 pseudo-header (RFC 793 / RFC 768).
#[inline]
pub fn pseudo_header_v4(src: [u8; 4], dst: [u8; 4], protocol: u8, length: u16) -> u32 {
    let mut acc = 0u32;
    acc += u16::from_be_bytes([src[0], src[1]]) as u32;
    acc += u16::from_be_bytes([src[2], src[3]]) as u32;
    acc += u16::from_be_bytes([dst[0], dst[1]]) as u32;
    acc += u16::from_be_bytes([dst[2], dst[3]]) as u32;
    acc += protocol as u32;
    acc += length as u32;
    acc
}

/// The running sum of the IPv6 pseudo-header (RFC 8200 §8.1).
#[inline]
pub fn pseudo_header_v6(src: [u8; 16], dst: [u8; 16], next_header: u8, length: u32) -> u32 {
    let acc = sum(&src, 0);
    let acc = sum(&dst, acc);
    combine(acc, (length >> 16) + (length & 0xffff) + next_header as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn combined_deltas_match_field_by_field_updates() {
        let mut x = 0x1234_5678_9abc_def0u64;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..10_000 {
            let c = next() as u16;
            let (a, b) = (next() as u32, next() as u32);
            let (p, q) = (next() as u16, next() as u16);
            let (v, w) = (
                (next() as u128) << 64 | next() as u128,
                (next() as u128) << 64 | next() as u128,
            );
            let one_by_one = update128(update16(update32(c, a, b), p, q), v, w);
            let combined = apply_delta(
                c,
                delta32(a, b) as u64 + delta16(p, q) as u64 + delta128(v, w) as u64,
            );
            // 0 and 0xffff are the same one's-complement value.
            let norm = |c: u16| if c == 0xffff { 0 } else { c };
            assert_eq!(norm(one_by_one), norm(combined));
        }
    }

    // The IPv4 header from RFC 1071's companion examples (Wikipedia's worked
    // example): checksum 0xb861.
    const IPV4_HEADER: [u8; 20] = [
        0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00, 0xc0, 0xa8, 0x00,
        0x01, 0xc0, 0xa8, 0x00, 0xc7,
    ];

    #[test]
    fn golden_ipv4_header() {
        assert_eq!(checksum(&IPV4_HEADER), 0xb861);
        let mut h = IPV4_HEADER;
        h[10..12].copy_from_slice(&0xb861u16.to_be_bytes());
        assert!(verify(&h));
        h[8] = 0x3f; // TTL change without update
        assert!(!verify(&h));
    }

    #[test]
    fn twenty_byte_fast_path_agrees_with_the_general_sum() {
        let mut h = IPV4_HEADER;
        assert!(!verify_ipv4_header_20(&h));
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        assert!(verify_ipv4_header_20(&h));
        let mut x = 0x1234_5678u32;
        for _ in 0..10_000 {
            for b in h.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *b = x as u8;
            }
            assert_eq!(verify_ipv4_header_20(&h), verify(&h), "{h:02x?}");
            h[10] = 0;
            h[11] = 0;
            let c = checksum(&h);
            h[10..12].copy_from_slice(&c.to_be_bytes());
            assert!(verify_ipv4_header_20(&h));
        }
    }

    #[test]
    fn odd_length_pads_with_zero() {
        assert_eq!(sum(&[0x01], 0), 0x0100);
        assert_eq!(checksum(&[0x01, 0x02, 0x03]), !(0x0102u16 + 0x0300));
    }

    #[test]
    fn empty_sums_to_zero() {
        assert_eq!(sum(&[], 0), 0);
        assert_eq!(checksum(&[]), 0xffff);
    }

    #[test]
    fn split_sums_combine() {
        let data: Vec<u8> = (0..=255u8).cycle().take(1501).collect();
        for cut in [0, 2, 4, 8, 100, 1500] {
            let a = sum(&data[..cut], 0);
            let b = sum(&data[cut..], 0);
            assert_eq!(fold(combine(a, b)), fold(sum(&data, 0)), "cut {cut}");
        }
    }

    #[test]
    fn incremental_ttl_decrement_matches_full() {
        let mut h = IPV4_HEADER;
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        for _ in 0..64 {
            let old = u16::from_be_bytes([h[8], h[9]]);
            h[8] -= 1;
            let new = u16::from_be_bytes([h[8], h[9]]);
            let check = update16(u16::from_be_bytes([h[10], h[11]]), old, new);
            h[10..12].copy_from_slice(&check.to_be_bytes());
            assert!(verify(&h));
            let mut z = h;
            z[10] = 0;
            z[11] = 0;
            assert_eq!(checksum(&z), check);
        }
    }

    #[test]
    fn incremental_address_rewrite_matches_full() {
        let mut h = IPV4_HEADER;
        let c = checksum(&h);
        h[10..12].copy_from_slice(&c.to_be_bytes());
        for new in [0u32, 0xffff_ffff, 0x0a00_0001, 0xc0a8_00c7, 0x7f00_0001] {
            let old = u32::from_be_bytes([h[16], h[17], h[18], h[19]]);
            h[16..20].copy_from_slice(&new.to_be_bytes());
            let check = update32(u16::from_be_bytes([h[10], h[11]]), old, new);
            h[10..12].copy_from_slice(&check.to_be_bytes());
            assert!(verify(&h), "after rewrite to {new:#x}");
        }
    }

    #[test]
    fn incremental_v6_address_rewrite_matches_full() {
        // A pseudo-header-covered sum over two addresses and a payload word.
        let mut buf = [0u8; 34];
        buf[..16].copy_from_slice(&0x2001_0db8_0000_0000_0000_0000_0000_0001u128.to_be_bytes());
        buf[16..32].copy_from_slice(&0xfe80_0000_0000_0000_0000_0000_0000_00ffu128.to_be_bytes());
        let c = checksum(&buf[..32]);
        buf[32..34].copy_from_slice(&c.to_be_bytes());
        assert!(verify(&buf));
        let old = u128::from_be_bytes(buf[..16].try_into().unwrap());
        let new = 0x2001_0db8_ffff_0000_1234_0000_0000_0002u128;
        buf[..16].copy_from_slice(&new.to_be_bytes());
        let check = update128(u16::from_be_bytes([buf[32], buf[33]]), old, new);
        buf[32..34].copy_from_slice(&check.to_be_bytes());
        assert!(verify(&buf));
    }

    #[test]
    fn pseudo_headers() {
        // v4: 192.168.0.1 -> 192.168.0.199, UDP, length 8
        let p = pseudo_header_v4([192, 168, 0, 1], [192, 168, 0, 199], 17, 8);
        assert_eq!(p, 0xc0a8 + 0x0001 + 0xc0a8 + 0x00c7 + 17 + 8);
        // v6: the sum equals summing the explicit 40-byte pseudo-header.
        let src = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        let dst = [0xfe, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2];
        let mut explicit = Vec::new();
        explicit.extend_from_slice(&src);
        explicit.extend_from_slice(&dst);
        explicit.extend_from_slice(&70000u32.to_be_bytes());
        explicit.extend_from_slice(&[0, 0, 0, 58]);
        assert_eq!(
            fold(pseudo_header_v6(src, dst, 58, 70000)),
            fold(sum(&explicit, 0))
        );
    }
}
