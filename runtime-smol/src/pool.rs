//! The upstream calls of pools (SPEC §22.5): the core hands over an [`UpstreamCall`] with the
//! provider's credential already in its headers; this module makes it with ureq (no redirects, the
//! call's timeout, at most `response_bytes_max` read) and hands back the answer. It never logs a
//! call's headers: they carry the credential.

use std::io::Read as _;
use std::time::Duration;

use proto_core::pool::{UpstreamCall, UpstreamError, UpstreamResponse};

/// Headers of the upstream's answer kept for the core (which passes an allow-listed few on).
pub const UPSTREAM_RESPONSE_HEADERS_MAX: usize = 64;

/// Makes `call` (blocking).
pub fn call(call: &UpstreamCall) -> Result<UpstreamResponse, UpstreamError> {
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_millis(call.timeout_ms))
        .redirects(0)
        .user_agent(crate::client::USER_AGENT)
        .build();
    let mut request = agent.request(&call.method, &call.url);
    for (name, value) in &call.headers {
        request = request.set(name, value);
    }
    let answer = match call.body.is_empty() && call.method == "GET" {
        true => request.call(),
        false => request.send_bytes(&call.body),
    };
    let response = match answer {
        Ok(r) | Err(ureq::Error::Status(_, r)) => r,
        // The transport error's text names the URL, never a header.
        Err(ureq::Error::Transport(t)) => return Err(UpstreamError::Failed(t.kind().to_string())),
    };
    let status = response.status();
    let headers = response
        .headers_names()
        .into_iter()
        .take(UPSTREAM_RESPONSE_HEADERS_MAX)
        .filter_map(|n| response.header(&n).map(|v| (n.clone(), v.to_owned())))
        .collect();
    let mut body = Vec::new();
    let limit = call.response_bytes_max as u64;
    response
        .into_reader()
        .take(limit + 1)
        .read_to_end(&mut body)
        .map_err(|e| UpstreamError::Failed(format!("reading the answer: {}", e.kind())))?;
    if body.len() as u64 > limit {
        return Err(UpstreamError::TooLarge);
    }
    Ok(UpstreamResponse { status, headers, body })
}
