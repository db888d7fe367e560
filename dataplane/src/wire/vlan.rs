//! IEEE 802.1Q VLAN tags, 802.1ad QinQ stacking, and the L2 walk that finds
//! the network-layer header behind them.
//!
//! A tag on the wire is four bytes: the TPID (0x8100, 0x88a8 or 0x9100) in
//! the position of the EtherType, then the TCI. The TPID is read by whoever
//! found the tag (the Ethernet header or the tag before), so a [`Tag`] view
//! starts at the TCI and covers TCI + the EtherType that follows it:
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-----+-+-----------------------+-------------------------------+
//! | PCP |D|          VID          |      inner EtherType/TPID     |
//! +-----+-+-----------------------+-------------------------------+
//! ```
//!
//! VID 0 (priority tag) and 0xfff (reserved) are reported as they are; what
//! to do with them is the classifier's decision, not the parser's.

use core::fmt;

use super::ethernet::{self, EthernetAddress};
use super::{ethertype, Error, Result};

mod field {
    use core::ops::{Range, RangeFrom};

    pub const TCI: Range<usize> = 0..2;
    pub const ETHERTYPE: Range<usize> = 2..4;
    pub const PAYLOAD: RangeFrom<usize> = 4..;
}

/// Length of the part of a tag a [`Tag`] view covers (TCI + EtherType), which
/// is also how far a tag moves the network header.
pub const TAG_LEN: usize = field::PAYLOAD.start;

/// The most tags [`parse_l2`] walks through.
pub const MAX_TAGS: usize = 2;

/// Whether `tpid` introduces a VLAN tag (802.1Q, 802.1ad, or the pre-standard
/// 0x9100 outer tag).
#[inline]
pub const fn is_tpid(tpid: u16) -> bool {
    matches!(
        tpid,
        ethertype::VLAN | ethertype::QINQ | ethertype::QINQ_9100
    )
}

/// A zero-copy view of a VLAN tag's TCI and the EtherType after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Tag<T> {
    /// Wraps `buffer` without checking its length.
    #[inline]
    pub const fn new_unchecked(buffer: T) -> Tag<T> {
        Tag { buffer }
    }

    /// Wraps `buffer` after checking that it holds TCI + EtherType.
    #[inline]
    pub fn new_checked(buffer: T) -> Result<Tag<T>> {
        let tag = Self::new_unchecked(buffer);
        tag.check_len()?;
        Ok(tag)
    }

    /// `Err(Truncated)` if the buffer is shorter than [`TAG_LEN`].
    #[inline]
    pub fn check_len(&self) -> Result<()> {
        if self.buffer.as_ref().len() < TAG_LEN {
            Err(Error::Truncated)
        } else {
            Ok(())
        }
    }

    #[inline]
    pub fn into_inner(self) -> T {
        self.buffer
    }

    /// The whole tag control information word.
    #[inline]
    pub fn tci(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[field::TCI.start], d[field::TCI.start + 1]])
    }

    /// Priority code point (0..=7).
    #[inline]
    pub fn pcp(&self) -> u8 {
        (self.tci() >> 13) as u8
    }

    /// Drop eligible indicator.
    #[inline]
    pub fn dei(&self) -> bool {
        self.tci() & 0x1000 != 0
    }

    /// VLAN identifier (0..=4095).
    #[inline]
    pub fn vid(&self) -> u16 {
        self.tci() & 0x0fff
    }

    /// The EtherType of what follows the tag, or the TPID of another tag.
    #[inline]
    pub fn ethertype(&self) -> u16 {
        let d = self.buffer.as_ref();
        u16::from_be_bytes([d[field::ETHERTYPE.start], d[field::ETHERTYPE.start + 1]])
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> Tag<&'a T> {
    #[inline]
    pub fn payload(&self) -> &'a [u8] {
        &self.buffer.as_ref()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Tag<T> {
    #[inline]
    pub fn set_tci(&mut self, tci: u16) {
        self.buffer.as_mut()[field::TCI].copy_from_slice(&tci.to_be_bytes());
    }

    /// Sets the priority; only the low three bits of `pcp` are used.
    #[inline]
    pub fn set_pcp(&mut self, pcp: u8) {
        let tci = (self.tci() & 0x1fff) | (((pcp & 0x7) as u16) << 13);
        self.set_tci(tci);
    }

    #[inline]
    pub fn set_dei(&mut self, dei: bool) {
        let tci = (self.tci() & !0x1000) | ((dei as u16) << 12);
        self.set_tci(tci);
    }

    /// Sets the VLAN id; only the low twelve bits of `vid` are used.
    #[inline]
    pub fn set_vid(&mut self, vid: u16) {
        let tci = (self.tci() & 0xf000) | (vid & 0x0fff);
        self.set_tci(tci);
    }

    #[inline]
    pub fn set_ethertype(&mut self, ethertype: u16) {
        self.buffer.as_mut()[field::ETHERTYPE].copy_from_slice(&ethertype.to_be_bytes());
    }

    #[inline]
    pub fn payload_mut(&mut self) -> &mut [u8] {
        &mut self.buffer.as_mut()[field::PAYLOAD]
    }
}

impl<T: AsRef<[u8]>> AsRef<[u8]> for Tag<T> {
    #[inline]
    fn as_ref(&self) -> &[u8] {
        self.buffer.as_ref()
    }
}

/// A parsed VLAN tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Repr {
    /// Priority code point; emit uses the low three bits.
    pub pcp: u8,
    pub dei: bool,
    /// VLAN id; emit uses the low twelve bits.
    pub vid: u16,
    /// EtherType (or TPID) of what follows.
    pub ethertype: u16,
}

impl Repr {
    #[inline]
    pub fn parse<T: AsRef<[u8]> + ?Sized>(tag: &Tag<&T>) -> Result<Repr> {
        tag.check_len()?;
        Ok(Repr {
            pcp: tag.pcp(),
            dei: tag.dei(),
            vid: tag.vid(),
            ethertype: tag.ethertype(),
        })
    }

    #[inline]
    pub const fn buffer_len(&self) -> usize {
        TAG_LEN
    }

    /// The TCI this tag encodes.
    #[inline]
    pub const fn tci(&self) -> u16 {
        (((self.pcp & 0x7) as u16) << 13) | ((self.dei as u16) << 12) | (self.vid & 0x0fff)
    }

    #[inline]
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]> + ?Sized>(&self, tag: &mut Tag<&mut T>) {
        tag.set_tci(self.tci());
        tag.set_ethertype(self.ethertype);
    }
}

impl fmt::Display for Repr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VLAN vid {} pcp {}{} type {:#06x}",
            self.vid,
            self.pcp,
            if self.dei { " dei" } else { "" },
            self.ethertype
        )
    }
}

/// What the link layer of a frame says, after walking its VLAN tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct L2Info {
    pub dst: EthernetAddress,
    pub src: EthernetAddress,
    /// VID of the first (outermost) tag, if the frame is tagged.
    pub outer_vid: Option<u16>,
    /// VID of the second tag, if the frame is double-tagged.
    pub inner_vid: Option<u16>,
    /// The EtherType after the last tag.
    pub ethertype: u16,
    /// Offset of the network-layer header from the start of the frame.
    pub l3_offset: usize,
}

/// Walks the Ethernet header and up to [`MAX_TAGS`] VLAN tags (each with
/// TPID 0x8100, 0x88a8 or 0x9100, in any order).
///
/// Errors: `Truncated` if the header or a tag is cut short, `Unsupported`
/// for a third tag.
#[inline]
pub fn parse_l2(frame: &[u8]) -> Result<L2Info> {
    let eth = ethernet::Frame::new_checked(frame)?;
    let mut info = L2Info {
        dst: eth.dst_addr(),
        src: eth.src_addr(),
        outer_vid: None,
        inner_vid: None,
        ethertype: eth.ethertype(),
        l3_offset: ethernet::HEADER_LEN,
    };
    let mut tags = 0;
    while is_tpid(info.ethertype) {
        if tags == MAX_TAGS {
            return Err(Error::Unsupported);
        }
        // l3_offset never exceeds frame.len(): it only grows by TAG_LEN after
        // a tag of that length was found at it.
        let tag = Tag::new_checked(&frame[info.l3_offset..])?;
        if tags == 0 {
            info.outer_vid = Some(tag.vid());
        } else {
            info.inner_vid = Some(tag.vid());
        }
        info.ethertype = tag.ethertype();
        info.l3_offset += TAG_LEN;
        tags += 1;
    }
    Ok(info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const DST: EthernetAddress = EthernetAddress([0x00, 0x1b, 0x21, 0x3a, 0x4f, 0x5c]);
    const SRC: EthernetAddress = EthernetAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);

    // An 802.1Q-tagged IPv4 frame header: VID 100 (0x064), PCP 5, DEI 0,
    // so TCI = 101 0 000001100100 = 0xa064. Only the start of the IPv4
    // header follows; parse_l2 does not look past the EtherType.
    const DOT1Q_FRAME: [u8; 22] = [
        0x00, 0x1b, 0x21, 0x3a, 0x4f, 0x5c, // dst
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // src
        0x81, 0x00, // TPID 802.1Q
        0xa0, 0x64, // PCP 5, DEI 0, VID 100
        0x08, 0x00, // IPv4
        0x45, 0x00, 0x00, 0x54, // first bytes of the IPv4 header
    ];

    // QinQ: S-tag 0x88a8 VID 200 (0x0c8) with DEI set (TCI 0x10c8), C-tag
    // 0x8100 VID 100 PCP 3 (TCI 0x6064), carrying IPv6.
    const QINQ_FRAME: [u8; 24] = [
        0x00, 0x1b, 0x21, 0x3a, 0x4f, 0x5c, // dst
        0x52, 0x54, 0x00, 0x12, 0x34, 0x56, // src
        0x88, 0xa8, // TPID 802.1ad
        0x10, 0xc8, // PCP 0, DEI 1, VID 200
        0x81, 0x00, // TPID 802.1Q
        0x60, 0x64, // PCP 3, DEI 0, VID 100
        0x86, 0xdd, // IPv6
        0x60, 0x00, // first bytes of the IPv6 header
    ];

    #[test]
    fn golden_tag_parse() {
        let tag = Tag::new_checked(&DOT1Q_FRAME[14..]).unwrap();
        assert_eq!(tag.tci(), 0xa064);
        assert_eq!(tag.pcp(), 5);
        assert!(!tag.dei());
        assert_eq!(tag.vid(), 100);
        assert_eq!(tag.ethertype(), ethertype::IPV4);
        assert_eq!(tag.payload(), &DOT1Q_FRAME[18..]);
        assert_eq!(
            Repr::parse(&tag).unwrap(),
            Repr {
                pcp: 5,
                dei: false,
                vid: 100,
                ethertype: ethertype::IPV4
            }
        );
        let outer = Tag::new_checked(&QINQ_FRAME[14..]).unwrap();
        assert_eq!(
            Repr::parse(&outer).unwrap(),
            Repr {
                pcp: 0,
                dei: true,
                vid: 200,
                ethertype: ethertype::VLAN
            }
        );
    }

    #[test]
    fn golden_tag_emit() {
        let repr = Repr {
            pcp: 3,
            dei: false,
            vid: 100,
            ethertype: ethertype::IPV6,
        };
        let mut buf = [0xa5u8; TAG_LEN];
        repr.emit(&mut Tag::new_unchecked(&mut buf[..]));
        assert_eq!(repr.buffer_len(), TAG_LEN);
        assert_eq!(buf[..], QINQ_FRAME[18..22]);

        let outer = Repr {
            pcp: 0,
            dei: true,
            vid: 200,
            ethertype: ethertype::VLAN,
        };
        outer.emit(&mut Tag::new_unchecked(&mut buf[..]));
        assert_eq!(buf[..], QINQ_FRAME[14..18]);
    }

    #[test]
    fn setters_touch_only_their_bits() {
        let mut buf = [0xa5u8; 6];
        let mut tag = Tag::new_checked(&mut buf[..]).unwrap();
        tag.set_tci(0);
        tag.set_vid(0xffff); // masked to 0xfff
        assert_eq!(tag.tci(), 0x0fff);
        tag.set_pcp(7);
        assert_eq!(tag.tci(), 0xefff);
        tag.set_dei(true);
        assert_eq!(tag.tci(), 0xffff);
        tag.set_vid(1);
        tag.set_dei(false);
        tag.set_pcp(0xfa); // masked to 2
        assert_eq!((tag.pcp(), tag.dei(), tag.vid()), (2, false, 1));
        tag.set_ethertype(ethertype::ARP);
        tag.payload_mut().fill(0);
        assert_eq!(buf, [0x40, 0x01, 0x08, 0x06, 0, 0]);
    }

    #[test]
    fn tag_truncated_at_every_length() {
        for len in 0..TAG_LEN {
            assert_eq!(
                Tag::new_checked(&DOT1Q_FRAME[14..14 + len]).unwrap_err(),
                Error::Truncated
            );
        }
    }

    #[test]
    fn l2_untagged() {
        let mut frame = DOT1Q_FRAME;
        frame[12..14].copy_from_slice(&[0x08, 0x00]);
        let info = parse_l2(&frame).unwrap();
        assert_eq!(
            info,
            L2Info {
                dst: DST,
                src: SRC,
                outer_vid: None,
                inner_vid: None,
                ethertype: ethertype::IPV4,
                l3_offset: 14,
            }
        );
    }

    #[test]
    fn l2_single_tag() {
        let info = parse_l2(&DOT1Q_FRAME).unwrap();
        assert_eq!(
            info,
            L2Info {
                dst: DST,
                src: SRC,
                outer_vid: Some(100),
                inner_vid: None,
                ethertype: ethertype::IPV4,
                l3_offset: 18,
            }
        );
        assert_eq!(DOT1Q_FRAME[info.l3_offset], 0x45);
    }

    #[test]
    fn l2_qinq() {
        let info = parse_l2(&QINQ_FRAME).unwrap();
        assert_eq!(
            info,
            L2Info {
                dst: DST,
                src: SRC,
                outer_vid: Some(200),
                inner_vid: Some(100),
                ethertype: ethertype::IPV6,
                l3_offset: 22,
            }
        );
        // The pre-standard outer TPID and double 802.1Q both walk the same way.
        for outer in [ethertype::QINQ_9100, ethertype::VLAN] {
            let mut frame = QINQ_FRAME;
            frame[12..14].copy_from_slice(&outer.to_be_bytes());
            assert_eq!(parse_l2(&frame).unwrap(), info);
        }
    }

    #[test]
    fn l2_third_tag_is_unsupported() {
        let mut frame = [0u8; 30];
        frame[..22].copy_from_slice(&QINQ_FRAME[..22]);
        frame[20..22].copy_from_slice(&[0x81, 0x00]); // inner tag says: another tag
        frame[22..24].copy_from_slice(&[0x00, 0x05]);
        frame[24..26].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(parse_l2(&frame).unwrap_err(), Error::Unsupported);
    }

    #[test]
    fn l2_truncated_at_every_length() {
        for len in 0..18 {
            assert_eq!(parse_l2(&DOT1Q_FRAME[..len]).unwrap_err(), Error::Truncated);
        }
        // Tag complete, nothing after it: the L3 header is someone else's check.
        assert_eq!(parse_l2(&DOT1Q_FRAME[..18]).unwrap().l3_offset, 18);
        for len in 0..22 {
            assert_eq!(parse_l2(&QINQ_FRAME[..len]).unwrap_err(), Error::Truncated);
        }
        assert_eq!(parse_l2(&QINQ_FRAME[..22]).unwrap().l3_offset, 22);
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            if let Ok(tag) = Tag::new_checked(&bytes[..]) {
                let repr = Repr::parse(&tag).unwrap();
                let mut out = bytes.clone();
                repr.emit(&mut Tag::new_unchecked(&mut out[..]));
                prop_assert_eq!(out, bytes.clone());
            }
            if let Ok(info) = parse_l2(&bytes) {
                prop_assert!(info.l3_offset <= bytes.len());
                prop_assert!(!is_tpid(info.ethertype));
            }
        }

        #[test]
        fn tagged_frames_never_panic(
            tpids in proptest::collection::vec(
                prop_oneof![Just(0x8100u16), Just(0x88a8), Just(0x9100), any::<u16>()], 1..5),
            tail in proptest::collection::vec(any::<u8>(), 0..8),
        ) {
            let mut frame = vec![0u8; 12];
            for tpid in &tpids {
                frame.extend_from_slice(&tpid.to_be_bytes());
                frame.extend_from_slice(&[0x00, 0x2a]);
            }
            frame.extend_from_slice(&tail);
            for len in 0..=frame.len() {
                let _ = parse_l2(&frame[..len]);
            }
        }
    }
}
