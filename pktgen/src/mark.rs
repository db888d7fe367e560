//! The measurement mark: the last 20 bytes of a marked frame.
//!
//! ```text
//! 0      4        6                12                      20
//! | SLPG | stream | sequence (48)  | TX time, ns (64)      |
//! ```
//!
//! At the end rather than after the headers, so the receiver finds it
//! without parsing: a router that strips a VLAN tag or a tunnel that adds
//! a header moves the front of the frame, not its end. All fields are big
//! endian.

/// "SLPG".
pub const SIGNATURE: u32 = 0x534c_5047;
/// Bytes of the mark.
pub const LEN: usize = 20;

/// What a mark says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mark {
    pub stream: u16,
    pub seq: u64,
    pub tx_ns: u64,
}

/// Writes a mark into `d` (exactly [`LEN`] bytes) and returns the sum of
/// its sequence and time as 16-bit words (the signature and stream id are
/// the caller's constant part of the checksum update).
#[inline(always)]
pub fn write(d: &mut [u8], stream: u16, seq: u64, tx_ns: u64) -> u32 {
    let d: &mut [u8; LEN] = d.try_into().expect("a mark is 20 bytes");
    d[0..4].copy_from_slice(&SIGNATURE.to_be_bytes());
    d[4..6].copy_from_slice(&stream.to_be_bytes());
    d[6..12].copy_from_slice(&(seq << 16).to_be_bytes()[..6]);
    d[12..20].copy_from_slice(&tx_ns.to_be_bytes());
    let s = seq & 0xffff_ffff_ffff;
    let words = (s >> 32) + ((s >> 16) & 0xffff) + (s & 0xffff);
    let t = tx_ns;
    let words = words + (t >> 48) + ((t >> 32) & 0xffff) + ((t >> 16) & 0xffff) + (t & 0xffff);
    words as u32
}

/// Reads the mark at the end of `frame`, if it has one.
#[inline(always)]
pub fn read(frame: &[u8]) -> Option<Mark> {
    let at = frame.len().checked_sub(LEN)?;
    let d: &[u8; LEN] = frame[at..].try_into().ok()?;
    if u32::from_be_bytes([d[0], d[1], d[2], d[3]]) != SIGNATURE {
        return None;
    }
    let mut seq = [0u8; 8];
    seq[2..].copy_from_slice(&d[6..12]);
    Some(Mark {
        stream: u16::from_be_bytes([d[4], d[5]]),
        seq: u64::from_be_bytes(seq),
        tx_ns: u64::from_be_bytes(d[12..20].try_into().expect("8 bytes")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_word_sum() {
        let mut d = [0u8; LEN];
        let sum = write(&mut d, 7, 0x1234_5678_9abc, 0x0102_0304_0506_0708);
        assert_eq!(
            read(&d),
            Some(Mark {
                stream: 7,
                seq: 0x1234_5678_9abc,
                tx_ns: 0x0102_0304_0506_0708
            })
        );
        let all: u32 = d
            .chunks(2)
            .map(|w| u16::from_be_bytes([w[0], w[1]]) as u32)
            .sum();
        assert_eq!(all, sum + (SIGNATURE >> 16) + (SIGNATURE & 0xffff) + 7);
        assert_eq!(read(&d[1..]), None);
        assert_eq!(read(&[0u8; 5]), None);
    }
}
