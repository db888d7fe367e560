//! Receive-side scaling in software: the Toeplitz hash of the Microsoft RSS
//! specification, the input it is computed over, and the redirection table
//! that turns a hash into a receive queue.
//!
//! Reads: the Ethernet, VLAN, IP and L4 port bytes of a frame (parsed here
//! directly, not through `wire`, so that backends depend on nothing above
//! them). Sets nothing; backends store the hash in `Packet::rss_hash` and the
//! chosen queue in `Packet::rx_queue`.
//!
//! The hash input follows the NIC convention: source address, destination
//! address, then source and destination port for TCP, UDP and SCTP. A frame
//! that is an IP fragment (any fragment, the first included) is hashed on its
//! addresses only, as NICs and Linux's flow dissector do: the trailing
//! fragments carry no ports, and hashing the first one with ports would send
//! the pieces of one datagram to different queues.
//!
//! With [`SYMMETRIC_KEY`] (0x6d5a repeated) the key has a 16-bit period, and
//! every field of the input sits at a multiple of 16 bits, so swapping source
//! and destination XORs the same key windows in another order: both directions
//! of a flow hash alike and reach the same worker.

/// The key of the Microsoft RSS verification suite, which most NICs use as
/// their default.
pub const MICROSOFT_KEY: [u8; RSS_KEY_LEN] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// A key under which hash(a → b) == hash(b → a) (see the module docs).
pub const SYMMETRIC_KEY: [u8; RSS_KEY_LEN] = {
    let mut key = [0u8; RSS_KEY_LEN];
    let mut i = 0;
    while i < RSS_KEY_LEN {
        key[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    key
};

/// Bytes in an RSS key.
pub const RSS_KEY_LEN: usize = 40;
/// The longest hash input: two IPv6 addresses and two ports.
pub const RSS_INPUT_MAX: usize = 36;
/// Entries in the redirection table (as on Intel 82599-class NICs).
pub const RETA_SIZE: usize = 128;

/// A Toeplitz hasher for one key.
///
/// Hashing is one table lookup and XOR per input byte: entry `[i][b]` is the
/// XOR of the key windows that the set bits of byte value `b` select at input
/// position `i`. The tables take 36 KiB, so a port shares one hasher among
/// its queues.
#[derive(Clone)]
pub struct Toeplitz {
    table: Box<[[u32; 256]]>,
    key: [u8; RSS_KEY_LEN],
}

impl Toeplitz {
    pub fn new(key: &[u8; RSS_KEY_LEN]) -> Toeplitz {
        let mut table = vec![[0u32; 256]; RSS_INPUT_MAX].into_boxed_slice();
        for (i, row) in table.iter_mut().enumerate() {
            let windows: [u32; 8] = core::array::from_fn(|bit| key_window(key, 8 * i + bit));
            for (value, entry) in row.iter_mut().enumerate() {
                // Bit 0 of `windows` is the byte's most significant bit.
                *entry = (0..8)
                    .filter(|bit| value & (0x80 >> bit) != 0)
                    .fold(0, |h, bit| h ^ windows[bit]);
            }
        }
        Toeplitz { table, key: *key }
    }

    /// The hasher with [`MICROSOFT_KEY`].
    pub fn microsoft() -> Toeplitz {
        Toeplitz::new(&MICROSOFT_KEY)
    }

    /// The hasher with [`SYMMETRIC_KEY`].
    pub fn symmetric() -> Toeplitz {
        Toeplitz::new(&SYMMETRIC_KEY)
    }

    pub fn key(&self) -> &[u8; RSS_KEY_LEN] {
        &self.key
    }

    /// The hash of `input`. Bytes past [`RSS_INPUT_MAX`] are ignored.
    #[inline]
    pub fn hash(&self, input: &[u8]) -> u32 {
        debug_assert!(input.len() <= RSS_INPUT_MAX);
        self.table
            .iter()
            .zip(input)
            .fold(0, |h, (row, &byte)| h ^ row[byte as usize])
    }

    /// The hash of a frame's flow ([`flow_input_from_frame`]); `None` for a
    /// frame that is not IP.
    #[inline]
    pub fn hash_frame(&self, frame: &[u8]) -> Option<u32> {
        let (input, len) = flow_input_from_frame(frame)?;
        Some(self.hash(&input[..len]))
    }
}

impl core::fmt::Debug for Toeplitz {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Toeplitz").field("key", &self.key).finish()
    }
}

/// The 32 key bits starting at bit `bit` (bit 0 is the key's first MSB).
fn key_window(key: &[u8; RSS_KEY_LEN], bit: usize) -> u32 {
    let byte = bit / 8;
    let bytes: [u8; 8] = core::array::from_fn(|i| key.get(byte + i).copied().unwrap_or(0));
    ((u64::from_be_bytes(bytes) << (bit % 8)) >> 32) as u32
}

/// Maps hashes to queues as a NIC's redirection table does: the low 7 bits of
/// the hash pick one of 128 entries, filled round-robin with queue numbers.
#[derive(Debug, Clone)]
pub struct Reta {
    entries: [u16; RETA_SIZE],
}

impl Reta {
    /// Spreads the table over `queues` queues (at least one).
    pub fn round_robin(queues: u16) -> Reta {
        let queues = queues.max(1);
        Reta {
            entries: core::array::from_fn(|i| (i % queues as usize) as u16),
        }
    }

    #[inline]
    pub fn queue(&self, hash: u32) -> u16 {
        self.entries[hash as usize % RETA_SIZE]
    }
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_QINQ: u16 = 0x88a8;
const ETHERTYPE_QINQ_OLD: u16 = 0x9100;
const MAX_VLAN_TAGS: usize = 2;

const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_SCTP: u8 = 132;
const IPV6_HOP_BY_HOP: u8 = 0;
const IPV6_ROUTING: u8 = 43;
const IPV6_FRAGMENT: u8 = 44;
const IPV6_AUTH: u8 = 51;
const IPV6_DEST_OPTS: u8 = 60;
/// Extension headers skipped before giving up on finding the ports.
const MAX_IPV6_EXT: usize = 4;

/// The RSS hash input of an Ethernet frame and its length: 12 bytes for
/// IPv4 with ports, 8 without; 36 for IPv6 with ports, 32 without. `None` if
/// the frame is not IPv4 or IPv6 (after up to two VLAN tags) or its IP header
/// is cut short or malformed.
///
/// Ports are included for TCP, UDP and SCTP when the packet is not a fragment
/// and its first four L4 bytes are present. IPv6 hop-by-hop, routing,
/// destination-options, authentication and atomic-fragment headers are
/// skipped (up to four); anything else hashes on the addresses. The
/// destination is always the fixed header's, not a routing header's final
/// address (which the `_EX` hash types of the specification would use).
#[inline]
pub fn flow_input_from_frame(frame: &[u8]) -> Option<([u8; RSS_INPUT_MAX], usize)> {
    let mut offset = 12;
    let mut ethertype = be16(frame, offset)?;
    for _ in 0..MAX_VLAN_TAGS {
        if !matches!(
            ethertype,
            ETHERTYPE_VLAN | ETHERTYPE_QINQ | ETHERTYPE_QINQ_OLD
        ) {
            break;
        }
        offset += 4;
        ethertype = be16(frame, offset)?;
    }
    let ip = frame.get(offset + 2..)?;
    match ethertype {
        ETHERTYPE_IPV4 => ipv4_input(ip),
        ETHERTYPE_IPV6 => ipv6_input(ip),
        _ => None,
    }
}

#[inline]
fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
}

#[inline]
fn ipv4_input(ip: &[u8]) -> Option<([u8; RSS_INPUT_MAX], usize)> {
    if ip.len() < 20 || ip[0] >> 4 != 4 {
        return None;
    }
    let header_len = (ip[0] & 0x0f) as usize * 4;
    if header_len < 20 || ip.len() < header_len {
        return None;
    }
    let mut input = [0u8; RSS_INPUT_MAX];
    input[..8].copy_from_slice(&ip[12..20]);
    // More-fragments flag or a non-zero offset: some fragment of a datagram.
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    let ports = match ip.get(header_len..header_len + 4) {
        Some(ports) if !fragment && carries_ports(ip[9]) => ports,
        _ => return Some((input, 8)),
    };
    input[8..12].copy_from_slice(ports);
    Some((input, 12))
}

#[inline]
fn ipv6_input(ip: &[u8]) -> Option<([u8; RSS_INPUT_MAX], usize)> {
    if ip.len() < 40 || ip[0] >> 4 != 6 {
        return None;
    }
    let mut input = [0u8; RSS_INPUT_MAX];
    input[..32].copy_from_slice(&ip[8..40]);
    let mut next = ip[6];
    let mut offset = 40;
    for _ in 0..MAX_IPV6_EXT {
        if !matches!(
            next,
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS | IPV6_AUTH | IPV6_FRAGMENT
        ) {
            break;
        }
        // Every extension header is at least 8 bytes long.
        let Some(ext) = ip.get(offset..offset + 8) else {
            return Some((input, 32));
        };
        let len = match next {
            IPV6_HOP_BY_HOP | IPV6_ROUTING | IPV6_DEST_OPTS => (ext[1] as usize + 1) * 8,
            IPV6_AUTH => (ext[1] as usize + 2) * 4,
            IPV6_FRAGMENT => {
                // Offset or more-fragments set: a real fragment, no ports.
                if u16::from_be_bytes([ext[2], ext[3]]) & 0xfff9 != 0 {
                    return Some((input, 32));
                }
                8
            }
            _ => unreachable!("checked above"),
        };
        next = ext[0];
        offset += len;
    }
    let ports = match ip.get(offset..offset + 4) {
        Some(ports) if carries_ports(next) => ports,
        _ => return Some((input, 32)),
    };
    input[32..36].copy_from_slice(ports);
    Some((input, 36))
}

#[inline]
fn carries_ports(proto: u8) -> bool {
    matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_SCTP)
}

/// Frames for tests of RSS and of the backends that use it.
#[cfg(test)]
pub(crate) mod test_frames {
    /// Ethernet + optional VLAN tags + IPv4 (20-byte header) + 8 L4 bytes
    /// whose first four are the ports.
    pub fn ipv4(
        src: [u8; 4],
        dst: [u8; 4],
        proto: u8,
        sport: u16,
        dport: u16,
        vlans: &[u16],
    ) -> Vec<u8> {
        let mut f = ethernet(vlans, 0x0800);
        let ip_start = f.len();
        f.extend_from_slice(&[0x45, 0, 0, 28, 0x12, 0x34, 0, 0, 64, proto, 0, 0]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        let total = (f.len() - ip_start + 8) as u16;
        f[ip_start + 2..ip_start + 4].copy_from_slice(&total.to_be_bytes());
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0, 8, 0, 0]);
        f
    }

    /// Ethernet + IPv6 + `ext` (raw extension headers; `next` is the first
    /// header's type) + 8 L4 bytes whose first four are the ports.
    pub fn ipv6(
        src: [u8; 16],
        dst: [u8; 16],
        next: u8,
        ext: &[u8],
        sport: u16,
        dport: u16,
    ) -> Vec<u8> {
        let mut f = ethernet(&[], 0x86dd);
        let payload = (ext.len() + 8) as u16;
        f.extend_from_slice(&[0x60, 0, 0, 0]);
        f.extend_from_slice(&payload.to_be_bytes());
        f.extend_from_slice(&[next, 64]);
        f.extend_from_slice(&src);
        f.extend_from_slice(&dst);
        f.extend_from_slice(ext);
        f.extend_from_slice(&sport.to_be_bytes());
        f.extend_from_slice(&dport.to_be_bytes());
        f.extend_from_slice(&[0, 8, 0, 0]);
        f
    }

    fn ethernet(vlans: &[u16], ethertype: u16) -> Vec<u8> {
        let mut f = vec![0x02, 0, 0, 0, 0, 2, 0x02, 0, 0, 0, 0, 1];
        for (i, vid) in vlans.iter().enumerate() {
            let tpid: u16 = if i + 1 < vlans.len() { 0x88a8 } else { 0x8100 };
            f.extend_from_slice(&tpid.to_be_bytes());
            f.extend_from_slice(&vid.to_be_bytes());
        }
        f.extend_from_slice(&ethertype.to_be_bytes());
        f
    }

    pub fn v6(text: &str) -> [u8; 16] {
        text.parse::<std::net::Ipv6Addr>().unwrap().octets()
    }

    pub fn v4(text: &str) -> [u8; 4] {
        text.parse::<std::net::Ipv4Addr>().unwrap().octets()
    }
}

#[cfg(test)]
mod tests {
    use super::test_frames::{ipv4, ipv6, v4, v6};
    use super::*;

    /// The bit-serial algorithm exactly as the specification states it.
    fn reference_hash(key: &[u8; RSS_KEY_LEN], input: &[u8]) -> u32 {
        let mut result = 0u32;
        for (i, byte) in input.iter().enumerate() {
            for bit in 0..8 {
                if byte & (0x80 >> bit) != 0 {
                    result ^= key_window(key, i * 8 + bit);
                }
            }
        }
        result
    }

    /// IPv4 rows of "Verifying the RSS Hash Calculation" (Microsoft):
    /// source, source port, destination, destination port, IPv4 hash,
    /// IPv4-with-TCP hash.
    const IPV4_ROWS: [(&str, u16, &str, u16, u32, u32); 5] = [
        (
            "66.9.149.187",
            2794,
            "161.142.100.80",
            1766,
            0x323e8fc2,
            0x51ccc178,
        ),
        (
            "199.92.111.2",
            14230,
            "65.69.140.83",
            4739,
            0xd718262a,
            0xc626b0ea,
        ),
        (
            "24.19.198.95",
            12898,
            "12.22.207.184",
            38024,
            0xd2d0a5de,
            0x5c2b394a,
        ),
        (
            "38.27.205.30",
            48228,
            "209.142.163.6",
            2217,
            0x82989176,
            0xafc7327f,
        ),
        (
            "153.39.163.191",
            44251,
            "202.188.127.2",
            1303,
            0x5d1809c5,
            0x10e828a2,
        ),
    ];

    /// IPv6 rows of the same table.
    const IPV6_ROWS: [(&str, u16, &str, u16, u32, u32); 3] = [
        (
            "3ffe:2501:200:1fff::7",
            2794,
            "3ffe:2501:200:3::1",
            1766,
            0x2cc18cd5,
            0x40207d3d,
        ),
        (
            "3ffe:501:8::260:97ff:fe40:efab",
            14230,
            "ff02::1",
            4739,
            0x0f0c461c,
            0xdde51bbf,
        ),
        (
            "3ffe:1900:4545:3:200:f8ff:fe21:67cf",
            44251,
            "fe80::200:f8ff:fe21:67cf",
            38024,
            0x4b61e985,
            0x02d1feef,
        ),
    ];

    #[test]
    fn microsoft_verification_suite_ipv4() {
        let t = Toeplitz::microsoft();
        for (src, sport, dst, dport, ip_hash, tcp_hash) in IPV4_ROWS {
            let mut input = Vec::new();
            input.extend_from_slice(&v4(src));
            input.extend_from_slice(&v4(dst));
            assert_eq!(t.hash(&input), ip_hash, "{src} -> {dst}");
            input.extend_from_slice(&sport.to_be_bytes());
            input.extend_from_slice(&dport.to_be_bytes());
            assert_eq!(t.hash(&input), tcp_hash, "{src}:{sport} -> {dst}:{dport}");
            assert_eq!(reference_hash(&MICROSOFT_KEY, &input), tcp_hash);

            let frame = ipv4(v4(src), v4(dst), PROTO_TCP, sport, dport, &[]);
            assert_eq!(t.hash_frame(&frame), Some(tcp_hash));
            // A protocol without ports hashes on the addresses.
            let frame = ipv4(v4(src), v4(dst), 47, sport, dport, &[]);
            assert_eq!(t.hash_frame(&frame), Some(ip_hash));
        }
    }

    #[test]
    fn microsoft_verification_suite_ipv6() {
        let t = Toeplitz::microsoft();
        for (src, sport, dst, dport, ip_hash, tcp_hash) in IPV6_ROWS {
            let mut input = Vec::new();
            input.extend_from_slice(&v6(src));
            input.extend_from_slice(&v6(dst));
            assert_eq!(t.hash(&input), ip_hash, "{src} -> {dst}");
            input.extend_from_slice(&sport.to_be_bytes());
            input.extend_from_slice(&dport.to_be_bytes());
            assert_eq!(t.hash(&input), tcp_hash, "{src}:{sport} -> {dst}:{dport}");
            assert_eq!(reference_hash(&MICROSOFT_KEY, &input), tcp_hash);

            let frame = ipv6(v6(src), v6(dst), PROTO_TCP, &[], sport, dport);
            assert_eq!(t.hash_frame(&frame), Some(tcp_hash));
            let frame = ipv6(v6(src), v6(dst), 59, &[], sport, dport);
            assert_eq!(t.hash_frame(&frame), Some(ip_hash));
        }
    }

    #[test]
    fn tables_match_the_bit_serial_definition() {
        let t = Toeplitz::symmetric();
        let mut state = 0x1234_5678_9abc_def0u64;
        for len in 0..=RSS_INPUT_MAX {
            let input: Vec<u8> = (0..len)
                .map(|_| {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                })
                .collect();
            assert_eq!(t.hash(&input), reference_hash(&SYMMETRIC_KEY, &input));
        }
    }

    #[test]
    fn symmetric_key_hashes_both_directions_alike() {
        let sym = Toeplitz::symmetric();
        let ms = Toeplitz::microsoft();
        let mut asymmetric = 0;
        for (src, sport, dst, dport, _, _) in IPV4_ROWS {
            let ab = ipv4(v4(src), v4(dst), PROTO_UDP, sport, dport, &[]);
            let ba = ipv4(v4(dst), v4(src), PROTO_UDP, dport, sport, &[]);
            assert_eq!(sym.hash_frame(&ab), sym.hash_frame(&ba));
            asymmetric += usize::from(ms.hash_frame(&ab) != ms.hash_frame(&ba));
        }
        for (src, sport, dst, dport, _, _) in IPV6_ROWS {
            let ab = ipv6(v6(src), v6(dst), PROTO_TCP, &[], sport, dport);
            let ba = ipv6(v6(dst), v6(src), PROTO_TCP, &[], dport, sport);
            assert_eq!(sym.hash_frame(&ab), sym.hash_frame(&ba));
            asymmetric += usize::from(ms.hash_frame(&ab) != ms.hash_frame(&ba));
        }
        // The default key is not symmetric; the test above is not vacuous.
        assert!(asymmetric > 0);
    }

    #[test]
    fn vlan_tags_are_skipped() {
        let t = Toeplitz::microsoft();
        let (src, sport, dst, dport, _, tcp_hash) = IPV4_ROWS[0];
        for vlans in [&[][..], &[100], &[100, 200]] {
            let frame = ipv4(v4(src), v4(dst), PROTO_TCP, sport, dport, vlans);
            assert_eq!(t.hash_frame(&frame), Some(tcp_hash), "{vlans:?}");
        }
        // A third tag is more than the parser looks through.
        let frame = ipv4(v4(src), v4(dst), PROTO_TCP, sport, dport, &[1, 2, 3]);
        assert_eq!(flow_input_from_frame(&frame), None);
    }

    #[test]
    fn ipv4_fragments_and_options() {
        let (src, sport, dst, dport, ip_hash, tcp_hash) = IPV4_ROWS[1];
        let t = Toeplitz::microsoft();
        let frame = ipv4(v4(src), v4(dst), PROTO_SCTP, sport, dport, &[]);
        assert_eq!(t.hash_frame(&frame), Some(tcp_hash));

        // First fragment (more-fragments set) and a later fragment: both on
        // the addresses, so they stay together.
        for flags_offset in [0x2000u16, 0x00b9] {
            let mut f = frame.clone();
            f[14 + 6..14 + 8].copy_from_slice(&flags_offset.to_be_bytes());
            assert_eq!(t.hash_frame(&f), Some(ip_hash), "{flags_offset:#x}");
        }
        // Don't-fragment is not a fragment.
        let mut f = frame.clone();
        f[14 + 6] = 0x40;
        assert_eq!(t.hash_frame(&f), Some(tcp_hash));

        // A 24-byte header with options: the ports move back by 4 bytes.
        let mut f = frame[..14 + 20].to_vec();
        f[14] = 0x46;
        f.extend_from_slice(&[1, 1, 1, 0]);
        f.extend_from_slice(&frame[14 + 20..]);
        assert_eq!(t.hash_frame(&f), Some(tcp_hash));
    }

    #[test]
    fn ipv6_extension_headers() {
        let (src, sport, dst, dport, ip_hash, tcp_hash) = IPV6_ROWS[0];
        let (src, dst) = (v6(src), v6(dst));
        let t = Toeplitz::microsoft();
        // Hop-by-hop (8 bytes) then destination options (16 bytes) then UDP.
        let mut ext = vec![IPV6_DEST_OPTS, 0, 1, 4, 0, 0, 0, 0];
        ext.extend_from_slice(&[PROTO_UDP, 1, 1, 12]);
        ext.extend_from_slice(&[0; 12]);
        let frame = ipv6(src, dst, IPV6_HOP_BY_HOP, &ext, sport, dport);
        assert_eq!(t.hash_frame(&frame), Some(tcp_hash));

        // An atomic fragment header (offset 0, no more fragments) is skipped.
        let atomic = [PROTO_TCP, 0, 0, 0, 0, 0, 0, 1];
        let frame = ipv6(src, dst, IPV6_FRAGMENT, &atomic, sport, dport);
        assert_eq!(t.hash_frame(&frame), Some(tcp_hash));

        // Real fragments hash on the addresses.
        for frag in [
            [PROTO_TCP, 0, 0, 1, 0, 0, 0, 1],
            [PROTO_TCP, 0, 0x05, 0x38, 0, 0, 0, 1],
        ] {
            let frame = ipv6(src, dst, IPV6_FRAGMENT, &frag, sport, dport);
            assert_eq!(t.hash_frame(&frame), Some(ip_hash));
        }

        // ESP hides the ports.
        let frame = ipv6(src, dst, 50, &[], sport, dport);
        assert_eq!(t.hash_frame(&frame), Some(ip_hash));

        // Five extension headers: more than the parser skips.
        let mut ext = Vec::new();
        for _ in 0..4 {
            ext.extend_from_slice(&[IPV6_DEST_OPTS, 0, 1, 4, 0, 0, 0, 0]);
        }
        ext.extend_from_slice(&[PROTO_TCP, 0, 1, 4, 0, 0, 0, 0]);
        let frame = ipv6(src, dst, IPV6_DEST_OPTS, &ext, sport, dport);
        assert_eq!(t.hash_frame(&frame), Some(ip_hash));

        // An extension header that claims more bytes than the frame has.
        let mut frame = ipv6(
            src,
            dst,
            IPV6_HOP_BY_HOP,
            &[PROTO_TCP, 0, 1, 4, 0, 0, 0, 0],
            1,
            2,
        );
        frame[14 + 40 + 1] = 200;
        assert_eq!(t.hash_frame(&frame), Some(ip_hash));
    }

    #[test]
    fn malformed_and_non_ip_frames() {
        let (src, sport, dst, dport, ip_hash, _) = IPV4_ROWS[2];
        let frame = ipv4(v4(src), v4(dst), PROTO_TCP, sport, dport, &[]);
        // Every truncation: never a panic; addresses only once the ports
        // are cut; nothing once the IP header is.
        for len in 0..frame.len() {
            let got = flow_input_from_frame(&frame[..len]);
            match len {
                0..=33 => assert_eq!(got, None, "len {len}"),
                34..=37 => assert_eq!(got.map(|(_, n)| n), Some(8), "len {len}"),
                _ => assert_eq!(got.map(|(_, n)| n), Some(12), "len {len}"),
            }
        }
        let t = Toeplitz::microsoft();
        assert_eq!(t.hash_frame(&frame[..36]), Some(ip_hash));

        let mut bad = frame.clone();
        bad[14] = 0x44; // IHL below 5
        assert_eq!(flow_input_from_frame(&bad), None);
        bad[14] = 0x65; // version 6 under an IPv4 ethertype
        assert_eq!(flow_input_from_frame(&bad), None);
        bad[14] = 0x4f; // 60-byte header in a 28-byte packet
        assert_eq!(flow_input_from_frame(&bad), None);

        let mut arp = frame.clone();
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert_eq!(flow_input_from_frame(&arp), None);

        let v6frame = ipv6(v6("::1"), v6("::2"), PROTO_UDP, &[], 1, 2);
        for len in 0..14 + 40 {
            assert_eq!(flow_input_from_frame(&v6frame[..len]), None, "len {len}");
        }
    }

    #[test]
    fn reta_is_round_robin() {
        let reta = Reta::round_robin(4);
        let queues: Vec<u16> = (0..8).map(|h| reta.queue(h)).collect();
        assert_eq!(queues, [0, 1, 2, 3, 0, 1, 2, 3]);
        assert_eq!(reta.queue(128 + 5), 1);
        assert_eq!(Reta::round_robin(0).queue(77), 0);
        let three = Reta::round_robin(3);
        assert!((0..1000).all(|h| three.queue(h) < 3));
    }
}
