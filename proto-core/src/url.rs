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

/// The source an address is counted as by the per-source budgets: an IPv4 address itself (an
/// IPv4-mapped IPv6 address as the IPv4 address it maps), an IPv6 address by its first
/// [`crate::limits::SOURCE_V6_PREFIX_BITS`] bits.
pub fn source_prefix(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let mask = u128::MAX << (128 - crate::limits::SOURCE_V6_PREFIX_BITS);
            IpAddr::V6((u128::from(v6) & mask).into())
        }
    }
}

/// IPv4 ranges of IANA's IPv4 Special-Purpose Address Registry (RFC 6890 and its updates), plus
/// multicast: none of them is an ordinary public host. A webhook a remote peer names must not point
/// into any of them (CGNAT space holds cloud metadata services, e.g. 100.100.100.200).
const SPECIAL_V4: [(u32, u8); 19] = [
    (0x0000_0000, 8),  // 0.0.0.0/8 "this network"
    (0x0a00_0000, 8),  // 10.0.0.0/8 private
    (0x6440_0000, 10), // 100.64.0.0/10 shared address space (CGNAT)
    (0x7f00_0000, 8),  // 127.0.0.0/8 loopback
    (0xa9fe_0000, 16), // 169.254.0.0/16 link-local
    (0xac10_0000, 12), // 172.16.0.0/12 private
    (0xc000_0000, 24), // 192.0.0.0/24 IETF protocol assignments
    (0xc000_0200, 24), // 192.0.2.0/24 documentation (TEST-NET-1)
    (0xc01f_c400, 24), // 192.31.196.0/24 AS112-v4
    (0xc034_c100, 24), // 192.52.193.0/24 AMT
    (0xc058_6300, 24), // 192.88.99.0/24 deprecated 6to4 relay anycast
    (0xc0a8_0000, 16), // 192.168.0.0/16 private
    (0xc0af_3000, 24), // 192.175.48.0/24 direct delegation AS112
    (0xc612_0000, 15), // 198.18.0.0/15 benchmarking
    (0xc633_6400, 24), // 198.51.100.0/24 documentation (TEST-NET-2)
    (0xcb00_7100, 24), // 203.0.113.0/24 documentation (TEST-NET-3)
    (0xe000_0000, 4),  // 224.0.0.0/4 multicast
    (0xf000_0000, 4),  // 240.0.0.0/4 reserved
    (0xffff_ffff, 32), // 255.255.255.255/32 limited broadcast
];

/// IPv6 ranges of IANA's IPv6 Special-Purpose Address Registry, plus multicast. IPv4-mapped
/// addresses (`::ffff:0:0/96`) are judged by the IPv4 address they carry.
const SPECIAL_V6: [(u128, u8); 16] = [
    (0, 96),                                         // ::/96 unspecified, loopback, IPv4-compatible
    (0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96), // 64:ff9b::/96 IPv4-IPv6 translation
    (0x0064_ff9b_0001_0000_0000_0000_0000_0000, 48), // 64:ff9b:1::/48 local-use translation
    (0x0100_0000_0000_0000_0000_0000_0000_0000, 64), // 100::/64 discard-only
    (0x0100_0000_0000_0001_0000_0000_0000_0000, 64), // 100:0:0:1::/64 dummy prefix
    (0x2001_0000_0000_0000_0000_0000_0000_0000, 23), // 2001::/23 IETF protocol assignments (Teredo, ORCHID, ...)
    (0x2001_0db8_0000_0000_0000_0000_0000_0000, 32), // 2001:db8::/32 documentation
    (0x2002_0000_0000_0000_0000_0000_0000_0000, 16), // 2002::/16 6to4
    (0x2620_004f_8000_0000_0000_0000_0000_0000, 48), // 2620:4f:8000::/48 direct delegation AS112
    (0x3fff_0000_0000_0000_0000_0000_0000_0000, 20), // 3fff::/20 documentation
    (0x5f00_0000_0000_0000_0000_0000_0000_0000, 16), // 5f00::/16 segment routing (SRv6) SIDs
    (0xfc00_0000_0000_0000_0000_0000_0000_0000, 7),  // fc00::/7 unique-local
    (0xfe80_0000_0000_0000_0000_0000_0000_0000, 10), // fe80::/10 link-local
    (0xfec0_0000_0000_0000_0000_0000_0000_0000, 10), // fec0::/10 deprecated site-local
    (0xff00_0000_0000_0000_0000_0000_0000_0000, 8),  // ff00::/8 multicast
    (0x0000_0000_0000_0000_ffff_0000_0000_0000, 96), // ::ffff:0:0:0/96 IPv4-translated
];

fn in_prefix(addr: u128, net: u128, len: u8, bits: u32) -> bool {
    let shift = bits - u32::from(len);
    if shift >= bits {
        return true;
    }
    (addr >> shift) == (net >> shift)
}

/// Whether an address lies in any special-purpose range of the IANA registries (private, loopback,
/// link-local, CGNAT, documentation, benchmarking, translation, multicast, reserved, ...): anything
/// that is not an ordinary public host. A superset of [`is_local_ip`].
pub fn is_special_purpose_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let a = u128::from(u32::from(v4));
            SPECIAL_V4.iter().any(|&(net, len)| in_prefix(a, u128::from(net), len, 32))
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_special_purpose_ip(IpAddr::V4(v4));
            }
            let a = u128::from(v6);
            SPECIAL_V6.iter().any(|&(net, len)| in_prefix(a, net, len, 128))
        }
    }
}

/// Whether a URL's host is a special-purpose address literal ([`is_special_purpose_ip`]) or
/// `localhost`. Other host names are not judged here: the core does no DNS, and the runtime checks
/// every resolved address again.
pub fn is_special_purpose_url(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(v4)) => is_special_purpose_ip(IpAddr::V4(v4)),
        Some(Host::Ipv6(v6)) => is_special_purpose_ip(IpAddr::V6(v6)),
        Some(Host::Domain(_)) => is_local_url(url),
        None => false,
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
    fn a_source_is_an_ipv4_address_or_an_ipv6_64() {
        let key = |s: &str| source_prefix(s.parse().unwrap());
        assert_eq!(key("203.0.113.9"), key("203.0.113.9"));
        assert_ne!(key("203.0.113.9"), key("203.0.113.10"));
        assert_eq!(key("::ffff:203.0.113.9"), key("203.0.113.9"), "an IPv4-mapped address is its IPv4 address");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), key("2001:db8:1:2:bbbb::2"));
        assert_eq!(key("2001:db8:1:2::1"), "2001:db8:1:2::".parse::<IpAddr>().unwrap());
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
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

    #[test]
    fn special_purpose_ranges_are_refused_at_both_edges() {
        // First and last address of each range, and the public neighbours just outside.
        let inside = [
            "0.0.0.0",
            "0.255.255.255",
            "100.64.0.0",
            "100.100.100.200",
            "100.127.255.255",
            "192.0.0.0",
            "192.0.0.255",
            "192.0.2.1",
            "192.31.196.1",
            "192.52.193.1",
            "192.88.99.1",
            "192.175.48.1",
            "198.18.0.0",
            "198.19.255.255",
            "198.51.100.1",
            "203.0.113.7",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.0",
            "255.255.255.255",
            "10.0.0.1",
            "127.0.0.1",
            "169.254.169.254",
            "172.31.255.255",
            "192.168.1.1",
            "::",
            "::1",
            "::127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b:1::1",
            "100::1",
            "2001::1",
            "2001:1ff:ffff::1",
            "2001:db8::1",
            "2002:c000:0204::1",
            "2620:4f:8000::1",
            "3fff::1",
            "5f00::1",
            "fc00::1",
            "fdff::1",
            "fe80::1",
            "fec0::1",
            "ff02::1",
            "::ffff:100.100.100.200",
            "::ffff:0:1.2.3.4",
        ];
        for s in inside {
            assert!(is_special_purpose_ip(s.parse().unwrap()), "{s} should be special-purpose");
        }
        let outside = [
            "1.1.1.1",
            "8.8.8.8",
            "100.63.255.255",
            "100.128.0.0",
            "172.32.0.1",
            "192.0.1.0",
            "198.17.255.255",
            "198.20.0.0",
            "223.255.255.255",
            "2001:200::1",
            "2001:4860:4860::8888",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ];
        for s in outside {
            assert!(!is_special_purpose_ip(s.parse().unwrap()), "{s} is a public address");
        }
        // Every local address is special-purpose too.
        for s in ["127.0.0.1", "10.1.2.3", "fd00::1", "fe80::1", "::ffff:10.0.0.1"] {
            assert!(is_local_ip(s.parse().unwrap()) && is_special_purpose_ip(s.parse().unwrap()), "{s}");
        }
        assert!(is_special_purpose_url(&validate("http://100.100.100.200/latest").unwrap()));
        assert!(is_special_purpose_url(&validate("http://[64:ff9b::a9fe:a9fe]/").unwrap()));
        assert!(is_special_purpose_url(&validate("http://localhost:9/").unwrap()));
        assert!(!is_special_purpose_url(&validate("http://example.com/").unwrap()));
        assert!(!is_special_purpose_url(&validate("http://8.8.8.8/").unwrap()));
    }
}
