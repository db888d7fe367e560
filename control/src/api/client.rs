//! Connecting to a daemon's API: over its Unix socket, or over TCP with TLS.
//!
//! Addresses: `unix:PATH` (or a bare absolute path), `https://HOST:PORT`,
//! `tcp:HOST:PORT` (TLS, as the daemon's TCP listeners always are), and
//! `http://HOST:PORT` (TLS only if TLS files are given).

use super::listen::error_chain;
use super::pb::control_client::ControlClient;
use super::service::MAX_MESSAGE;
use hyper_util::rt::TokioIo;
use std::path::{Path, PathBuf};
use tokio::net::UnixStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

/// TLS settings of a client (PEM files).
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// The CA that signed the daemon's certificate.
    pub ca: Option<PathBuf>,
    /// A client certificate and key, for daemons that require one.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name to check the daemon's certificate against (default: the
    /// address's host).
    pub domain: Option<String>,
}

impl ClientTls {
    fn any(&self) -> bool {
        self.ca.is_some() || self.cert.is_some() || self.key.is_some()
    }

    fn config(&self, host: &str) -> Result<ClientTlsConfig, String> {
        let read = |p: &Path, what: &str| {
            std::fs::read(p).map_err(|e| format!("cannot read the {what} {}: {e}", p.display()))
        };
        let Some(ca) = &self.ca else {
            return Err("TLS needs --tls-ca: the CA that signed the daemon's certificate".into());
        };
        let mut cfg = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(ca, "CA certificate")?))
            .domain_name(self.domain.clone().unwrap_or_else(|| host.to_string()));
        match (&self.cert, &self.key) {
            (Some(c), Some(k)) => {
                cfg = cfg.identity(Identity::from_pem(
                    read(c, "client certificate")?,
                    read(k, "client key")?,
                ))
            }
            (None, None) => {}
            _ => return Err("--tls-cert and --tls-key go together".into()),
        }
        Ok(cfg)
    }
}

/// Connects to the API at `addr`. Errors are one line for people.
pub async fn connect(addr: &str, tls: &ClientTls) -> Result<ControlClient<Channel>, String> {
    let unix = addr
        .strip_prefix("unix://")
        .or_else(|| addr.strip_prefix("unix:"))
        .or_else(|| addr.starts_with('/').then_some(addr));
    if let Some(path) = unix {
        let path = PathBuf::from(path);
        // The URI is required by the HTTP layer and otherwise unused.
        let endpoint = Endpoint::from_static("http://sluiced.invalid");
        let channel = endpoint
            .connect_with_connector(tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move { UnixStream::connect(path).await.map(TokioIo::new) }
            }))
            .await
            .map_err(|e| {
                format!(
                    "cannot reach sluiced at {addr}: {} (is the daemon running, and may this user open the socket?)",
                    error_chain(&e)
                )
            })?;
        return Ok(client(channel));
    }
    let (url, use_tls) = if let Some(rest) = addr
        .strip_prefix("tcp://")
        .or_else(|| addr.strip_prefix("tcp:"))
    {
        (format!("https://{rest}"), true)
    } else if addr.starts_with("https://") {
        (addr.to_string(), true)
    } else if addr.starts_with("http://") {
        (addr.to_string(), tls.any())
    } else {
        return Err(format!(
            "{addr:?}: expected unix:PATH, https://HOST:PORT or http://HOST:PORT"
        ));
    };
    let url = if use_tls {
        url.replacen("http://", "https://", 1)
    } else {
        url
    };
    let mut endpoint = Endpoint::from_shared(url.clone()).map_err(|e| format!("{addr:?}: {e}"))?;
    if use_tls {
        let uri: Uri = url.parse().map_err(|e| format!("{addr:?}: {e}"))?;
        let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
        endpoint = endpoint
            .tls_config(tls.config(host)?)
            .map_err(|e| format!("TLS set-up: {}", error_chain(&e)))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("cannot reach sluiced at {addr}: {}", error_chain(&e)))?;
    Ok(client(channel))
}

fn client(channel: Channel) -> ControlClient<Channel> {
    ControlClient::new(channel).max_decoding_message_size(MAX_MESSAGE)
}
