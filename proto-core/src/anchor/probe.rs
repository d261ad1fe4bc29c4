//! The reachability probe (`POST /__darkmatter__/probe_reachability`), restricted as AutoNAT v2's
//! dial-back is: the anchor fetches only the requester's own status page, at the address the
//! request came from.
//!
//! 0.5.3's anchor GETs any http(s) URL a stranger names, so it is an open port scanner and a way into
//! the anchor's own network. Here the only URL ever fetched is rebuilt from its checked parts:
//! `http(s)://<the TCP source address>:<port>/__darkmatter__/status`. A node asks because it cannot
//! test itself (NAT hairpinning makes its own public address answer from inside), and that is the
//! one question the probe answers.

use core::net::IpAddr;

use serde_json::Value;
use url::{Host, Url};

/// The only path a probe may name.
pub const PROBE_PATH: &str = "/__darkmatter__/status";

/// The refusal text of a URL that is not the requester's own status page.
pub const PROBE_REFUSED: &str = "Probes are only made to http(s)://<your address>:<port>/__darkmatter__/status";

/// The URL to fetch for a probe request from `source`, or the text of its 400.
///
/// The host must be an address literal equal to the source (IPv4-mapped IPv6 compared as IPv4); a
/// name is refused, since the anchor would have to trust a resolver's answer at the moment of the
/// fetch (0.5.3 nodes send the address ipify gave them, a literal).
pub fn probe_target(body: &[u8], source: IpAddr) -> Result<String, String> {
    let asked = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("url").and_then(Value::as_str).map(str::to_owned))
        .filter(|u| !u.is_empty())
        .ok_or_else(|| "Missing 'url' field".to_owned())?;
    crate::url::validate(&asked)?;
    let url = Url::parse(&asked).map_err(|e| e.to_string())?;
    let host = match url.host() {
        Some(Host::Ipv4(v4)) => IpAddr::V4(v4),
        Some(Host::Ipv6(v6)) => IpAddr::V6(v6).to_canonical(),
        _ => return Err(PROBE_REFUSED.to_owned()),
    };
    let exact = url.path() == PROBE_PATH
        && url.query().is_none()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none();
    if !exact || host != source.to_canonical() {
        return Err(PROBE_REFUSED.to_owned());
    }
    let port = url.port_or_known_default().ok_or_else(|| PROBE_REFUSED.to_owned())?;
    let host_text = match host {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => format!("[{v6}]"),
    };
    Ok(format!("{}://{host_text}:{port}{PROBE_PATH}", url.scheme()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(url: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({ "url": url })).unwrap()
    }

    const ME: IpAddr = IpAddr::V4(core::net::Ipv4Addr::new(203, 0, 113, 7));

    #[test]
    fn the_requesters_own_status_page_is_probed_rebuilt_from_its_parts() {
        let got = probe_target(&body("http://203.0.113.7:8100/__darkmatter__/status"), ME).unwrap();
        assert_eq!(got, "http://203.0.113.7:8100/__darkmatter__/status");
        let got = probe_target(&body("https://203.0.113.7/__darkmatter__/status"), ME).unwrap();
        assert_eq!(got, "https://203.0.113.7:443/__darkmatter__/status");
        let v6: IpAddr = "2001:db8::5".parse().unwrap();
        let got = probe_target(&body("http://[2001:db8::5]:9/__darkmatter__/status"), v6).unwrap();
        assert_eq!(got, "http://[2001:db8::5]:9/__darkmatter__/status");
        let mapped: IpAddr = "::ffff:203.0.113.7".parse().unwrap();
        assert!(probe_target(&body("http://203.0.113.7:1/__darkmatter__/status"), mapped).is_ok());
    }

    #[test]
    fn anything_but_the_requesters_own_status_page_is_refused() {
        for url in [
            "http://203.0.113.8:8100/__darkmatter__/status",
            "http://127.0.0.1:8100/__darkmatter__/status",
            "http://169.254.169.254/__darkmatter__/status",
            "http://example.com:8100/__darkmatter__/status",
            "http://203.0.113.7:8100/",
            "http://203.0.113.7:8100/__darkmatter__/status?x=1",
            "http://203.0.113.7:8100/__darkmatter__/status#f",
            "http://203.0.113.7:8100/__darkmatter__/status/../admin",
        ] {
            assert_eq!(probe_target(&body(url), ME), Err(PROBE_REFUSED.to_owned()), "{url}");
        }
        assert!(probe_target(&body("ftp://203.0.113.7/__darkmatter__/status"), ME).is_err());
        assert!(probe_target(&body("http://u:p@203.0.113.7:8100/__darkmatter__/status"), ME).is_err());
        assert_eq!(probe_target(b"{}", ME), Err("Missing 'url' field".to_owned()));
        assert_eq!(probe_target(b"not json", ME), Err("Missing 'url' field".to_owned()));
    }
}
