//! Outbound HTTP with ureq 2: peer calls ([`Transmit`]s), card fetches for discovery.
//!
//! Every call has a connect timeout and an overall timeout, follows no redirects, and reads at most
//! [`RESPONSE_BODY_BYTES_MAX`] of the answer. A transmit with `forbid_private` goes through an agent
//! whose resolver drops every special-purpose address of the IANA registries — private, loopback,
//! link-local, CGNAT, documentation, benchmarking, translation, multicast, reserved
//! ([`proto_core::url::is_special_purpose_ip`])
//! *before* connecting, so neither a literal address nor a DNS name (nor a redirect, which is off
//! anyway) can reach the local network. Agents keep idle connections alive for reuse.

use std::io::{self, Read};
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use proto_core::{HttpResponse, Method, Transmit};

/// Largest response body read, in bytes; a longer answer is a transport error.
pub const RESPONSE_BODY_BYTES_MAX: u64 = 1024 * 1024;
/// Longest TCP connect of a peer call, in milliseconds (the overall timeout is the transmit's).
pub const CONNECT_TIMEOUT_MS: u64 = 5_000;
/// Idle keep-alive connections kept in total.
pub const IDLE_CONNECTIONS_MAX: usize = 64;
/// Idle keep-alive connections kept per host.
pub const IDLE_CONNECTIONS_PER_HOST_MAX: usize = 4;
/// Longest overall timeout honoured, in milliseconds, whatever a transmit asks.
pub const CALL_TIMEOUT_MS_MAX: u64 = 120_000;
/// Connect timeout of a discovery probe, in milliseconds (a local port answers in microseconds).
pub const PROBE_CONNECT_MS: u64 = 250;
/// Addresses a resolver returns that are tried.
pub const RESOLVED_ADDRESSES_MAX: usize = 8;

/// The user agent we send.
pub const USER_AGENT: &str = concat!("darkmatter-rs/", env!("CARGO_PKG_VERSION"));

/// Cheap to clone: ureq agents share their pools.
#[derive(Clone)]
pub struct Client {
    any: ureq::Agent,
    public_only: ureq::Agent,
    probe: ureq::Agent,
}

impl Default for Client {
    fn default() -> Self {
        Self::new()
    }
}

fn builder(connect_ms: u64) -> ureq::AgentBuilder {
    ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_millis(connect_ms))
        .redirects(0)
        .max_idle_connections(IDLE_CONNECTIONS_MAX)
        .max_idle_connections_per_host(IDLE_CONNECTIONS_PER_HOST_MAX)
        .user_agent(USER_AGENT)
}

/// Resolves `host:port`, keeping only ordinary public addresses.
fn resolve_public(netloc: &str) -> io::Result<Vec<SocketAddr>> {
    let all: Vec<SocketAddr> = netloc.to_socket_addrs()?.take(RESOLVED_ADDRESSES_MAX).collect();
    let public: Vec<SocketAddr> =
        all.iter().copied().filter(|a| !proto_core::url::is_special_purpose_ip(a.ip())).collect();
    if public.is_empty() {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("refusing to connect to {netloc}: it resolves only to private or special-purpose addresses"),
        ));
    }
    Ok(public)
}

fn resolve_any(netloc: &str) -> io::Result<Vec<SocketAddr>> {
    Ok(netloc.to_socket_addrs()?.take(RESOLVED_ADDRESSES_MAX).collect())
}

impl Client {
    /// Two agents: one for any address, one that refuses local addresses.
    pub fn new() -> Self {
        Self {
            any: builder(CONNECT_TIMEOUT_MS).resolver(resolve_any).build(),
            public_only: builder(CONNECT_TIMEOUT_MS).resolver(resolve_public).build(),
            probe: builder(PROBE_CONNECT_MS).resolver(resolve_any).max_idle_connections(0).build(),
        }
    }

    /// Carries out one transmit (blocking). Any HTTP status is a response; only transport failures,
    /// refused addresses and oversized bodies are errors.
    pub fn call(&self, t: &Transmit) -> Result<HttpResponse, String> {
        // `forbid_private` wins over `probe`: the probe client resolves to any address.
        let agent = if t.forbid_private {
            &self.public_only
        } else if t.probe {
            &self.probe
        } else {
            &self.any
        };
        let timeout = Duration::from_millis(t.timeout_ms.clamp(1, CALL_TIMEOUT_MS_MAX));
        let request = match t.method {
            Method::Get => agent.get(&t.url),
            Method::Post => agent.post(&t.url).set("Content-Type", "application/json"),
            Method::Other => return Err("unsupported method".to_owned()),
        }
        .timeout(timeout);
        let result = match t.method {
            Method::Post => request.send_bytes(&t.body),
            _ => request.call(),
        };
        finish(result)
    }
}

fn finish(result: Result<ureq::Response, ureq::Error>) -> Result<HttpResponse, String> {
    let response = match result {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(ureq::Error::Transport(t)) => return Err(transport_text(&t)),
    };
    let status = response.status();
    let mut body = Vec::new();
    response
        .into_reader()
        .take(RESPONSE_BODY_BYTES_MAX + 1)
        .read_to_end(&mut body)
        .map_err(|e| format!("reading the answer failed: {e}"))?;
    if body.len() as u64 > RESPONSE_BODY_BYTES_MAX {
        return Err(format!("answer exceeds {RESPONSE_BODY_BYTES_MAX} bytes"));
    }
    Ok(HttpResponse { status, body })
}

fn transport_text(t: &ureq::Transport) -> String {
    // The source carries the useful part (connection refused, timed out, refused address).
    match std::error::Error::source(t) {
        Some(src) => format!("{t}: {src}"),
        None => t.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forbid_private_refuses_local_addresses_before_connecting() {
        let c = Client::new();
        for url in [
            "http://127.0.0.1:9/x",
            "http://10.0.0.1:9/x",
            "http://[::1]:9/x",
            "http://169.254.1.1:9/x",
            "http://localhost:9/x",
            "http://100.100.100.200:9/latest/meta-data",
            "http://198.18.0.1:9/x",
            "http://192.0.0.9:9/x",
            "http://240.0.0.1:9/x",
            "http://[64:ff9b::a9fe:a9fe]:9/x",
        ] {
            let t = Transmit {
                id: proto_core::OutboundId(1),
                method: Method::Post,
                url: url.to_owned(),
                body: b"{}".to_vec(),
                timeout_ms: 1_000,
                forbid_private: true,
                probe: false,
            };
            let err = c.call(&t).unwrap_err();
            assert!(err.contains("private"), "{url}: {err}");
        }
    }

    #[test]
    fn connection_refused_is_a_transport_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let t = Transmit {
            id: proto_core::OutboundId(1),
            method: Method::Get,
            url: format!("http://127.0.0.1:{port}/"),
            body: vec![],
            timeout_ms: 1_000,
            forbid_private: false,
            probe: false,
        };
        assert!(Client::new().call(&t).is_err());
    }
}
