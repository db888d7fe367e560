//! The XDP program in front of the AF_XDP sockets, loaded and attached with
//! the bpf(2) system call alone.
//!
//! The program is six instructions, written here as bytecode:
//!
//! ```text
//! r2 = *(u32 *)(r1 + 16)        ; ctx->rx_queue_index
//! r1 = xsks_map ll              ; two slots: the map's fd, patched to its address by the kernel
//! r3 = 2                        ; XDP_PASS
//! call bpf_redirect_map         ; helper 51
//! exit
//! ```
//!
//! that is `return bpf_redirect_map(&xsks_map, ctx->rx_queue_index,
//! XDP_PASS)`: a frame arriving on a queue that has a socket in the map goes
//! to that socket; on any other queue the lookup fails and the low bits of
//! the flags argument, XDP_PASS, become the verdict, so the kernel gets the
//! frame as if no program were attached. What the appliance owns is therefore
//! exactly the queues it opened sockets on.
//!
//! The map is a `BPF_MAP_TYPE_XSKMAP` keyed by queue id; a socket's entry goes
//! away when the socket is closed. The program is attached with a BPF link
//! (`BPF_LINK_CREATE`, attach type `BPF_XDP`, Linux 5.9 and later): closing
//! the link's file descriptor detaches it, so a process that exits, however
//! it exits, leaves no program on the interface, and a link cannot replace
//! a program someone else attached.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_PROG_LOAD: libc::c_long = 5;
const BPF_LINK_CREATE: libc::c_long = 28;

const BPF_MAP_TYPE_XSKMAP: u32 = 17;
const BPF_PROG_TYPE_XDP: u32 = 6;
/// Attach type of XDP programs on an interface.
const BPF_XDP: u32 = 37;
const BPF_PSEUDO_MAP_FD: u8 = 1;
const BPF_FUNC_REDIRECT_MAP: i32 = 51;
const XDP_PASS: i32 = 2;

/// Link flags: which XDP hook to use.
pub(super) const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
pub(super) const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;

/// `offsetof(struct xdp_md, rx_queue_index)`.
const XDP_MD_RX_QUEUE_INDEX: i16 = 16;

/// One instruction (`struct bpf_insn`).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Insn {
    code: u8,
    /// dst in the low nibble, src in the high one.
    regs: u8,
    off: i16,
    imm: i32,
}

const fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: dst | (src << 4),
        off,
        imm,
    }
}

// Opcode classes and fields (linux/bpf_common.h, linux/bpf.h).
const BPF_LD: u8 = 0x00;
const BPF_LDX: u8 = 0x01;
const BPF_JMP: u8 = 0x05;
const BPF_ALU64: u8 = 0x07;
const BPF_W: u8 = 0x00;
const BPF_DW: u8 = 0x18;
const BPF_IMM: u8 = 0x00;
const BPF_MEM: u8 = 0x60;
const BPF_MOV: u8 = 0xb0;
const BPF_K: u8 = 0x00;
const BPF_CALL: u8 = 0x80;
const BPF_EXIT: u8 = 0x90;

/// The program, with `map_fd` as the map reference.
fn program(map_fd: RawFd) -> [Insn; 6] {
    [
        insn(BPF_LDX | BPF_MEM | BPF_W, 2, 1, XDP_MD_RX_QUEUE_INDEX, 0),
        insn(BPF_LD | BPF_DW | BPF_IMM, 1, BPF_PSEUDO_MAP_FD, 0, map_fd),
        insn(0, 0, 0, 0, 0),
        insn(BPF_ALU64 | BPF_MOV | BPF_K, 3, 0, 0, XDP_PASS),
        insn(BPF_JMP | BPF_CALL, 0, 0, 0, BPF_FUNC_REDIRECT_MAP),
        insn(BPF_JMP | BPF_EXIT, 0, 0, 0, 0),
    ]
}

#[repr(C)]
#[derive(Default)]
struct MapCreateAttr {
    map_type: u32,
    key_size: u32,
    value_size: u32,
    max_entries: u32,
    map_flags: u32,
    inner_map_fd: u32,
    numa_node: u32,
    map_name: [u8; 16],
}

#[repr(C)]
#[derive(Default)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

#[repr(C)]
#[derive(Default)]
struct LinkCreateAttr {
    prog_fd: u32,
    target_ifindex: u32,
    attach_type: u32,
    flags: u32,
}

/// bpf(2) with `attr` as the command's attribute block; returns the new fd
/// (or 0 for commands that make none).
fn sys_bpf<A>(cmd: libc::c_long, attr: &mut A) -> io::Result<libc::c_long> {
    // SAFETY: `attr` is a live, fully initialised #[repr(C)] prefix of
    // `union bpf_attr` for `cmd`, and its size is passed with it; the kernel
    // reads it and writes only within it (the verifier log goes to a buffer
    // the attribute names and sizes).
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *mut A as *mut libc::c_void,
            core::mem::size_of::<A>() as libc::c_uint,
        )
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn owned(fd: libc::c_long) -> OwnedFd {
    // SAFETY: bpf(2) returned a new file descriptor that nothing else owns.
    unsafe { OwnedFd::from_raw_fd(fd as RawFd) }
}

fn name16(name: &str) -> [u8; 16] {
    let mut out = [0u8; 16];
    for (o, b) in out.iter_mut().zip(name.bytes().take(15)) {
        *o = b;
    }
    out
}

/// The loaded program and its socket map.
pub(super) struct XdpProgram {
    prog: OwnedFd,
    map: OwnedFd,
}

impl XdpProgram {
    /// Creates the socket map with room for queue ids `0..queues` and loads
    /// the program that redirects into it.
    pub(super) fn load(queues: u32) -> io::Result<XdpProgram> {
        let mut map_attr = MapCreateAttr {
            map_type: BPF_MAP_TYPE_XSKMAP,
            key_size: 4,
            value_size: 4,
            max_entries: queues.max(1),
            map_name: name16("sluice_xsks"),
            ..MapCreateAttr::default()
        };
        let map = owned(
            sys_bpf(BPF_MAP_CREATE, &mut map_attr)
                .map_err(|e| context(e, "cannot create the XSKMAP (bpf BPF_MAP_CREATE)"))?,
        );
        let insns = program(map.as_raw_fd());
        let license = CString::new("Dual BSD/GPL").expect("no NUL");
        let load = |log: &mut [u8]| {
            let mut attr = ProgLoadAttr {
                prog_type: BPF_PROG_TYPE_XDP,
                insn_cnt: insns.len() as u32,
                insns: insns.as_ptr() as u64,
                license: license.as_ptr() as u64,
                log_level: u32::from(!log.is_empty()),
                log_size: log.len() as u32,
                log_buf: if log.is_empty() {
                    0
                } else {
                    log.as_mut_ptr() as u64
                },
                prog_name: name16("sluice_xsk"),
                expected_attach_type: BPF_XDP,
                ..ProgLoadAttr::default()
            };
            sys_bpf(BPF_PROG_LOAD, &mut attr)
        };
        let prog = match load(&mut []) {
            Ok(fd) => owned(fd),
            Err(e) => {
                // Load again with the verifier's log, to say why.
                let mut log = vec![0u8; 64 * 1024];
                let detail = match load(&mut log) {
                    Ok(fd) => {
                        return Ok(XdpProgram {
                            prog: owned(fd),
                            map,
                        })
                    }
                    Err(_) => {
                        let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
                        String::from_utf8_lossy(&log[..end]).trim().to_string()
                    }
                };
                return Err(context(
                    e,
                    &format!(
                        "cannot load the XDP program (bpf BPF_PROG_LOAD; verifier: {detail:?})"
                    ),
                ));
            }
        };
        Ok(XdpProgram { prog, map })
    }

    /// Points queue `queue`'s map entry at the socket `xsk`.
    pub(super) fn insert(&self, queue: u32, xsk: RawFd) -> io::Result<()> {
        let key = queue;
        let value = xsk as u32;
        let mut attr = MapElemAttr {
            map_fd: self.map.as_raw_fd() as u32,
            key: &key as *const u32 as u64,
            value: &value as *const u32 as u64,
            ..MapElemAttr::default()
        };
        sys_bpf(BPF_MAP_UPDATE_ELEM, &mut attr)
            .map(drop)
            .map_err(|e| {
                context(
                    e,
                    &format!("cannot put queue {queue}'s socket in the XSKMAP"),
                )
            })
    }

    /// Attaches the program to interface `ifindex` at the hook `flags`
    /// names. The program stays attached while the returned link is open.
    pub(super) fn attach(&self, ifindex: u32, flags: u32) -> io::Result<OwnedFd> {
        let mut attr = LinkCreateAttr {
            prog_fd: self.prog.as_raw_fd() as u32,
            target_ifindex: ifindex,
            attach_type: BPF_XDP,
            flags,
        };
        sys_bpf(BPF_LINK_CREATE, &mut attr).map(owned)
    }
}

/// Adds what was being done to an OS error, with a hint for the usual causes.
pub(super) fn context(e: io::Error, what: &str) -> io::Error {
    let hint = match e.raw_os_error() {
        Some(libc::EPERM) | Some(libc::EACCES) => {
            " (needs CAP_BPF/CAP_SYS_ADMIN and CAP_NET_ADMIN: run as root)"
        }
        Some(libc::EBUSY) | Some(libc::EEXIST) => {
            " (another XDP program is attached to the interface)"
        }
        _ => "",
    };
    io::Error::new(e.kind(), format!("{what}: {e}{hint}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The encoding, byte by byte: `struct bpf_insn` on a little-endian host.
    #[test]
    fn program_is_encoded_byte_for_byte() {
        let insns = program(7);
        // SAFETY: Insn is 8 bytes of plain integers, repr(C) without padding.
        let bytes: &[u8] = unsafe {
            core::slice::from_raw_parts(insns.as_ptr().cast(), core::mem::size_of_val(&insns))
        };
        let expected: [u8; 48] = [
            0x61, 0x12, 0x10, 0x00, 0x00, 0x00, 0x00, 0x00, // r2 = *(u32 *)(r1 + 0x10)
            0x18, 0x11, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, // r1 = map fd 7 ll
            0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, //
            0xb7, 0x03, 0x00, 0x00, 0x02, 0x00, 0x00, 0x00, // r3 = 2
            0x85, 0x00, 0x00, 0x00, 0x33, 0x00, 0x00, 0x00, // call 51
            0x95, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // exit
        ];
        assert_eq!(bytes, &expected);
    }

    #[test]
    fn attribute_layouts_match_the_kernel() {
        assert_eq!(core::mem::size_of::<Insn>(), 8);
        assert_eq!(core::mem::size_of::<MapElemAttr>(), 32);
        assert_eq!(core::mem::size_of::<LinkCreateAttr>(), 16);
        assert_eq!(core::mem::offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(
            core::mem::offset_of!(ProgLoadAttr, expected_attach_type),
            68
        );
        assert_eq!(core::mem::offset_of!(MapCreateAttr, map_name), 28);
    }

    #[test]
    fn names_are_cut_to_fifteen_bytes() {
        assert_eq!(&name16("sluice_xsks")[..12], b"sluice_xsks\0");
        assert_eq!(name16("a_very_long_program_name")[15], 0);
    }
}
