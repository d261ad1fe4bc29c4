//! URL rules: what a peer URL or webhook may be, how peer base URLs are normalised, and which
//! addresses count as local.

use core::net::IpAddr;

use url::{Host, Url};

use crate::limits::URL_BYTES_MAX;

/// Checks a URL the way every peer-supplied URL is checked: at most [`URL_BYTES_MAX`] bytes, scheme
/// http or https, a host. Returns the parsed URL. Error texts follow 0.5.3's.
pub fn validate(text: &str) -> Result<Url, String> {
    if text.len() > URL_BYTES_MAX {
        return Err(format!("URL exceeds maximum length ({URL_BYTES_MAX} chars)."));
    }
    // The WHATWG parser silently strips tabs and newlines; we refuse them (and every other control
    // character or space) so the string we store, sign and send is the one that was checked.
    if text.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err("URL must not contain spaces or control characters.".to_owned());
    }
    let url = Url::parse(text).map_err(|e| format!("URL is not valid: {e}."))?;
    if url.scheme() != "http" && url.scheme() != "https" {
        return Err(format!("URL scheme must be http or https, got '{}'.", url.scheme()));
    }
    if url.host().is_none() {
        return Err("URL has no hostname.".to_owned());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("URL must not carry credentials.".to_owned());
    }
    Ok(url)
}

/// A peer's base URL: no trailing `/`, and one trailing `/mcp` or `/__darkmatter__` removed, as
/// 0.5.3 stores either form.
pub fn base(text: &str) -> String {
    let trimmed = text.trim_end_matches('/');
    let trimmed = trimmed.strip_suffix("/mcp").or_else(|| trimmed.strip_suffix("/__darkmatter__")).unwrap_or(trimmed);
    trimmed.trim_end_matches('/').to_owned()
}

/// `<base>/__darkmatter__/<path>` for a stored peer URL.
pub fn endpoint(peer_url: &str, path: &str) -> String {
    format!("{}/__darkmatter__/{}", base(peer_url), path)
}

/// Whether an address is loopback, private, link-local, unique-local or unspecified: an address that
/// names this machine or its local network.
pub fn is_local_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_local_ip(IpAddr::V4(v4));
            }
            let first = v6.segments()[0];
            v6.is_loopback() || v6.is_unspecified() || (first & 0xfe00) == 0xfc00 || (first & 0xffc0) == 0xfe80
        }
    }
}

/// Whether a URL's host is a local address literal or `localhost`. Host names other than
/// `localhost` are not local: the core does no DNS, and the runtime re-checks resolved addresses.
pub fn is_local_url(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(v4)) => is_local_ip(IpAddr::V4(v4)),
        Some(Host::Ipv6(v6)) => is_local_ip(IpAddr::V6(v6)),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost") || d.to_ascii_lowercase().ends_with(".localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_follows_the_limits() {
        assert!(validate("http://a.example:8100").is_ok());
        assert!(validate("https://a.example/x").is_ok());
        assert!(validate("ftp://a.example").unwrap_err().contains("got 'ftp'"));
        assert!(validate("http://user:pw@a.example").is_err());
        assert!(validate("http://a.example/\nx").is_err());
        assert!(validate("http://a.example/\tx").is_err());
        assert!(validate("http://a.example/ x").is_err());
        let at_limit = format!("http://a.example/{}", "x".repeat(URL_BYTES_MAX - 17));
        assert_eq!(at_limit.len(), URL_BYTES_MAX);
        assert!(validate(&at_limit).is_ok());
        let over = format!("{at_limit}x");
        assert!(validate(&over).unwrap_err().contains("maximum length"));
    }

    #[test]
    fn base_strips_one_known_suffix() {
        assert_eq!(base("http://h:1/mcp"), "http://h:1");
        assert_eq!(base("http://h:1/__darkmatter__/"), "http://h:1");
        assert_eq!(base("http://h:1/"), "http://h:1");
        assert_eq!(endpoint("http://h:1/mcp", "message"), "http://h:1/__darkmatter__/message");
    }

    #[test]
    fn local_addresses() {
        for s in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.9",
            "172.16.0.1",
            "169.254.1.1",
            "::1",
            "fd00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_local_ip(s.parse().unwrap()), "{s}");
        }
        for s in ["8.8.8.8", "203.0.113.7", "100.64.0.1", "2001:db8::1", "172.32.0.1"] {
            assert!(!is_local_ip(s.parse().unwrap()), "{s}");
        }
        assert!(is_local_url(&validate("http://localhost:8100").unwrap()));
        assert!(!is_local_url(&validate("http://example.com").unwrap()));
    }
}
