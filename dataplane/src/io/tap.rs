//! TAP ports: the port creates a TAP device (`/dev/net/tun`, `IFF_TAP |
//! IFF_NO_PI`) and is the far end of its wire. What the kernel sends out
//! of the device, the port receives; what the port transmits, the kernel
//! receives on the device. For a Sluice that serves the host it runs on, or
//! a VM's or container's link, without a NIC.
//!
//! The device exists while the port is open (it is not persistent) and is
//! brought up when the port opens; addresses and routes on it are the
//! host's business (`ip addr add ... dev NAME`). With `queues > 1` it is a
//! multi-queue device (`IFF_MULTI_QUEUE`): one descriptor per queue pair,
//! and the kernel spreads the flows it sends over them.
//!
//! Each queue's descriptor is nonblocking. A receive burst reads frames
//! until the burst is full or the device has none (`EAGAIN`); a transmit
//! burst writes frames until the device pushes back. A TAP descriptor
//! carries one frame per `read`/`write`, so unlike the ring backends this
//! costs one system call per packet (plus one `EAGAIN` per empty poll): TAP
//! is for links where convenience beats throughput.
//!
//! Frames the kernel hands to a TAP device have complete checksums (the
//! device advertises no offloads), so nothing is repaired on receive.
//!
//! Sets on receive: `Packet::rx_port` (`port_id`), `Packet::rx_queue`;
//! `rss_hash` is 0. Counters per queue: `rx_dropped` counts frames lost for
//! want of a pool buffer or longer than one; `tx_dropped` counts frames the
//! device refused (down, too long) and frames left with the caller.
//!
//! [`PortInfo::mac`] is a locally administered address made from the port
//! id: the device's own MAC belongs to the kernel's end of the link, and
//! the address Sluice answers to comes from the control plane's Interface.

use super::{bump, netdev, Port, PortError, PortInfo, PortStats, QueueCounters, RxQueue, TxQueue};
use crate::buf::{Batch, Packet, PoolCache, DATA_ROOM};
use core::sync::atomic::{AtomicBool, Ordering};
use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;

/// How to make a TAP port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TapConfig {
    /// Stamped into `Packet::rx_port` of every received packet.
    pub port_id: u16,
    /// Queue pairs (one descriptor each); more than one makes a
    /// multi-queue device.
    pub queues: u16,
}

impl Default for TapConfig {
    fn default() -> Self {
        TapConfig {
            port_id: 0,
            queues: 1,
        }
    }
}

/// One queue pair: a descriptor of the device, and its counters. The
/// receive handle writes only the `rx_*` counters and the transmit handle
/// only the `tx_*` ones, so each counter still has a single writer.
#[repr(align(128))]
struct TapQueue {
    fd: OwnedFd,
    counters: QueueCounters,
    rx_taken: AtomicBool,
    tx_taken: AtomicBool,
}

/// A TAP device as a port. See the module docs.
pub struct TapPort {
    name: String,
    ifname: String,
    cfg: TapConfig,
    control: OwnedFd,
    queues: Box<[Arc<TapQueue>]>,
}

const TUN_PATH: &CStr = c"/dev/net/tun";

fn open_queue(ifname: &str, multi: bool) -> io::Result<(OwnedFd, String)> {
    // SAFETY: open(2) of a constant NUL-terminated path; checked below.
    let fd = unsafe {
        libc::open(
            TUN_PATH.as_ptr(),
            libc::O_RDWR | libc::O_NONBLOCK | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: ifreq is plain data; zero is valid for every field.
    let mut req: libc::ifreq = unsafe { core::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(ifname.as_bytes()) {
        *dst = src as libc::c_char;
    }
    let mut flags = libc::IFF_TAP | libc::IFF_NO_PI;
    if multi {
        flags |= libc::IFF_MULTI_QUEUE;
    }
    req.ifr_ifru.ifru_flags = flags as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which `req` is.
    let rc = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF as _, &mut req) };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // The kernel writes back the name it gave the device (for `tap%d`).
    let name: Vec<u8> = req
        .ifr_name
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    Ok((fd, String::from_utf8_lossy(&name).into_owned()))
}

impl TapPort {
    /// Creates TAP device `ifname` (in the calling thread's network
    /// namespace; `%d` in the name picks a free number), brings it up and
    /// opens port `name` on it.
    pub fn open(name: &str, ifname: &str, cfg: TapConfig) -> Result<Arc<TapPort>, PortError> {
        let fail = |what: &str, e: io::Error| {
            let hint = match e.raw_os_error() {
                Some(libc::EPERM) => " (creating a TAP device needs CAP_NET_ADMIN)",
                Some(libc::ENOENT) => " (no /dev/net/tun: load the tun module)",
                Some(libc::EBUSY) => " (an interface of that name exists and is not a free TAP)",
                _ => "",
            };
            PortError::Backend(format!("tap {ifname}: {what}: {e}{hint}"))
        };
        let bytes = ifname.as_bytes();
        if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
            return Err(PortError::Backend(format!(
                "tap {ifname:?}: a device name has 1 to {} bytes",
                libc::IFNAMSIZ - 1
            )));
        }
        if cfg.queues == 0 {
            return Err(PortError::Backend(format!(
                "tap {ifname}: needs at least one queue"
            )));
        }
        let multi = cfg.queues > 1;
        let mut queues = Vec::with_capacity(cfg.queues as usize);
        let mut actual = ifname.to_string();
        for _ in 0..cfg.queues {
            let (fd, got) = open_queue(&actual, multi).map_err(|e| fail("TUNSETIFF", e))?;
            actual = got;
            queues.push(Arc::new(TapQueue {
                fd,
                counters: QueueCounters::default(),
                rx_taken: AtomicBool::new(false),
                tx_taken: AtomicBool::new(false),
            }));
        }
        let control = netdev::control_socket().map_err(|e| fail("control socket", e))?;
        netdev::set_up(control.as_fd(), &actual).map_err(|e| PortError::Backend(e.to_string()))?;
        Ok(Arc::new(TapPort {
            name: name.to_string(),
            ifname: actual,
            cfg,
            control,
            queues: queues.into(),
        }))
    }

    /// The device's name (as the kernel gave it).
    pub fn interface(&self) -> &str {
        &self.ifname
    }

    fn take(&self, queue: u16, rx: bool) -> Result<Arc<TapQueue>, PortError> {
        let q = self
            .queues
            .get(queue as usize)
            .ok_or_else(|| PortError::NoSuchQueue {
                port: self.name.clone(),
                queue,
                queues: self.queues.len() as u16,
            })?;
        let flag = if rx { &q.rx_taken } else { &q.tx_taken };
        if flag.swap(true, Ordering::Acquire) {
            return Err(PortError::QueueTaken {
                port: self.name.clone(),
                queue,
            });
        }
        Ok(q.clone())
    }
}

impl Port for TapPort {
    fn info(&self) -> PortInfo {
        let flags = netdev::flags(self.control.as_fd(), &self.ifname).unwrap_or(0);
        let mtu = netdev::mtu(self.control.as_fd(), &self.ifname).unwrap_or(1500);
        let [hi, lo] = self.cfg.port_id.to_be_bytes();
        PortInfo {
            name: self.name.clone(),
            driver: "tap",
            mac: [0x02, 0x5c, 0x7a, 0x70, hi, lo],
            mtu: mtu.min((DATA_ROOM - 18) as u32) as u16,
            rx_queues: self.cfg.queues,
            tx_queues: self.cfg.queues,
            link_up: flags & netdev::IFF_UP != 0,
            speed_mbps: 0,
        }
    }

    fn stats(&self) -> PortStats {
        let mut total = PortStats::default();
        for q in self.queues.iter() {
            total += q.counters.snapshot();
        }
        total
    }

    fn rx_queue(&self, queue: u16) -> Result<Box<dyn RxQueue>, PortError> {
        Ok(Box::new(TapRx {
            q: self.take(queue, true)?,
            spare: None,
            port_id: self.cfg.port_id,
            queue,
        }))
    }

    fn tx_queue(&self, queue: u16) -> Result<Box<dyn TxQueue>, PortError> {
        Ok(Box::new(TapTx {
            q: self.take(queue, false)?,
        }))
    }
}

impl core::fmt::Debug for TapPort {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TapPort")
            .field("name", &self.name)
            .field("interface", &self.ifname)
            .field("cfg", &self.cfg)
            .finish()
    }
}

struct TapRx {
    q: Arc<TapQueue>,
    /// A buffer kept from an empty read, so an idle poll allocates nothing.
    spare: Option<Packet>,
    port_id: u16,
    queue: u16,
}

impl RxQueue for TapRx {
    fn rx_burst(&mut self, pool: &mut PoolCache, out: &mut Batch) -> usize {
        let start = out.len();
        let mut bytes = 0u64;
        let mut lost = 0u64;
        while !out.is_full() {
            let Some(mut pkt) = self.spare.take().or_else(|| pool.alloc()) else {
                // No buffer: leave the frames in the device, which drops
                // (and counts) what overflows its queue.
                break;
            };
            let Some(buf) = pkt.reset(DATA_ROOM) else {
                pool.free(pkt);
                break;
            };
            // SAFETY: read(2) into the packet's DATA_ROOM-byte writable frame.
            let n =
                unsafe { libc::read(self.q.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n <= 0 {
                // EAGAIN (nothing waiting) or the device went away.
                self.spare = Some(pkt);
                break;
            }
            let n = n as usize;
            if !(14..DATA_ROOM).contains(&n) {
                // Too short for Ethernet, or filled the buffer (and may have
                // been cut).
                lost += 1;
                self.spare = Some(pkt);
                continue;
            }
            pkt.truncate(n);
            pkt.rx_port = self.port_id;
            pkt.rx_queue = self.queue;
            pkt.rss_hash = 0;
            bytes += n as u64;
            out.push(pkt);
        }
        let n = out.len() - start;
        let c = &self.q.counters;
        if n > 0 {
            bump(&c.rx_packets, n as u64);
            bump(&c.rx_bytes, bytes);
        }
        if lost > 0 {
            bump(&c.rx_dropped, lost);
        }
        n
    }
}

impl Drop for TapRx {
    fn drop(&mut self) {
        self.q.rx_taken.store(false, Ordering::Release);
    }
}

struct TapTx {
    q: Arc<TapQueue>,
}

impl TxQueue for TapTx {
    fn tx_burst(&mut self, pkts: &mut Batch, pool: &mut PoolCache) -> usize {
        let mut taken = 0;
        let mut sent = 0u64;
        let mut bytes = 0u64;
        let mut refused = 0u64;
        for pkt in pkts.iter() {
            let frame = pkt.data();
            // SAFETY: write(2) of the packet's frame, which is readable for
            // its length.
            let n =
                unsafe { libc::write(self.q.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len()) };
            if n < 0 {
                let busy = matches!(
                    io::Error::last_os_error().raw_os_error(),
                    Some(libc::EAGAIN | libc::EINTR | libc::ENOBUFS)
                );
                if busy {
                    break; // leave the rest with the caller
                }
                refused += 1;
            } else {
                sent += 1;
                bytes += frame.len() as u64;
            }
            taken += 1;
        }
        for pkt in pkts.drain(..taken) {
            pool.free(pkt);
        }
        let c = &self.q.counters;
        if sent > 0 {
            bump(&c.tx_packets, sent);
            bump(&c.tx_bytes, bytes);
        }
        let dropped = refused + pkts.len() as u64;
        if dropped > 0 {
            bump(&c.tx_dropped, dropped);
        }
        taken
    }
}

impl Drop for TapTx {
    fn drop(&mut self) {
        self.q.tx_taken.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_and_shapes_are_refused_before_any_device() {
        for bad in ["", "a-name-much-too-long", "nul\0"] {
            let e = TapPort::open("t", bad, TapConfig::default()).unwrap_err();
            assert!(e.to_string().contains("device name"), "{e}");
        }
        let e = TapPort::open(
            "t",
            "sltap0",
            TapConfig {
                queues: 0,
                ..TapConfig::default()
            },
        )
        .unwrap_err();
        assert!(e.to_string().contains("at least one queue"), "{e}");
    }
}
