//! Network interfaces by name: index, MAC address, MTU and flags, read and
//! set with the classic `SIOC*IF*` ioctls on a socket.
//!
//! An interface name means something only inside a network namespace: the
//! socket's namespace (the one its creating thread was in) decides which
//! interface the ioctl reaches, so callers pass a socket they opened in the
//! namespace they mean. Used when ports open, never on the hot path.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// `IFF_UP`, `IFF_RUNNING` as the ioctls report them.
pub(crate) const IFF_UP: i32 = libc::IFF_UP;
pub(crate) const IFF_RUNNING: i32 = libc::IFF_RUNNING;

/// A request for interface `name`, or an error naming it when the kernel
/// could not hold the name (empty, too long, or with a NUL byte).
fn request(name: &str) -> io::Result<libc::ifreq> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "interface name {name:?}: expected 1 to {} bytes without NUL",
                libc::IFNAMSIZ - 1
            ),
        ));
    }
    // SAFETY: ifreq is plain data (a name and a union of integers and
    // sockaddrs); all zeroes is a valid value of every field.
    let mut req: libc::ifreq = unsafe { core::mem::zeroed() };
    for (dst, &src) in req.ifr_name.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok(req)
}

/// Runs ioctl `op` on `sock` for `req`.
fn ioctl(sock: BorrowedFd<'_>, op: libc::c_ulong, req: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: every `op` used in this module reads or writes one `ifreq`,
    // which `req` points to for the duration of the call.
    let rc = unsafe { libc::ioctl(sock.as_raw_fd(), op as _, req as *mut libc::ifreq) };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Adds the interface name to an ioctl error, which alone says only
/// "No such device".
fn named(name: &str, what: &str, e: io::Error) -> io::Error {
    io::Error::new(e.kind(), format!("interface {name}: {what}: {e}"))
}

/// A datagram socket to run interface ioctls on, in the calling thread's
/// network namespace.
pub(crate) fn control_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the result is checked before it is owned.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a fresh descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

pub(crate) fn index(sock: BorrowedFd<'_>, name: &str) -> io::Result<i32> {
    let mut req = request(name)?;
    ioctl(sock, libc::SIOCGIFINDEX, &mut req).map_err(|e| named(name, "no such interface", e))?;
    // SAFETY: SIOCGIFINDEX filled the `ifru_ifindex` member.
    Ok(unsafe { req.ifr_ifru.ifru_ifindex })
}

pub(crate) fn mac(sock: BorrowedFd<'_>, name: &str) -> io::Result<[u8; 6]> {
    let mut req = request(name)?;
    ioctl(sock, libc::SIOCGIFHWADDR, &mut req).map_err(|e| named(name, "hardware address", e))?;
    // SAFETY: SIOCGIFHWADDR filled the `ifru_hwaddr` member.
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (dst, &src) in mac.iter_mut().zip(data.iter()) {
        *dst = src as u8;
    }
    Ok(mac)
}

pub(crate) fn mtu(sock: BorrowedFd<'_>, name: &str) -> io::Result<u32> {
    let mut req = request(name)?;
    ioctl(sock, libc::SIOCGIFMTU, &mut req).map_err(|e| named(name, "MTU", e))?;
    // SAFETY: SIOCGIFMTU filled the `ifru_mtu` member.
    Ok(unsafe { req.ifr_ifru.ifru_mtu }.max(0) as u32)
}

pub(crate) fn flags(sock: BorrowedFd<'_>, name: &str) -> io::Result<i32> {
    let mut req = request(name)?;
    ioctl(sock, libc::SIOCGIFFLAGS, &mut req).map_err(|e| named(name, "flags", e))?;
    // SAFETY: SIOCGIFFLAGS filled the `ifru_flags` member.
    Ok(unsafe { req.ifr_ifru.ifru_flags } as u16 as i32)
}

/// Brings the interface up (`ip link set NAME up`).
pub(crate) fn set_up(sock: BorrowedFd<'_>, name: &str) -> io::Result<()> {
    let current = flags(sock, name)?;
    if current & IFF_UP != 0 {
        return Ok(());
    }
    let mut req = request(name)?;
    req.ifr_ifru.ifru_flags = (current | IFF_UP) as libc::c_short;
    ioctl(sock, libc::SIOCSIFFLAGS, &mut req).map_err(|e| named(name, "set up", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn loopback_is_known_and_bad_names_are_refused() {
        let sock = control_socket().unwrap();
        let lo = index(sock.as_fd(), "lo").unwrap();
        assert!(lo > 0);
        assert!(mtu(sock.as_fd(), "lo").unwrap() > 0);
        assert_eq!(mac(sock.as_fd(), "lo").unwrap(), [0; 6]);
        let e = index(sock.as_fd(), "sluice-none0").unwrap_err();
        assert!(e.to_string().contains("sluice-none0"), "{e}");
        assert!(index(sock.as_fd(), "").is_err());
        assert!(index(sock.as_fd(), "a-name-much-too-long").is_err());
        assert!(index(sock.as_fd(), "nul\0").is_err());
    }
}
