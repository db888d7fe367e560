//! The control channel: a thread per port that speaks the memif protocol on
//! the Unix socket and publishes a [`Connection`] to the queue handles when
//! the peers agree, and withdraws it when they part.
//!
//! Handshake (the slave drives, one message per acknowledgement):
//!
//! ```text
//! master                         slave
//!        <-- connect(2) ---------
//! HELLO  ----------------------->   limits: versions, rings, ring size
//!        <---------------- INIT     interface id, mode, secret
//! ACK    ----------------------->
//!        <---------- ADD_REGION     + memfd (SCM_RIGHTS), per region
//! ACK    ----------------------->
//!        <------------ ADD_RING     + eventfd (SCM_RIGHTS), per ring
//! ACK    ----------------------->
//!        <------------- CONNECT
//! CONNECTED -------------------->   both sides now move frames
//! ```
//!
//! Either side may send DISCONNECT (with a reason) at any time, or just
//! close the socket. A master serves one slave at a time on its socket
//! (one interface id); a slave that loses its master tries again every
//! `reconnect` interval.

use super::shm::{self, Region, Ring};
use super::wire::{self, AddRing, Hello, Init, Message, Name};
use super::{MemifConfig, MemifRole, Shared};
use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Largest ring (log2 of descriptors) either side may ask for: the ring
/// indices are 16 bits.
pub(super) const MAX_LOG2_RING_SIZE: u8 = 14;
/// Most regions a master accepts from a slave.
const MAX_REGIONS: usize = 256;

/// One side's view of a ring of an established connection.
pub(super) struct RingSide {
    pub ring: Ring,
    /// Signalled by the ring's transmitter when the receiver asks for
    /// interrupts.
    pub event: OwnedFd,
    /// Slave only: offset in region 0 of this ring's own buffers (slot
    /// `i` at `buffers + i * buffer_size`).
    pub buffers: u32,
}

/// An established connection: the mapped regions and the rings in them.
/// Queue handles hold it (through an `Arc`) while they use its rings, so
/// the regions stay mapped until the last of them lets go.
pub(super) struct Connection {
    pub role: MemifRole,
    pub regions: Vec<Region>,
    /// Slave to master, by queue.
    pub s2m: Vec<Option<RingSide>>,
    /// Master to slave, by queue.
    pub m2s: Vec<Option<RingSide>>,
    /// Bytes per buffer (slave: its own layout; master: unused).
    pub buffer_size: u32,
    pub peer_name: String,
    pub peer_interface: String,
}

impl Connection {
    /// The ring queue `q` receives from on this side.
    pub(super) fn rx_ring(&self, q: u16) -> Option<&RingSide> {
        let rings = match self.role {
            MemifRole::Master => &self.s2m,
            MemifRole::Slave => &self.m2s,
        };
        rings.get(q as usize)?.as_ref()
    }

    /// The ring queue `q` transmits on from this side.
    pub(super) fn tx_ring(&self, q: u16) -> Option<&RingSide> {
        let rings = match self.role {
            MemifRole::Master => &self.m2s,
            MemifRole::Slave => &self.s2m,
        };
        rings.get(q as usize)?.as_ref()
    }
}

/// A Unix socket address: a path, or `@name` for the abstract namespace
/// (a NUL, then the name: the address `ss` shows as `@name`).
fn sockaddr(path: &str) -> io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    // SAFETY: sockaddr_un is plain data; zero is valid for every field.
    let mut sa: libc::sockaddr_un = unsafe { core::mem::zeroed() };
    sa.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let (bytes, start) = match path.strip_prefix('@') {
        Some(name) => (name.as_bytes(), 1),
        None => (path.as_bytes(), 0),
    };
    if bytes.is_empty() || start + bytes.len() >= sa.sun_path.len() || bytes.contains(&0) {
        return Err(io::Error::other(format!(
            "socket path {path:?}: 1 to {} bytes without NUL",
            sa.sun_path.len() - 1 - start
        )));
    }
    for (dst, &src) in sa.sun_path[start..].iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    // A path counts its NUL; an abstract name is the leading NUL and the
    // name's bytes, nothing after.
    let len = core::mem::size_of::<libc::sa_family_t>() + bytes.len() + 1;
    Ok((sa, len as libc::socklen_t))
}

fn seqpacket(nonblock: bool) -> io::Result<OwnedFd> {
    let mut ty = libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC;
    if nonblock {
        ty |= libc::SOCK_NONBLOCK;
    }
    // SAFETY: socket(2); checked below.
    let fd = unsafe { libc::socket(libc::AF_UNIX, ty, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A bounded wait on sends, so a stuck peer cannot hold the thread.
fn set_send_timeout(fd: &OwnedFd) {
    let tv = libc::timeval {
        tv_sec: 1,
        tv_usec: 0,
    };
    // SAFETY: setsockopt with a timeval it reads.
    unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&tv as *const libc::timeval).cast(),
            core::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    };
}

/// Binds and listens on `path`. A socket file nobody listens on (left by a
/// process that died) is replaced; one that answers is refused.
pub(super) fn listen(path: &str) -> io::Result<OwnedFd> {
    let (sa, len) = sockaddr(path)?;
    let fd = seqpacket(true)?;
    let bind = |fd: &OwnedFd| {
        // SAFETY: bind(2) with a valid address of `len` bytes.
        unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sa as *const libc::sockaddr_un).cast(),
                len,
            )
        }
    };
    if bind(&fd) < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EADDRINUSE) || path.starts_with('@') {
            return Err(e);
        }
        if connect(path).is_ok() {
            return Err(io::Error::other(format!(
                "{path}: another process is listening on it"
            )));
        }
        std::fs::remove_file(path)?;
        if bind(&fd) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    // SAFETY: listen(2) on our socket.
    if unsafe { libc::listen(fd.as_raw_fd(), 4) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

fn connect(path: &str) -> io::Result<OwnedFd> {
    let (sa, len) = sockaddr(path)?;
    let fd = seqpacket(false)?;
    // SAFETY: connect(2) with a valid address of `len` bytes.
    if unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&sa as *const libc::sockaddr_un).cast(),
            len,
        )
    } < 0
    {
        return Err(io::Error::last_os_error());
    }
    set_send_timeout(&fd);
    Ok(fd)
}

fn accept(listener: &OwnedFd) -> io::Result<OwnedFd> {
    // SAFETY: accept4(2) without an address; checked below.
    let fd = unsafe {
        libc::accept4(
            listener.as_raw_fd(),
            core::ptr::null_mut(),
            core::ptr::null_mut(),
            libc::SOCK_CLOEXEC,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    set_send_timeout(&fd);
    Ok(fd)
}

/// Sends one message, with `pass` attached as SCM_RIGHTS.
fn send(sock: &OwnedFd, msg: &Message, pass: Option<RawFd>) -> io::Result<()> {
    let mut bytes = msg.emit();
    let mut iov = libc::iovec {
        iov_base: bytes.as_mut_ptr().cast(),
        iov_len: bytes.len(),
    };
    // Room for one descriptor, aligned for cmsghdr.
    let mut control = [0u64; 4];
    // SAFETY: msghdr is plain data; zero is valid for every field.
    let mut mh: libc::msghdr = unsafe { core::mem::zeroed() };
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    if let Some(fd) = pass {
        // SAFETY: CMSG_SPACE is arithmetic.
        let space = unsafe { libc::CMSG_SPACE(core::mem::size_of::<RawFd>() as u32) } as usize;
        debug_assert!(space <= core::mem::size_of_val(&control));
        mh.msg_control = control.as_mut_ptr().cast();
        mh.msg_controllen = space as _;
        // SAFETY: the control buffer holds one cmsghdr and an int, which
        // CMSG_FIRSTHDR / CMSG_DATA point into.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&mh);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(core::mem::size_of::<RawFd>() as u32) as _;
            core::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
        }
    }
    // SAFETY: sendmsg(2) with the message built above.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &mh, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n as usize != wire::MSG_SIZE {
        return Err(io::Error::other("short send"));
    }
    Ok(())
}

/// Receives one record: its bytes (`None` at end of stream) and the first
/// descriptor attached to it (any others are closed).
fn recv(sock: &OwnedFd) -> io::Result<Option<(Vec<u8>, Option<OwnedFd>)>> {
    let mut bytes = vec![0u8; wire::MSG_SIZE];
    let mut iov = libc::iovec {
        iov_base: bytes.as_mut_ptr().cast(),
        iov_len: bytes.len(),
    };
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; zero is valid for every field.
    let mut mh: libc::msghdr = unsafe { core::mem::zeroed() };
    mh.msg_iov = &mut iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control.as_mut_ptr().cast();
    mh.msg_controllen = core::mem::size_of_val(&control) as _;
    // SAFETY: recvmsg(2) into the buffers described above.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut mh, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut first = None;
    // SAFETY: walks the control buffer the kernel filled, with the CMSG
    // macros, reading each SCM_RIGHTS payload as ints.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&mh);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c);
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / core::mem::size_of::<RawFd>();
                for i in 0..count {
                    let fd = core::ptr::read_unaligned(data.cast::<RawFd>().add(i));
                    let owned = OwnedFd::from_raw_fd(fd);
                    if first.is_none() {
                        first = Some(owned);
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&mh, c);
        }
    }
    if n == 0 {
        return Ok(None);
    }
    if mh.msg_flags & libc::MSG_TRUNC != 0 {
        bytes.resize(wire::MSG_SIZE + 1, 0); // reported as a length error
    } else {
        bytes.truncate(n as usize);
    }
    Ok(Some((bytes, first)))
}

/// A master's half-built connection.
#[derive(Default)]
struct MasterBuild {
    init: bool,
    peer_name: String,
    regions: Vec<Region>,
    s2m: Vec<Option<RingSide>>,
    m2s: Vec<Option<RingSide>>,
}

/// A slave's connection, built on HELLO and sent one message at a time.
struct SlaveBuild {
    conn: Connection,
    /// Messages still to send, each after the previous one's ACK; the
    /// descriptors they carry stay owned here until the connection ends.
    outbox: VecDeque<(Message, Option<RawFd>)>,
    /// The descriptors the outbox refers to.
    _fds: Vec<OwnedFd>,
}

enum Phase {
    Master(MasterBuild),
    Slave(Option<SlaveBuild>),
    Connected,
}

struct Session {
    sock: OwnedFd,
    phase: Phase,
}

/// What ends a session.
enum End {
    /// We found a fault: tell the peer.
    Fault(String),
    /// The peer said goodbye or hung up.
    Peer(String),
}

pub(super) struct Control {
    pub shared: Arc<Shared>,
    pub cfg: MemifConfig,
    pub listener: Option<OwnedFd>,
    pub wake: OwnedFd,
}

impl Control {
    pub(super) fn run(self) {
        let mut session: Option<Session> = None;
        let mut next_attempt = Instant::now();
        loop {
            if self.shared.stop.load(Ordering::Acquire) {
                break;
            }
            if self.cfg.role == MemifRole::Slave
                && session.is_none()
                && Instant::now() >= next_attempt
            {
                next_attempt = Instant::now() + self.cfg.reconnect;
                match connect(&self.cfg.socket) {
                    Ok(sock) => {
                        session = Some(Session {
                            sock,
                            phase: Phase::Slave(None),
                        })
                    }
                    Err(e) => self
                        .shared
                        .set_status(format!("connecting to {}: {e}", self.cfg.socket)),
                }
            }
            let mut fds = vec![libc::pollfd {
                fd: self.wake.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            }];
            if let Some(l) = &self.listener {
                fds.push(libc::pollfd {
                    fd: l.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            if let Some(s) = &session {
                fds.push(libc::pollfd {
                    fd: s.sock.as_raw_fd(),
                    events: libc::POLLIN,
                    revents: 0,
                });
            }
            let timeout = if session.is_none() && self.cfg.role == MemifRole::Slave {
                next_attempt
                    .saturating_duration_since(Instant::now())
                    .as_millis() as i32
            } else {
                -1
            };
            // SAFETY: poll(2) over the pollfds above.
            let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout) };
            if n <= 0 {
                continue;
            }
            if fds[0].revents != 0 {
                shm::wait(&self.wake, 0);
                continue; // the loop head looks at `stop`
            }
            if let Some(l) = &self.listener {
                if fds[1].revents != 0 {
                    if let Ok(sock) = accept(l) {
                        if session.is_some() {
                            let _ = send(&sock, &Message::disconnect("Already connected"), None);
                        } else {
                            match self.hello(&sock) {
                                Ok(()) => {
                                    session = Some(Session {
                                        sock,
                                        phase: Phase::Master(MasterBuild::default()),
                                    })
                                }
                                Err(e) => self.shared.set_status(format!("sending HELLO: {e}")),
                            }
                        }
                    }
                }
            }
            let Some(s) = session.as_mut() else { continue };
            if fds.last().map_or(0, |p| p.revents) == 0 {
                continue;
            }
            if let Err(end) = self.step(s) {
                let why = match end {
                    End::Fault(why) => {
                        let _ = send(&s.sock, &Message::disconnect(&why), None);
                        why
                    }
                    End::Peer(why) => why,
                };
                self.shared.set_status(why);
                self.shared.publish(None);
                session = None;
                next_attempt = Instant::now() + self.cfg.reconnect;
            }
        }
        if let Some(s) = session {
            let _ = send(&s.sock, &Message::disconnect("Interface closed"), None);
        }
        self.shared.publish(None);
        if self.listener.is_some() && !self.cfg.socket.starts_with('@') {
            let _ = std::fs::remove_file(&self.cfg.socket);
        }
    }

    fn hello(&self, sock: &OwnedFd) -> io::Result<()> {
        let q = self.cfg.queues.saturating_sub(1);
        send(
            sock,
            &Message::Hello(Hello {
                name: Name::new("sluice"),
                min_version: wire::VERSION,
                max_version: wire::VERSION,
                max_region: (MAX_REGIONS - 1) as u16,
                max_m2s_ring: q,
                max_s2m_ring: q,
                max_log2_ring_size: MAX_LOG2_RING_SIZE,
            }),
            None,
        )
    }

    /// Handles one received message.
    fn step(&self, s: &mut Session) -> Result<(), End> {
        let (bytes, fd) = match recv(&s.sock) {
            Ok(Some(r)) => r,
            Ok(None) => return Err(End::Peer("peer closed the socket".into())),
            Err(e) => return Err(End::Peer(format!("control socket: {e}"))),
        };
        let msg = Message::parse(&bytes).map_err(|e| End::Fault(e.to_string()))?;
        if let Message::Disconnect { reason, .. } = &msg {
            return Err(End::Peer(format!(
                "peer disconnected: {}",
                Message::reason_text(reason)
            )));
        }
        match &mut s.phase {
            Phase::Master(b) => {
                let reply = self.master_step(b, msg, fd)?;
                if let Some(conn) = reply.1 {
                    self.shared.publish(Some(Arc::new(conn)));
                    s.phase = Phase::Connected;
                }
                send(&s.sock, &reply.0, None).map_err(|e| End::Peer(e.to_string()))
            }
            Phase::Slave(build) => match (msg, build.as_mut()) {
                (Message::Hello(h), None) => {
                    let b = build.insert(self.slave_build(&h).map_err(End::Fault)?);
                    let (m, fd) = b.outbox.pop_front().expect("INIT first");
                    send(&s.sock, &m, fd).map_err(|e| End::Peer(e.to_string()))
                }
                (Message::Ack, Some(b)) => match b.outbox.pop_front() {
                    Some((m, fd)) => send(&s.sock, &m, fd).map_err(|e| End::Peer(e.to_string())),
                    None => Err(End::Fault("unexpected ACK".into())),
                },
                (Message::Connected(name), Some(b)) if b.outbox.is_empty() => {
                    let Some(mut b) = build.take() else {
                        unreachable!("matched Some above")
                    };
                    b.conn.peer_interface = name.as_string();
                    self.slave_start(&b.conn);
                    self.shared.publish(Some(Arc::new(b.conn)));
                    s.phase = Phase::Connected;
                    Ok(())
                }
                (m, _) => Err(End::Fault(format!("unexpected {}", m.kind_name()))),
            },
            Phase::Connected => Err(End::Fault(format!("unexpected {}", msg.kind_name()))),
        }
    }

    /// A master's answer to one message, and the connection once complete.
    fn master_step(
        &self,
        b: &mut MasterBuild,
        msg: Message,
        fd: Option<OwnedFd>,
    ) -> Result<(Message, Option<Connection>), End> {
        let fault = |s: &str| Err(End::Fault(s.to_string()));
        match msg {
            Message::Init(Init {
                version,
                id,
                mode,
                secret,
                name,
            }) => {
                if b.init {
                    return fault("unexpected INIT");
                }
                if version != wire::VERSION {
                    return fault("Incompatible memif version");
                }
                if id != self.cfg.id {
                    return fault("ID not found");
                }
                if mode != wire::MODE_ETHERNET {
                    return fault("Only ethernet mode supported");
                }
                if !self.cfg.secret.is_empty() {
                    let want: [u8; wire::SECRET_SIZE] = secret_bytes(&self.cfg.secret);
                    if secret[0] == 0 {
                        return fault("Secret required");
                    }
                    if secret != want {
                        return fault("Incorrect secret");
                    }
                }
                b.init = true;
                b.peer_name = name.as_string();
                Ok((Message::Ack, None))
            }
            Message::AddRegion { index, size } => {
                let Some(fd) = fd.filter(|_| b.init) else {
                    return fault("Missing region fd");
                };
                if index as usize != b.regions.len() || b.regions.len() >= MAX_REGIONS {
                    return fault("Invalid region index");
                }
                let region = Region::map(&fd, size)
                    .map_err(|e| End::Fault(format!("Region {index}: {e}")))?;
                b.regions.push(region);
                Ok((Message::Ack, None))
            }
            Message::AddRing(AddRing {
                flags,
                index,
                region,
                offset,
                log2_ring_size,
                private_hdr_size,
            }) => {
                let Some(event) = fd.filter(|_| b.init) else {
                    return fault("Missing interrupt fd");
                };
                if index >= self.cfg.queues {
                    return fault("Invalid ring index");
                }
                if log2_ring_size > MAX_LOG2_RING_SIZE || private_hdr_size != 0 {
                    return fault("Unsupported ring");
                }
                let Some(r) = b.regions.get(region as usize) else {
                    return fault("Invalid ring region");
                };
                let Some(ring) = Ring::new(r, offset, log2_ring_size) else {
                    return fault("Ring outside its region");
                };
                let rings = if flags & wire::ADD_RING_FLAG_S2M != 0 {
                    &mut b.s2m
                } else {
                    &mut b.m2s
                };
                if rings.len() <= index as usize {
                    rings.resize_with(index as usize + 1, || None);
                }
                if rings[index as usize].is_some() {
                    return fault("Duplicate ring");
                }
                rings[index as usize] = Some(RingSide {
                    ring,
                    event,
                    buffers: 0,
                });
                Ok((Message::Ack, None))
            }
            Message::Connect(name) => {
                if !b.init || (b.s2m.is_empty() && b.m2s.is_empty()) {
                    return fault("CONNECT before rings");
                }
                let rings = b.s2m.iter().chain(b.m2s.iter()).flatten();
                if rings.clone().any(|r| r.ring.cookie() != wire::COOKIE) {
                    return fault("Wrong ring");
                }
                if !self.cfg.interrupt {
                    for r in b.s2m.iter().flatten() {
                        r.ring
                            .flags()
                            .store(wire::RING_FLAG_MASK_INT, Ordering::Release);
                    }
                }
                let done = core::mem::take(b);
                let conn = Connection {
                    role: MemifRole::Master,
                    regions: done.regions,
                    s2m: done.s2m,
                    m2s: done.m2s,
                    buffer_size: 0,
                    peer_name: done.peer_name,
                    peer_interface: name.as_string(),
                };
                Ok((Message::Connected(Name::new(&self.cfg.name)), Some(conn)))
            }
            m => Err(End::Fault(format!("unexpected {}", m.kind_name()))),
        }
    }

    /// Lays out a slave's region (all rings, then all buffers) after the
    /// master's HELLO, and queues the messages that describe it.
    fn slave_build(&self, h: &Hello) -> Result<SlaveBuild, String> {
        if h.min_version > wire::VERSION || h.max_version < wire::VERSION {
            return Err("Incompatible memif version".into());
        }
        let s2m = self.cfg.queues.min(h.max_s2m_ring.saturating_add(1));
        let m2s = self.cfg.queues.min(h.max_m2s_ring.saturating_add(1));
        let log2 = self
            .cfg
            .log2_ring_size
            .min(h.max_log2_ring_size)
            .min(MAX_LOG2_RING_SIZE);
        let slots = 1u64 << log2;
        let rings = (s2m + m2s) as u64;
        let ring_bytes = wire::ring::bytes(log2) as u64;
        let buffers = (rings * ring_bytes).next_multiple_of(4096);
        let size = buffers + rings * slots * self.cfg.buffer_size as u64;
        if size > u32::MAX as u64 {
            return Err(format!(
                "a region of {size} bytes is past memif's 32-bit offsets"
            ));
        }
        let (memfd, region) =
            Region::create("sluice-memif", size).map_err(|e| format!("memfd: {e}"))?;
        let mut fds = Vec::new();
        let mut outbox = VecDeque::new();
        outbox.push_back((
            Message::Init(Init {
                version: wire::VERSION,
                id: self.cfg.id,
                mode: wire::MODE_ETHERNET,
                secret: secret_bytes(&self.cfg.secret),
                name: Name::new("sluice"),
            }),
            None,
        ));
        outbox.push_back((
            Message::AddRegion { index: 0, size },
            Some(memfd.as_raw_fd()),
        ));
        fds.push(memfd);
        let mut sides: [Vec<Option<RingSide>>; 2] = [Vec::new(), Vec::new()];
        for i in 0..rings as u16 {
            let (dir, index) = if i < s2m { (0, i) } else { (1, i - s2m) };
            let offset = i as u32 * ring_bytes as u32;
            let ring = Ring::new(&region, offset, log2).expect("laid out inside the region");
            ring.init();
            let first = (buffers + i as u64 * slots * self.cfg.buffer_size as u64) as u32;
            for slot in 0..slots as u16 {
                ring.set_desc(
                    slot,
                    shm::Desc {
                        flags: 0,
                        region: 0,
                        length: self.cfg.buffer_size,
                        offset: first + slot as u32 * self.cfg.buffer_size,
                        metadata: 0,
                    },
                );
            }
            let event = shm::eventfd().map_err(|e| format!("eventfd: {e}"))?;
            outbox.push_back((
                Message::AddRing(AddRing {
                    flags: if dir == 0 { wire::ADD_RING_FLAG_S2M } else { 0 },
                    index,
                    region: 0,
                    offset,
                    log2_ring_size: log2,
                    private_hdr_size: 0,
                }),
                Some(event.as_raw_fd()),
            ));
            // The eventfd is duplicated for the connection; the outbox's
            // copy lives as long as the build.
            let dup = event.try_clone().map_err(|e| format!("eventfd: {e}"))?;
            fds.push(event);
            sides[dir].push(Some(RingSide {
                ring,
                event: dup,
                buffers: first,
            }));
        }
        outbox.push_back((Message::Connect(Name::new(&self.cfg.name)), None));
        let [s2m_sides, m2s_sides] = sides;
        Ok(SlaveBuild {
            conn: Connection {
                role: MemifRole::Slave,
                regions: vec![region],
                s2m: s2m_sides,
                m2s: m2s_sides,
                buffer_size: self.cfg.buffer_size,
                peer_name: h.name.as_string(),
                peer_interface: String::new(),
            },
            outbox,
            _fds: fds,
        })
    }

    /// Gets a slave's rings going once the master has connected: posts
    /// every receive buffer to the master and sets the interrupt mask.
    fn slave_start(&self, c: &Connection) {
        for r in c.m2s.iter().flatten() {
            let ring = r.ring;
            // The master may have reset the ring on CONNECT (DPDK does).
            ring.tail().store(0, Ordering::Relaxed);
            for slot in 0..ring.size() {
                ring.set_length(slot, c.buffer_size);
            }
            if !self.cfg.interrupt {
                ring.flags()
                    .store(wire::RING_FLAG_MASK_INT, Ordering::Relaxed);
            }
            ring.head().store(ring.size(), Ordering::Release);
        }
        for r in c.s2m.iter().flatten() {
            r.ring.head().store(0, Ordering::Relaxed);
            r.ring.tail().store(0, Ordering::Release);
        }
    }
}

fn secret_bytes(s: &str) -> [u8; wire::SECRET_SIZE] {
    let mut out = [0u8; wire::SECRET_SIZE];
    let n = s.len().min(wire::SECRET_SIZE);
    out[..n].copy_from_slice(&s.as_bytes()[..n]);
    out
}

/// How long a reconnecting slave waits by default.
pub(super) const DEFAULT_RECONNECT: Duration = Duration::from_millis(100);
