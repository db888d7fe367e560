//! Syntax checks shared by every kind: Kubernetes names, label keys and
//! values, IANA service names, IP addresses and CIDRs. Each returns a message
//! saying what was expected, for the caller to attach to a field path.

use ipnet::IpNet;
use std::net::IpAddr;

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn is_alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

fn label_shape(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

/// RFC 1123 label: at most 63 lowercase letters, digits and '-', starting and
/// ending with a letter or digit (Namespace names, port names).
pub fn dns1123_label(s: &str) -> Result<(), String> {
    if s.len() > 63 {
        return Err(format!(
            "must be no more than 63 characters, got {} ({s:?})",
            s.len()
        ));
    }
    if !label_shape(s) {
        return Err(format!(
            "must be a DNS-1123 label (lowercase letters, digits and '-', starting and ending with a letter or digit), got {s:?}"
        ));
    }
    Ok(())
}

/// RFC 1123 subdomain: dot-separated labels, at most 253 characters in all
/// (most object names).
pub fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.len() > 253 {
        return Err(format!(
            "must be no more than 253 characters, got {}",
            s.len()
        ));
    }
    if s.is_empty() || !s.split('.').all(label_shape) {
        return Err(format!(
            "must be a DNS-1123 subdomain (lowercase letters, digits, '-' and '.', starting and ending with a letter or digit), got {s:?}"
        ));
    }
    Ok(())
}

/// RFC 1035 label: like a DNS-1123 label but starting with a letter (Service
/// names).
pub fn dns1035_label(s: &str) -> Result<(), String> {
    if s.len() > 63 {
        return Err(format!(
            "must be no more than 63 characters, got {} ({s:?})",
            s.len()
        ));
    }
    if !label_shape(s) || !s.as_bytes()[0].is_ascii_lowercase() {
        return Err(format!(
            "must be a DNS-1035 label (lowercase letters, digits and '-', starting with a letter and ending with a letter or digit), got {s:?}"
        ));
    }
    Ok(())
}

fn qualified_name_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && is_alnum(b[0])
        && is_alnum(b[b.len() - 1])
        && b.iter()
            .all(|&c| is_alnum(c) || c == b'-' || c == b'_' || c == b'.')
}

/// A label or annotation key: an optional DNS-1123 subdomain prefix and '/',
/// then a name of at most 63 letters, digits, '-', '_' and '.', starting and
/// ending with a letter or digit.
pub fn label_key(s: &str) -> Result<(), String> {
    let (prefix, name) = match s.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    if let Some(p) = prefix {
        if p.is_empty() {
            return Err(format!("prefix before '/' must not be empty, got {s:?}"));
        }
        dns1123_subdomain(p).map_err(|e| format!("prefix of {s:?}: {e}"))?;
    }
    if !qualified_name_part(name) {
        return Err(format!(
            "must be a qualified name: an optional DNS subdomain prefix and '/', then at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit; got {s:?}"
        ));
    }
    Ok(())
}

/// A label value: empty, or at most 63 letters, digits, '-', '_' and '.',
/// starting and ending with a letter or digit.
pub fn label_value(s: &str) -> Result<(), String> {
    if s.is_empty() || qualified_name_part(s) {
        Ok(())
    } else if s.len() > 63 {
        Err(format!(
            "must be no more than 63 characters, got {} ({s:?})",
            s.len()
        ))
    } else {
        Err(format!(
            "must be empty or letters, digits, '-', '_' or '.', starting and ending with a letter or digit; got {s:?}"
        ))
    }
}

/// IANA_SVC_NAME (RFC 6335): at most 15 lowercase letters, digits and '-',
/// with at least one letter, no leading, trailing or doubled '-'. Used for
/// named ports.
pub fn iana_svc_name(s: &str) -> Result<(), String> {
    let b = s.as_bytes();
    let ok = !b.is_empty()
        && b.len() <= 15
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
        && b.iter().any(|c| c.is_ascii_lowercase())
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
        && !s.contains("--");
    if ok {
        Ok(())
    } else {
        Err(format!(
            "must be an IANA_SVC_NAME (at most 15 lowercase letters, digits and '-', with a letter, no leading, trailing or doubled '-'), got {s:?}"
        ))
    }
}

/// A port number 1-65535.
pub fn port_number(p: i32) -> Result<u16, String> {
    if (1..=65535).contains(&p) {
        Ok(p as u16)
    } else {
        Err(format!("must be 1-65535, got {p}"))
    }
}

/// TCP, UDP or SCTP, spelled as Kubernetes does.
pub fn protocol(s: &str) -> Result<Protocol, String> {
    match s {
        "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        "SCTP" => Ok(Protocol::Sctp),
        _ => Err(format!("must be one of TCP, UDP, SCTP, got {s:?}")),
    }
}

/// A transport protocol a service or policy can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// Kubernetes' default when a port names no protocol.
    pub fn from_k8s(s: Option<&str>) -> Option<Protocol> {
        protocol(s.unwrap_or("TCP")).ok()
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Sctp => "SCTP",
        }
    }
}

/// An IP address in canonical text form (no leading zeros, no zone).
pub fn ip(s: &str) -> Result<IpAddr, String> {
    s.parse::<IpAddr>()
        .map_err(|_| format!("must be an IPv4 or IPv6 address, got {s:?}"))
}

/// A CIDR such as `10.0.0.0/8` or `fd00::/64`; host bits may be set.
pub fn cidr(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>().map_err(|_| {
        format!("must be a CIDR (an address, '/', a prefix length), e.g. 10.0.0.0/8 or fd00::/64, got {s:?}")
    })
}

/// The family name Kubernetes uses for an address.
pub fn family(ip: IpAddr) -> &'static str {
    if ip.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_labels_and_subdomains() {
        assert!(dns1123_label("web-1").is_ok());
        assert!(dns1123_label("1abc").is_ok());
        assert!(dns1123_label("Web").is_err());
        assert!(dns1123_label("-a").is_err());
        assert!(dns1123_label("a-").is_err());
        assert!(dns1123_label("a.b").is_err());
        assert!(dns1123_label(&"a".repeat(63)).is_ok());
        assert!(dns1123_label(&"a".repeat(64)).is_err());
        assert!(dns1123_subdomain("a.b-c.d").is_ok());
        assert!(dns1123_subdomain("a..b").is_err());
        assert!(dns1123_subdomain("").is_err());
        assert!(dns1035_label("web").is_ok());
        assert!(dns1035_label("1web").is_err());
    }

    #[test]
    fn label_keys_and_values() {
        assert!(label_key("app").is_ok());
        assert!(label_key("kubernetes.io/metadata.name").is_ok());
        assert!(label_key("app.kubernetes.io/part-of").is_ok());
        assert!(label_key("Foo_bar.baz").is_ok());
        assert!(label_key("/app").is_err());
        assert!(label_key("Example.com/app").is_err());
        assert!(label_key("a/b/c").is_err());
        assert!(label_key(&"k".repeat(64)).is_err());
        assert!(label_key("-app").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("v1.2_x-y").is_ok());
        assert!(label_value("has space").is_err());
        assert!(label_value(&"v".repeat(64)).is_err());
    }

    #[test]
    fn iana_names() {
        assert!(iana_svc_name("http").is_ok());
        assert!(iana_svc_name("web-8080").is_ok());
        assert!(iana_svc_name("8080").is_err());
        assert!(iana_svc_name("a--b").is_err());
        assert!(iana_svc_name("-ab").is_err());
        assert!(iana_svc_name("abcdefghijklmnop").is_err());
        assert!(iana_svc_name("HTTP").is_err());
    }

    #[test]
    fn addresses() {
        assert!(ip("10.0.0.1").is_ok());
        assert!(ip("fd00::1").is_ok());
        assert!(ip("010.0.0.1").is_err());
        assert!(ip("10.0.0.1/8").is_err());
        assert!(cidr("10.0.0.0/8").is_ok());
        assert!(cidr("10.0.0.0/33").is_err());
        assert!(cidr("10.0.0.0").is_err());
        assert!(cidr("::/0").is_ok());
    }
}
