//! Where the API listens: a Unix socket (the default; only its owner may
//! connect) or TCP, which always needs TLS and may require client
//! certificates.
//!
//! Addresses are written `unix:/run/sluice/api.sock` or
//! `tcp:127.0.0.1:7443` (`unix://` and `tcp://` are accepted too; a bare
//! absolute path is a Unix socket).

use super::service::ControlService;
use core::fmt;
use std::fs;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use tokio::net::{TcpListener, UnixListener};
use tokio_stream::wrappers::{TcpListenerStream, UnixListenerStream};
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig};

/// The daemon's and the CLI's default API address.
pub const DEFAULT_API: &str = "unix:/run/sluice/api.sock";

/// An address to listen on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Unix(PathBuf),
    Tcp(SocketAddr),
}

impl FromStr for ListenAddr {
    type Err = String;

    fn from_str(s: &str) -> Result<ListenAddr, String> {
        if let Some(path) = s
            .strip_prefix("unix://")
            .or_else(|| s.strip_prefix("unix:"))
        {
            if path.is_empty() {
                return Err(format!("{s:?}: expected unix:PATH"));
            }
            return Ok(ListenAddr::Unix(PathBuf::from(path)));
        }
        if s.starts_with('/') {
            return Ok(ListenAddr::Unix(PathBuf::from(s)));
        }
        if let Some(addr) = s.strip_prefix("tcp://").or_else(|| s.strip_prefix("tcp:")) {
            return addr.parse().map(ListenAddr::Tcp).map_err(|_| {
                format!("{s:?}: expected tcp:IP:PORT, e.g. tcp:127.0.0.1:7443 or tcp:[::1]:7443")
            });
        }
        Err(format!(
            "{s:?}: expected unix:PATH or tcp:IP:PORT (e.g. {DEFAULT_API} or tcp:127.0.0.1:7443)"
        ))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ListenAddr::Unix(p) => write!(f, "unix:{}", p.display()),
            ListenAddr::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// The files of a TCP listener's TLS set-up (PEM).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate signed by this CA.
    pub client_ca: Option<PathBuf>,
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    fs::read(path).map_err(|e| format!("cannot read the {what} {}: {e}", path.display()))
}

impl TlsFiles {
    pub fn server_config(&self) -> Result<ServerTlsConfig, String> {
        let identity = Identity::from_pem(
            read(&self.cert, "TLS certificate")?,
            read(&self.key, "TLS key")?,
        );
        let mut cfg = ServerTlsConfig::new().identity(identity);
        if let Some(ca) = &self.client_ca {
            cfg = cfg.client_ca_root(Certificate::from_pem(read(ca, "client CA")?));
        }
        Ok(cfg)
    }
}

/// A bound listener, ready to serve.
pub enum Listener {
    Unix {
        listener: UnixListener,
        path: PathBuf,
        /// The socket file's inode, so that only our own file is removed.
        inode: (u64, u64),
    },
    Tcp {
        listener: TcpListener,
        tls: Box<ServerTlsConfig>,
    },
}

impl Listener {
    /// Binds `addr`. A TCP address needs `tls`.
    pub async fn bind(addr: &ListenAddr, tls: Option<&TlsFiles>) -> Result<Listener, String> {
        match addr {
            ListenAddr::Unix(path) => {
                let listener =
                    bind_unix(path).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
                let meta =
                    fs::metadata(path).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
                Ok(Listener::Unix {
                    listener,
                    path: path.clone(),
                    inode: (meta.dev(), meta.ino()),
                })
            }
            ListenAddr::Tcp(sa) => {
                let Some(tls) = tls else {
                    return Err(format!(
                        "cannot listen on {addr}: a TCP listener needs TLS (set api.tls_cert and api.tls_key)"
                    ));
                };
                let tls = tls.server_config()?;
                let listener = TcpListener::bind(sa)
                    .await
                    .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
                Ok(Listener::Tcp {
                    listener,
                    tls: Box::new(tls),
                })
            }
        }
    }

    /// The address it listens on (for TCP with the port the OS chose).
    pub fn local_addr(&self) -> ListenAddr {
        match self {
            Listener::Unix { path, .. } => ListenAddr::Unix(path.clone()),
            Listener::Tcp { listener, .. } => ListenAddr::Tcp(
                listener
                    .local_addr()
                    .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0))),
            ),
        }
    }

    /// Serves `service` until `shutdown` completes and the open requests
    /// have finished. A Unix socket file is removed afterwards.
    pub async fn serve(
        self,
        service: ControlService,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), String> {
        let server = service.into_server();
        match self {
            Listener::Unix {
                listener,
                path,
                inode,
            } => {
                let r = Server::builder()
                    .add_service(server)
                    .serve_with_incoming_shutdown(UnixListenerStream::new(listener), shutdown)
                    .await;
                if let Ok(meta) = fs::symlink_metadata(&path) {
                    if (meta.dev(), meta.ino()) == inode {
                        let _ = fs::remove_file(&path);
                    }
                }
                r.map_err(|e| format!("unix:{}: {}", path.display(), error_chain(&e)))
            }
            Listener::Tcp { listener, tls } => {
                let addr = listener
                    .local_addr()
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                Server::builder()
                    .tls_config(*tls)
                    .map_err(|e| format!("tcp:{addr}: TLS set-up: {}", error_chain(&e)))?
                    .add_service(server)
                    .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                    .await
                    .map_err(|e| format!("tcp:{addr}: {}", error_chain(&e)))
            }
        }
    }
}

/// An error and its sources on one line.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(src) = cur {
        let text = src.to_string();
        if !s.contains(&text) {
            s.push_str(": ");
            s.push_str(&text);
        }
        cur = src.source();
    }
    s
}

/// Binds a Unix socket at `path` that only this user can connect to.
///
/// The socket is bound inside a fresh private directory (mode 0700) next to
/// `path`, made mode 0600 there, and only then renamed into place, so there
/// is no moment at which anyone else could connect. A stale socket at
/// `path` (nothing listening) is replaced; a live one, or a file that is
/// not a socket, is an error.
pub fn bind_unix(path: &Path) -> io::Result<UnixListener> {
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    fs::create_dir_all(&parent)?;
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_socket() => {
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => {
                    return Err(io::Error::new(
                        io::ErrorKind::AddrInUse,
                        "another process is listening on it",
                    ))
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    fs::remove_file(path)?;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(_) => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the path exists and is not a socket; not replacing it",
            ))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "api.sock".into());
    let private = parent.join(format!(".{name}.{}.tmp", std::process::id()));
    let _ = fs::remove_dir_all(&private);
    fs::DirBuilder::new().mode(0o700).create(&private)?;
    let result = (|| {
        let tmp = private.join("s");
        let listener = UnixListener::bind(&tmp)?;
        fs::set_permissions(&tmp, fs::Permissions::from_mode(0o600))?;
        fs::rename(&tmp, path)?;
        Ok(listener)
    })();
    let _ = fs::remove_dir_all(&private);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_and_print() {
        assert_eq!(
            "unix:/run/sluice/api.sock".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/run/sluice/api.sock".into())
        );
        assert_eq!(
            "unix:///tmp/x".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/tmp/x".into())
        );
        assert_eq!(
            "/tmp/x".parse::<ListenAddr>().unwrap(),
            ListenAddr::Unix("/tmp/x".into())
        );
        let t: ListenAddr = "tcp:127.0.0.1:7443".parse().unwrap();
        assert_eq!(t.to_string(), "tcp:127.0.0.1:7443");
        assert!("tcp:localhost:1".parse::<ListenAddr>().is_err());
        assert!("http://x".parse::<ListenAddr>().is_err());
    }

    #[tokio::test]
    async fn unix_sockets_are_private_and_stale_ones_replaced() {
        let dir = std::env::temp_dir().join(format!("sluice-listen-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let path = dir.join("sub/api.sock");
        let l = bind_unix(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A live socket is not taken over.
        let e = bind_unix(&path).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
        drop(l);
        // A stale one is.
        let _l = bind_unix(&path).unwrap();
        // A regular file is never replaced.
        let file = dir.join("file");
        fs::write(&file, "x").unwrap();
        assert!(bind_unix(&file).is_err());
        assert_eq!(fs::read_to_string(&file).unwrap(), "x");
        // No private directories left behind.
        let left: Vec<_> = fs::read_dir(dir.join("sub")).unwrap().collect();
        assert_eq!(left.len(), 1);
        fs::remove_dir_all(&dir).ok();
    }
}
