//! Network namespaces and veth pairs for tests that send real frames
//! through the kernel: the AF_PACKET and TAP backends' tests and the
//! end-to-end tests of the daemon.
//!
//! Every namespace is named `sluicetest-TAG-PID-N`, so parallel tests and
//! parallel test processes never collide, and is deleted when its [`Netns`]
//! is dropped (also when a test panics), after killing what still runs in
//! it; deleting a namespace destroys the veths in it. Namespaces left by a
//! test process that was killed outright are removed by the next test that
//! makes one (their PID no longer exists).
//!
//! All of it needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN) and iproute2;
//! [`can_run`] says whether a test should skip.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Once;

const PREFIX: &str = "sluicetest-";

/// Whether the process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Whether namespace tests can run here; prints why `test` is skipped when
/// not (not root, or no `ip`).
pub fn can_run(test: &str) -> bool {
    if !is_root() {
        eprintln!("skipping {test}: needs root to create network namespaces");
        return false;
    }
    let ip = Command::new("ip")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    if !matches!(ip, Ok(s) if s.success()) {
        eprintln!("skipping {test}: needs iproute2 (`ip`)");
        return false;
    }
    true
}

/// Whether `program` is on the PATH.
pub fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs `program args` and returns its stdout; panics with its stderr when
/// it fails.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    check(&format!("{program} {}", args.join(" ")), out)
}

fn check(what: &str, out: Output) -> String {
    if !out.status.success() {
        panic!(
            "`{what}` failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A network namespace that exists until dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
}

impl Netns {
    /// Creates `sluicetest-TAG-PID-N` with its loopback up. Panics on failure.
    pub fn new(tag: &str) -> Netns {
        static SWEEP: Once = Once::new();
        static N: AtomicU32 = AtomicU32::new(0);
        SWEEP.call_once(remove_stale);
        let name = format!(
            "{PREFIX}{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        run("ip", &["netns", "add", &name]);
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `ip -n NAME args...`; panics on failure.
    pub fn ip(&self, args: &[&str]) -> String {
        let mut all = vec!["-n", &self.name];
        all.extend_from_slice(args);
        run("ip", &all)
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// Runs a shell command line inside the namespace and returns its
    /// output, whatever its exit status.
    pub fn try_sh(&self, line: &str) -> Output {
        self.command("sh")
            .args(["-c", line])
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run ip netns exec: {e}"))
    }

    /// Runs a shell command line inside the namespace; panics on failure.
    pub fn sh(&self, line: &str) -> String {
        check(&format!("[{}] {line}", self.name), self.try_sh(line))
    }

    /// Sets a sysctl inside the namespace.
    pub fn sysctl(&self, key: &str, value: &str) {
        self.sh(&format!("sysctl -qw {key}={value}"));
    }

    /// Turns IPv6 off in the namespace (for interfaces made from now on
    /// too), so the kernel sends no router or neighbour solicitations of
    /// its own.
    pub fn disable_ipv6(&self) {
        self.sysctl("net.ipv6.conf.all.disable_ipv6", "1");
        self.sysctl("net.ipv6.conf.default.disable_ipv6", "1");
    }

    /// Runs `f` on a thread that has entered the namespace: sockets and
    /// devices it opens belong to the namespace and stay there when used
    /// from other threads.
    pub fn enter<T: Send>(&self, f: impl FnOnce() -> T + Send) -> T {
        let path = format!("/run/netns/{}", self.name);
        std::thread::scope(|s| {
            s.spawn(|| {
                let file = File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
                // SAFETY: setns on a namespace file we hold open; it changes
                // only this (scoped, soon finished) thread's namespace.
                let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
                f()
            })
            .join()
            .unwrap_or_else(|e| std::panic::resume_unwind(e))
        })
    }

    /// The MAC address of `dev` in this namespace.
    pub fn mac(&self, dev: &str) -> [u8; 6] {
        let out = self.ip(&["-o", "link", "show", "dev", dev]);
        let at = out.find("link/ether ").expect("an Ethernet device") + 11;
        parse_mac(&out[at..at + 17])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        delete(&self.name);
    }
}

/// Parses `aa:bb:cc:dd:ee:ff`. Panics on anything else.
pub fn parse_mac(s: &str) -> [u8; 6] {
    let mut mac = [0u8; 6];
    let mut parts = s.trim().split(':');
    for b in mac.iter_mut() {
        *b = u8::from_str_radix(parts.next().expect("six bytes"), 16).expect("hex");
    }
    mac
}

/// Formats a MAC as `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Makes a veth pair: `a_dev` in `a`, `b_dev` in `b` (which may be the same
/// namespace), both up. It disappears with either namespace.
pub fn veth(a: &Netns, a_dev: &str, b: &Netns, b_dev: &str) {
    a.ip(&[
        "link", "add", "name", a_dev, "type", "veth", "peer", "name", b_dev, "netns", &b.name,
    ]);
    a.ip(&["link", "set", "dev", a_dev, "up"]);
    b.ip(&["link", "set", "dev", b_dev, "up"]);
}

fn delete(name: &str) {
    // Whatever still runs in the namespace would keep it alive after its
    // name is gone.
    if let Ok(out) = Command::new("ip").args(["netns", "pids", name]).output() {
        for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            if let Ok(pid) = pid.parse::<i32>() {
                // SAFETY: kill(2) on a process id read just now; the worst
                // case is a signal to a process that already exited.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
    let _ = Command::new("ip")
        .args(["netns", "del", name])
        .stderr(Stdio::null())
        .status();
}

/// Deletes `sluicetest-TAG-PID-N` namespaces whose process is gone.
fn remove_stale() {
    let Ok(dir) = std::fs::read_dir("/run/netns") else {
        return;
    };
    for entry in dir.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(PREFIX) else {
            continue;
        };
        let mut fields = rest.rsplit('-');
        let (Some(_n), Some(pid)) = (fields.next(), fields.next()) else {
            continue;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            continue;
        };
        if pid != std::process::id() && !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            delete(&name);
        }
    }
}
