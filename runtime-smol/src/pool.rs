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

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use proto_core::pool::UpstreamId;

    /// A one-shot upstream answering `body`.
    fn upstream(body: Vec<u8>) -> String {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = listener.accept() {
                let mut head = [0u8; 1024];
                let _ = s.read(&mut head);
                let _ = write!(s, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
                let _ = s.write_all(&body);
            }
        });
        url
    }

    fn get(url: String, max: usize) -> Result<UpstreamResponse, UpstreamError> {
        let c = UpstreamCall {
            id: UpstreamId(1),
            method: "GET".into(),
            url,
            headers: vec![("authorization".into(), "secret".into())],
            body: Vec::new(),
            timeout_ms: 5_000,
            response_bytes_max: max,
        };
        assert!(!format!("{c:?}").contains("secret"), "a call's Debug never shows a credential");
        call(&c)
    }

    #[test]
    fn an_answer_is_read_up_to_its_limit_and_no_further() {
        assert_eq!(get(upstream(vec![b'x'; 16]), 16).unwrap().body.len(), 16, "at the limit");
        assert_eq!(get(upstream(vec![b'x'; 17]), 16), Err(UpstreamError::TooLarge));
    }
}
