//! What the kernel says about a network interface, asked through ioctls on
//! a socket (not sysfs, which shows the namespace it was mounted in rather
//! than the caller's).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

/// An interface as the port needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct NetDev {
    pub index: u32,
    pub mac: [u8; 6],
    pub mtu: u16,
    /// Administratively up and with carrier.
    pub running: bool,
    /// Receive and transmit queues in use (`ethtool -l`: combined plus the
    /// dedicated ones); 1 for devices that do not say.
    pub rx_queues: u32,
    pub tx_queues: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
union IfReqData {
    hwaddr: libc::sockaddr,
    mtu: libc::c_int,
    flags: libc::c_short,
    data: *mut libc::c_void,
    _size: [u8; 24],
}

/// `struct ifreq`.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: IfReqData,
}

/// `struct ethtool_channels`.
#[repr(C)]
#[derive(Default)]
struct EthtoolChannels {
    cmd: u32,
    max_rx: u32,
    max_tx: u32,
    max_other: u32,
    max_combined: u32,
    rx_count: u32,
    tx_count: u32,
    other_count: u32,
    combined_count: u32,
}

const ETHTOOL_GCHANNELS: u32 = 0x3c;

impl NetDev {
    /// Looks `name` up in the caller's network namespace.
    pub(super) fn query(name: &str) -> io::Result<NetDev> {
        if name.is_empty() || name.len() >= libc::IFNAMSIZ {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "{name:?} is not an interface name (1 to {} bytes)",
                    libc::IFNAMSIZ - 1
                ),
            ));
        }
        let cname = CString::new(name)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in interface name"))?;
        // SAFETY: a NUL-terminated name; the call only reads it.
        let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if index == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no interface {name:?} in this network namespace"),
            ));
        }
        // SAFETY: plain socket creation.
        let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new descriptor nothing else owns.
        let sock = unsafe { OwnedFd::from_raw_fd(raw) };
        let request = || {
            let mut req = IfReq {
                name: [0; libc::IFNAMSIZ],
                data: IfReqData { _size: [0; 24] },
            };
            for (d, s) in req.name.iter_mut().zip(name.bytes()) {
                *d = s as libc::c_char;
            }
            req
        };
        let ioctl = |op: libc::c_ulong, req: &mut IfReq| -> io::Result<()> {
            // SAFETY: `req` is a valid `struct ifreq` for the interface
            // requests used here, which read and write only inside it (or, for
            // SIOCETHTOOL, inside the buffer its data pointer names).
            if unsafe { libc::ioctl(sock.as_raw_fd(), op as _, req as *mut IfReq) } < 0 {
                Err(io::Error::last_os_error())
            } else {
                Ok(())
            }
        };

        let mut req = request();
        ioctl(libc::SIOCGIFHWADDR, &mut req)?;
        // SAFETY: SIOCGIFHWADDR filled in the hardware address.
        let sa_data = unsafe { req.data.hwaddr.sa_data };
        let mut mac = [0u8; 6];
        for (m, b) in mac.iter_mut().zip(sa_data.iter()) {
            *m = *b as u8;
        }

        let mut req = request();
        ioctl(libc::SIOCGIFMTU, &mut req)?;
        // SAFETY: SIOCGIFMTU filled in the MTU.
        let mtu = unsafe { req.data.mtu }.clamp(0, u16::MAX as libc::c_int) as u16;

        let mut req = request();
        ioctl(libc::SIOCGIFFLAGS, &mut req)?;
        // SAFETY: SIOCGIFFLAGS filled in the flags.
        let flags = unsafe { req.data.flags } as libc::c_int;
        let running = flags & libc::IFF_UP != 0 && flags & libc::IFF_RUNNING != 0;

        let mut channels = EthtoolChannels {
            cmd: ETHTOOL_GCHANNELS,
            ..EthtoolChannels::default()
        };
        let mut req = request();
        req.data.data = (&mut channels as *mut EthtoolChannels).cast();
        let (rx_queues, tx_queues) = match ioctl(libc::SIOCETHTOOL, &mut req) {
            Ok(()) => (
                (channels.combined_count + channels.rx_count).max(1),
                (channels.combined_count + channels.tx_count).max(1),
            ),
            // Devices without channel settings (loopback, some virtual ones)
            // have one queue each way.
            Err(_) => (1, 1),
        };
        Ok(NetDev {
            index,
            mac,
            mtu,
            running,
            rx_queues,
            tx_queues,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_found_and_bad_names_are_refused() {
        let lo = NetDev::query("lo").expect("every namespace has lo");
        assert_eq!(lo.mac, [0; 6]);
        assert!(lo.index >= 1);
        assert!(lo.rx_queues >= 1 && lo.tx_queues >= 1);
        let e = NetDev::query("no-such-if0").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert!(NetDev::query("").is_err());
        assert!(NetDev::query("a-name-longer-than-ifnamsiz").is_err());
    }
}
