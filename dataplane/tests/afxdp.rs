//! AF_XDP ports on real interfaces: each test makes its own veth pair, one
//! end in the test's network namespace (where the port opens) and the other
//! in a fresh namespace, and checks frames both ways with a raw AF_PACKET
//! socket on the far end. Needs root; prints a message and passes without it.
//! Only the veths made here carry traffic.

#![cfg(target_os = "linux")]

use sluice_dataplane::buf::{Batch, PacketPool, PoolCache};
use sluice_dataplane::io::afxdp::{AfXdpConfig, AfXdpPort, XdpAttach, XdpMode};
use sluice_dataplane::io::{Port, RxQueue};
use std::collections::HashSet;
use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// An ethertype for local experiments (IEEE 802 "local experimental 1"), so
/// nothing but the test's frames is counted.
const ETHERTYPE: u16 = 0x88b5;
const MAGIC: &[u8; 4] = b"SLXT";

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

macro_rules! require_root {
    () => {
        if !is_root() {
            println!("skipped: AF_XDP tests need root (network namespaces, veth, BPF)");
            return;
        }
    };
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("{args:?}: {e}"));
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A veth pair `host` (here) / `peer` (in namespace `ns`). Dropping it
/// deletes both, also when the test panicked.
struct Veth {
    ns: String,
    host: String,
    peer: String,
}

impl Veth {
    fn new(queues: u16) -> Veth {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{}", std::process::id(), n);
        let veth = Veth {
            ns: format!("sluice-xdp-{id}"),
            host: format!("sxh{id}"),
            peer: format!("sxp{id}"),
        };
        assert!(veth.host.len() < 16, "interface name too long");
        let q = queues.to_string();
        run(&["ip", "netns", "add", &veth.ns]);
        run(&[
            "ip",
            "link",
            "add",
            &veth.host,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "type",
            "veth",
            "peer",
            "name",
            &veth.peer,
            "numtxqueues",
            &q,
            "numrxqueues",
            &q,
            "netns",
            &veth.ns,
        ]);
        // No IPv6 on either end: the kernels stay quiet on the link.
        std::fs::write(
            format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", veth.host),
            "1",
        )
        .ok();
        run(&[
            "ip",
            "netns",
            "exec",
            &veth.ns,
            "sysctl",
            "-qw",
            &format!("net.ipv6.conf.{}.disable_ipv6=1", veth.peer),
        ]);
        run(&["ip", "link", "set", &veth.host, "up"]);
        run(&["ip", "-n", &veth.ns, "link", "set", &veth.peer, "up"]);
        veth
    }

    fn host_counter(&self, name: &str) -> u64 {
        std::fs::read_to_string(format!("/sys/class/net/{}/statistics/{name}", self.host))
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Whether `ip link` shows an XDP program on the host end.
    fn host_has_xdp(&self) -> bool {
        let out = Command::new("ip")
            .args(["-d", "link", "show", "dev", &self.host])
            .output()
            .expect("ip link show");
        String::from_utf8_lossy(&out.stdout).contains("prog/xdp")
    }
}

impl Drop for Veth {
    fn drop(&mut self) {
        // Deleting one end deletes the pair; the namespace goes last.
        let _ = Command::new("ip")
            .args(["link", "del", &self.host])
            .output();
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).output();
    }
}

/// A raw socket on `veth.peer` inside its namespace, receiving only
/// [`ETHERTYPE`] frames (so never its own transmissions).
struct PeerSocket {
    fd: OwnedFd,
    ifindex: i32,
}

impl PeerSocket {
    fn open(veth: &Veth) -> PeerSocket {
        let ns = format!("/run/netns/{}", veth.ns);
        let peer = veth.peer.clone();
        // setns changes only the calling thread's namespace: do it on a
        // thread of its own. The socket stays in the namespace it was made in.
        std::thread::spawn(move || {
            let nsfile = File::open(&ns).expect("namespace file");
            // SAFETY: a valid namespace fd; affects only this thread.
            assert_eq!(
                unsafe { libc::setns(nsfile.as_raw_fd(), libc::CLONE_NEWNET) },
                0,
                "setns: {}",
                std::io::Error::last_os_error()
            );
            let proto = ETHERTYPE.to_be();
            // SAFETY: plain socket creation.
            let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
            assert!(raw >= 0, "socket: {}", std::io::Error::last_os_error());
            // SAFETY: a new descriptor nothing else owns.
            let fd = unsafe { OwnedFd::from_raw_fd(raw) };
            let name = std::ffi::CString::new(peer).unwrap();
            // SAFETY: a NUL-terminated name.
            let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) } as i32;
            assert!(ifindex > 0, "peer interface not found");
            // SAFETY: an all-zero sockaddr_ll is valid.
            let mut sll: libc::sockaddr_ll = unsafe { core::mem::zeroed() };
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = ifindex;
            // SAFETY: `sll` is a live sockaddr_ll and its size is passed.
            let r = unsafe {
                libc::bind(
                    fd.as_raw_fd(),
                    (&sll as *const libc::sockaddr_ll).cast(),
                    core::mem::size_of::<libc::sockaddr_ll>() as u32,
                )
            };
            assert_eq!(r, 0, "bind: {}", std::io::Error::last_os_error());
            let rcvbuf: libc::c_int = 32 << 20;
            let timeout = libc::timeval {
                tv_sec: 0,
                tv_usec: 200_000,
            };
            // SAFETY: live option values with their sizes.
            unsafe {
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    (&rcvbuf as *const libc::c_int).cast(),
                    4,
                );
                libc::setsockopt(
                    fd.as_raw_fd(),
                    libc::SOL_SOCKET,
                    libc::SO_RCVTIMEO,
                    (&timeout as *const libc::timeval).cast(),
                    core::mem::size_of::<libc::timeval>() as u32,
                );
            }
            PeerSocket { fd, ifindex }
        })
        .join()
        .expect("peer socket thread")
    }

    /// Sends `frame` as a frame of `ethertype` (which the kernel's flow
    /// hash starts from when it picks a transmit queue).
    fn send_as(&self, frame: &[u8], ethertype: u16) {
        // SAFETY: an all-zero sockaddr_ll is valid.
        let mut sll: libc::sockaddr_ll = unsafe { core::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ethertype.to_be();
        sll.sll_ifindex = self.ifindex;
        // SAFETY: a live buffer and address with their lengths.
        let r = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&sll as *const libc::sockaddr_ll).cast(),
                core::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(
            r,
            frame.len() as isize,
            "sendto: {}",
            std::io::Error::last_os_error()
        );
    }

    fn send(&self, frame: &[u8]) {
        // SAFETY: a live buffer and its length on a bound packet socket.
        let r = unsafe { libc::send(self.fd.as_raw_fd(), frame.as_ptr().cast(), frame.len(), 0) };
        assert_eq!(
            r,
            frame.len() as isize,
            "send: {}",
            std::io::Error::last_os_error()
        );
    }

    /// The next test frame's sequence number, or `None` after the timeout.
    fn recv_seq(&self) -> Option<u32> {
        let mut buf = [0u8; 2048];
        loop {
            // SAFETY: a live buffer and its length.
            let r =
                unsafe { libc::recv(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), 0) };
            if r < 0 {
                return None;
            }
            if let Some(seq) = parse(&buf[..r as usize]) {
                return Some(seq);
            }
        }
    }
}

/// A test frame: to `dst`, ethertype [`ETHERTYPE`], the magic and `seq`,
/// padded to `len` bytes with a pattern derived from `seq`.
fn frame(dst: [u8; 6], seq: u32, len: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&[0x02, 0x5c, 0x7e, 0x57, 0, 1]);
    f.extend_from_slice(&ETHERTYPE.to_be_bytes());
    f.extend_from_slice(MAGIC);
    f.extend_from_slice(&seq.to_be_bytes());
    while f.len() < len {
        f.push((f.len() as u32 ^ seq) as u8);
    }
    f
}

/// The sequence number of an intact test frame.
fn parse(f: &[u8]) -> Option<u32> {
    if f.len() < 22 || f[12..14] != ETHERTYPE.to_be_bytes() || &f[14..18] != MAGIC {
        return None;
    }
    let seq = u32::from_be_bytes(f[18..22].try_into().ok()?);
    let intact = f[22..]
        .iter()
        .enumerate()
        .all(|(i, &b)| b == ((i + 22) as u32 ^ seq) as u8);
    intact.then_some(seq)
}

fn length_of(seq: u32) -> usize {
    60 + (seq as usize * 37) % 1440
}

/// Receives from `rx` until `want` test frames arrived or `timeout` passed;
/// returns their sequence numbers.
fn receive(
    rx: &mut dyn RxQueue,
    cache: &mut PoolCache,
    want: usize,
    timeout: Duration,
) -> Vec<u32> {
    let mut seqs = Vec::new();
    let mut batch = Batch::new();
    let deadline = Instant::now() + timeout;
    while seqs.len() < want && Instant::now() < deadline {
        if rx.rx_burst(cache, &mut batch) == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
        for pkt in batch.drain(..) {
            if let Some(seq) = parse(pkt.data()) {
                assert_eq!(pkt.len(), length_of(seq), "frame {seq} changed length");
                seqs.push(seq);
            }
            cache.free(pkt);
        }
    }
    seqs
}

fn open(veth: &Veth, cfg: AfXdpConfig) -> Arc<AfXdpPort> {
    AfXdpPort::open("p0", &veth.host, cfg).unwrap_or_else(|e| panic!("{e}"))
}

/// Frames from the peer reach the port's receive queue, and frames sent
/// through its transmit queue reach the peer, more of them than the
/// socket has transmit frames (so completed frames must be reclaimed and
/// sendto kicked until the ring drains).
fn both_ways(attach: XdpAttach, expect: XdpMode, driver: &str) {
    let veth = Veth::new(1);
    let port = open(
        &veth,
        AfXdpConfig {
            port_id: 7,
            attach,
            ring_size: 256,
            ..AfXdpConfig::default()
        },
    );
    assert_eq!(port.mode(), expect);
    let info = port.info();
    assert_eq!(info.driver, driver);
    assert_eq!((info.rx_queues, info.tx_queues), (1, 1));
    assert!(info.link_up);
    assert!(veth.host_has_xdp());
    let peer = PeerSocket::open(&veth);
    let pool = PacketPool::new("afxdp-test", 4096);
    let mut cache = pool.cache(256);
    let mut rx = port.rx_queue(0).unwrap();
    let mut tx = port.tx_queue(0).unwrap();

    // Peer to port: more frames than the fill ring has, sent in bursts the
    // port drains as they come.
    const RX_FRAMES: u32 = 1000;
    let mut got = Vec::new();
    for chunk in (0..RX_FRAMES).collect::<Vec<_>>().chunks(100) {
        for &seq in chunk {
            peer.send(&frame(info.mac, seq, length_of(seq)));
        }
        got.extend(receive(
            &mut *rx,
            &mut cache,
            chunk.len(),
            Duration::from_secs(5),
        ));
    }
    let unique: HashSet<u32> = got.iter().copied().collect();
    assert_eq!(
        unique.len(),
        RX_FRAMES as usize,
        "received {} of {RX_FRAMES}",
        unique.len()
    );
    let stats = port.stats();
    assert!(stats.rx_packets >= u64::from(RX_FRAMES));
    assert_eq!(stats.rx_dropped, 0);

    // Port to peer: 2000 frames through 256 transmit frames.
    const TX_FRAMES: u32 = 2000;
    let tx_before = veth.host_counter("tx_packets");
    let receiver = {
        let fd = peer.fd.try_clone().unwrap();
        let peer = PeerSocket {
            fd,
            ifindex: peer.ifindex,
        };
        std::thread::spawn(move || {
            let mut seen = HashSet::new();
            while seen.len() < TX_FRAMES as usize {
                match peer.recv_seq() {
                    Some(seq) => {
                        seen.insert(seq);
                    }
                    None => break,
                }
            }
            seen
        })
    };
    let mut seq = 0;
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut batch = Batch::new();
    while seq < TX_FRAMES && Instant::now() < deadline {
        while !batch.is_full() && seq < TX_FRAMES {
            let mut pkt = cache.alloc().expect("pool buffer");
            assert!(pkt.fill(&frame([0xff; 6], seq, length_of(seq))));
            batch.push(pkt);
            seq += 1;
        }
        tx.tx_burst(&mut batch, &mut cache);
        if !batch.is_empty() {
            // Ring or frames full: let the kernel catch up, then retry the rest.
            tx.flush();
            std::thread::yield_now();
        }
    }
    assert!(batch.is_empty(), "the port stopped taking frames");
    let settle = Instant::now() + Duration::from_secs(2);
    while Instant::now() < settle
        && veth.host_counter("tx_packets") - tx_before < u64::from(TX_FRAMES)
    {
        tx.flush();
        std::thread::sleep(Duration::from_millis(1));
    }
    let seen = receiver.join().unwrap();
    assert_eq!(
        seen.len(),
        TX_FRAMES as usize,
        "the peer received {} of {TX_FRAMES}",
        seen.len()
    );
    assert!(veth.host_counter("tx_packets") - tx_before >= u64::from(TX_FRAMES));
    let stats = port.stats();
    assert_eq!(stats.tx_packets, u64::from(TX_FRAMES));
    drop((rx, tx));
    drop(cache);
    assert_eq!(pool.available(), 4096, "every pool buffer came back");
}

#[test]
fn native_mode_on_veth_both_ways() {
    require_root!();
    both_ways(XdpAttach::Auto, XdpMode::Native, "afxdp-native-copy");
}

#[test]
fn generic_mode_both_ways() {
    require_root!();
    both_ways(XdpAttach::Generic, XdpMode::Generic, "afxdp-generic-copy");
}

/// Dropping the port detaches the program; the interface can be opened
/// again at once, and queue handles come back when dropped.
#[test]
fn drop_detaches_and_queues_are_exclusive() {
    require_root!();
    let veth = Veth::new(1);
    let port = open(&veth, AfXdpConfig::default());
    let rx = port.rx_queue(0).unwrap();
    assert!(port.rx_queue(0).is_err(), "a receive queue is taken once");
    assert!(port.rx_queue(1).is_err(), "no queue 1");
    drop(rx);
    assert!(
        port.rx_queue(0).is_ok(),
        "a dropped handle gives the queue back"
    );
    assert!(
        AfXdpPort::open("again", &veth.host, AfXdpConfig::default()).is_err(),
        "a second port cannot take the interface's hook or queue"
    );
    drop(port);
    assert!(!veth.host_has_xdp(), "the program is detached on drop");
    let port = open(&veth, AfXdpConfig::default());
    assert_eq!(port.mode(), XdpMode::Native);
    drop(port);
    assert!(!veth.host_has_xdp());
}

/// What cannot be done is refused with a reason, and leaves nothing behind.
#[test]
fn impossible_configurations_are_refused() {
    require_root!();
    let veth = Veth::new(1);
    let e = AfXdpPort::open(
        "p",
        &veth.host,
        AfXdpConfig {
            zerocopy: true,
            ..AfXdpConfig::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("zero-copy"), "{e}");
    let e = AfXdpPort::open(
        "p",
        &veth.host,
        AfXdpConfig {
            queues: 2,
            ..AfXdpConfig::default()
        },
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("2 queues asked for"), "{e}");
    let e = AfXdpPort::open("p", "sx-missing0", AfXdpConfig::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("no interface"), "{e}");
    assert!(!veth.host_has_xdp());
    // And the interface is still usable.
    drop(open(&veth, AfXdpConfig::default()));
}

/// Two queues: each has its own socket; the peer's flows are spread over
/// its two transmit queues, which veth maps to our two receive queues, and
/// every frame arrives on one of them; both transmit queues reach the peer.
#[test]
fn two_queues() {
    use sluice_dataplane::wire::builder::PacketBuilder;
    require_root!();
    let veth = Veth::new(2);
    let port = open(&veth, AfXdpConfig::default());
    let info = port.info();
    assert_eq!((info.rx_queues, info.tx_queues), (2, 2));
    let peer = PeerSocket::open(&veth);
    let pool = PacketPool::new("afxdp-test", 4096);
    let mut cache = pool.cache(256);
    let mut rx: Vec<_> = (0..2).map(|q| port.rx_queue(q).unwrap()).collect();

    // UDP flows with 200 source ports: the peer's transmit queue is chosen
    // by the flow hash.
    let sent = 200u32;
    for seq in 0..sent {
        let mut payload = MAGIC.to_vec();
        payload.extend_from_slice(&seq.to_be_bytes());
        let f = PacketBuilder::new([0x02, 0x5c, 0x7e, 0x57, 0, 1], info.mac)
            .ipv4([10, 9, 0, 1], [10, 9, 0, 2])
            .udp(20_000 + seq as u16, 4789)
            .payload(&payload)
            .build();
        peer.send_as(&f, 0x0800);
    }
    let udp_seq = |f: &[u8]| {
        (f.len() >= 50 && f[12..14] == [8, 0] && &f[42..46] == MAGIC)
            .then(|| u32::from_be_bytes(f[46..50].try_into().unwrap()))
    };
    let mut per_queue = [0usize; 2];
    let mut all = HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while all.len() < sent as usize && Instant::now() < deadline {
        for (q, rx) in rx.iter_mut().enumerate() {
            let mut batch = Batch::new();
            rx.rx_burst(&mut cache, &mut batch);
            for pkt in batch.drain(..) {
                if let Some(seq) = udp_seq(pkt.data()) {
                    assert_eq!(pkt.rx_queue, q as u16);
                    per_queue[q] += 1;
                    all.insert(seq);
                }
                cache.free(pkt);
            }
        }
        std::thread::sleep(Duration::from_micros(200));
    }
    assert_eq!(
        all.len(),
        sent as usize,
        "received {} of {sent} ({per_queue:?} per queue)",
        all.len()
    );
    assert!(
        per_queue.iter().all(|&n| n > 0),
        "both queues received: {per_queue:?}"
    );

    // Both transmit queues reach the peer.
    for q in 0..2u16 {
        let mut tx = port.tx_queue(q).unwrap();
        let mut batch = Batch::new();
        let seq = 10_000 + u32::from(q);
        let mut pkt = cache.alloc().unwrap();
        assert!(pkt.fill(&frame([0xff; 6], seq, length_of(seq))));
        batch.push(pkt);
        assert_eq!(tx.tx_burst(&mut batch, &mut cache), 1);
        tx.flush();
        assert_eq!(peer.recv_seq(), Some(seq), "from transmit queue {q}");
    }
}

/// The router forwards real traffic between two AF_XDP ports: a client
/// namespace pings a server namespace through Sluice, and Sluice's own
/// address (ARP and echo answered by the slow path, sent through the port);
/// then sends 256 KiB over TCP to the server (checksum and segmentation
/// offloads off on the namespaces' ends: XDP sees frames as the wire
/// would carry them only then).
#[test]
fn the_router_forwards_ping_and_tcp_between_namespaces() {
    use sluice_dataplane::engine::{Engine, EngineConfig};
    use sluice_dataplane::stages::router;
    use sluice_dataplane::tables::TablesBuilder;
    require_root!();
    if Command::new("ping").arg("-V").output().is_err() {
        println!("skipped: no ping");
        return;
    }
    let client = Veth::new(1);
    let server = Veth::new(1);
    for (v, addr, gw) in [
        (&client, "10.0.0.10/24", "10.0.0.1"),
        (&server, "10.0.1.10/24", "10.0.1.1"),
    ] {
        run(&["ip", "-n", &v.ns, "addr", "add", addr, "dev", &v.peer]);
        run(&["ip", "-n", &v.ns, "route", "add", "default", "via", gw]);
        run(&[
            "ip", "netns", "exec", &v.ns, "ethtool", "-K", &v.peer, "tx", "off", "tso", "off",
            "gso", "off", "gro", "off",
        ]);
    }
    let p0 = open(
        &client,
        AfXdpConfig {
            port_id: 0,
            ..AfXdpConfig::default()
        },
    );
    let p1 = open(
        &server,
        AfXdpConfig {
            port_id: 1,
            ..AfXdpConfig::default()
        },
    );
    let mut b = TablesBuilder::new();
    let id0 = b.port("p0", 0, p0.info().mac, 1500);
    let id1 = b.port("p1", 0, p1.info().mac, 1500);
    b.address(id0, "10.0.0.1".parse().unwrap(), 24).unwrap();
    b.address(id1, "10.0.1.1".parse().unwrap(), 24).unwrap();
    let ports: Vec<Arc<dyn Port>> = vec![p0.clone(), p1.clone()];
    let engine =
        Engine::start(ports, b.build().unwrap(), &EngineConfig::default(), router).unwrap();
    let ping = |dst: &str| {
        Command::new("ip")
            .args([
                "netns", "exec", &client.ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", "-q", dst,
            ])
            .output()
            .expect("ping")
    };
    let own = ping("10.0.0.1");
    let across = ping("10.0.1.10");

    let payload: Vec<u8> = (0..256 * 1024u32).map(|i| (i % 251) as u8).collect();
    let listener = Command::new("ip")
        .args([
            "netns", "exec", &server.ns, "timeout", "20", "nc", "-l", "8080",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("nc -l");
    // Read while the client sends: a full pipe would stall the server.
    let listener = std::thread::spawn(move || listener.wait_with_output());
    std::thread::sleep(Duration::from_millis(300));
    let mut sender = Command::new("ip")
        .args([
            "netns",
            "exec",
            &client.ns,
            "timeout",
            "20",
            "nc",
            "-N",
            "10.0.1.10",
            "8080",
        ])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .expect("nc");
    {
        use std::io::Write;
        let mut stdin = sender.stdin.take().unwrap();
        stdin.write_all(&payload).expect("send the payload");
    }
    let sent_ok = sender.wait().expect("nc").success();
    let received = listener.join().unwrap().expect("nc -l").stdout;
    let stats = (p0.stats(), p1.stats());
    engine.stop();
    assert!(sent_ok, "the TCP client failed");
    assert!(
        received == payload,
        "the server received {} of {} bytes{}",
        received.len(),
        payload.len(),
        if received.len() == payload.len() {
            ", different"
        } else {
            ""
        }
    );
    assert!(
        own.status.success(),
        "ping to Sluice's address: {}",
        String::from_utf8_lossy(&own.stdout)
    );
    assert!(
        across.status.success(),
        "ping through Sluice: {} (port stats {stats:?})",
        String::from_utf8_lossy(&across.stdout)
    );
    // Echo requests and replies crossed both ports, with ARP on each side.
    assert!(
        stats.0.rx_packets >= 6 && stats.0.tx_packets >= 6,
        "{stats:?}"
    );
    assert!(
        stats.1.rx_packets >= 3 && stats.1.tx_packets >= 3,
        "{stats:?}"
    );
}
