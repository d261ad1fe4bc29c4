//! The WormHole's HTTP/1.1 framing: one request per connection (the page is small; keep-alive is
//! not worth its state), read with runtime-smol's bounded head parser ([`runtime_smol::http`]) and
//! the few header fields the security checks need, answered with the security headers on every
//! response. Every bound is a named constant.

use std::io;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use runtime_smol::http::{parse_head, HEADERS_MAX, HEADER_BYTES_MAX};
use smol::io::{AsyncReadExt, AsyncWriteExt};
use smol::net::TcpStream;
use smol::Timer;

/// Largest request body (a message of up to 64 Ki characters as JSON, with room for escapes).
pub const BODY_BYTES_MAX: usize = 512 * 1024;
/// Time for a whole request to arrive, in ms.
pub const REQUEST_READ_MS: u64 = 10_000;
/// Time to write one whole response, in ms.
pub const WRITE_MS: u64 = 10_000;
/// Bytes read from the socket at once.
pub const READ_CHUNK_BYTES: usize = 8 * 1024;

/// The strict content security policy of every response: only this origin's own scripts, styles,
/// images and event stream; no framing, no plugins, no inline code.
pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// One request as the routes see it.
#[derive(Debug, Default)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without the query.
    pub path: String,
    /// The query string, without `?`.
    pub query: String,
    /// The `Host` field.
    pub host: Option<String>,
    /// The `Origin` field.
    pub origin: Option<String>,
    /// The `Cookie` field.
    pub cookie: Option<String>,
    /// The `X-CSRF-Token` field.
    pub csrf: Option<String>,
    /// The body.
    pub body: Vec<u8>,
    /// The TCP source.
    pub peer: Option<IpAddr>,
}

impl Request {
    /// The value of cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.cookie
            .as_deref()?
            .split(';')
            .filter_map(|c| c.trim().split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    }

    /// The value of query parameter `name` (percent-decoded).
    pub fn query(&self, name: &str) -> Option<String> {
        form_value(self.query.as_bytes(), name)
    }
}

/// A value of an `application/x-www-form-urlencoded` body or query.
pub fn form_value(body: &[u8], name: &str) -> Option<String> {
    url::form_urlencoded::parse(body).find(|(k, _)| k == name).map(|(_, v)| v.into_owned())
}

/// One response.
#[derive(Debug)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
    /// Extra header fields.
    pub headers: Vec<(&'static str, String)>,
}

impl Response {
    /// A JSON answer.
    pub fn json(status: u16, v: &serde_json::Value) -> Self {
        Self { status, content_type: "application/json", body: v.to_string().into_bytes(), headers: Vec::new() }
    }

    /// `{"success": false, "error": text}` (0.5.3's error shape).
    pub fn error(status: u16, text: &str) -> Self {
        Self::json(status, &serde_json::json!({"success": false, "error": text}))
    }

    /// A static or rendered asset.
    pub fn asset(content_type: &'static str, body: impl Into<Vec<u8>>) -> Self {
        Self { status: 200, content_type, body: body.into(), headers: Vec::new() }
    }

    /// A `303 See Other` to `location`.
    pub fn redirect(location: &str) -> Self {
        let mut r = Self::asset("text/plain; charset=utf-8", "See Other");
        r.status = 303;
        r.headers.push(("Location", location.to_owned()));
        r
    }

    /// Adds a header field.
    pub fn with(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// The bytes on the wire (the connection closes after it).
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = head(self.status, self.content_type, Some(self.body.len()), &self.headers);
        out.extend_from_slice(&self.body);
        out
    }
}

/// A response head with the security headers every answer carries. (`Referrer-Policy: same-origin`,
/// not `no-referrer`: under `no-referrer` browsers send `Origin: null` on the page's own POSTs, and the
/// Origin check needs the real one.)
pub fn head(status: u16, content_type: &str, len: Option<usize>, extra: &[(&'static str, String)]) -> Vec<u8> {
    let reason = match status {
        303 => "See Other",
        401 => "Unauthorized",
        other => runtime_smol::http::reason(other),
    };
    let mut h = format!("HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\n");
    if let Some(len) = len {
        h.push_str(&format!("Content-Length: {len}\r\n"));
    }
    h.push_str(&format!(
        "Content-Security-Policy: {CSP}\r\nX-Frame-Options: DENY\r\nX-Content-Type-Options: nosniff\r\n\
Referrer-Policy: same-origin\r\nCache-Control: no-store\r\nCross-Origin-Opener-Policy: same-origin\r\n\
Cross-Origin-Resource-Policy: same-origin\r\nConnection: close\r\n"
    ));
    for (k, v) in extra {
        h.push_str(&format!("{k}: {v}\r\n"));
    }
    h.push_str("\r\n");
    h.into_bytes()
}

/// Why a request was not read.
#[derive(Debug)]
pub enum ReadError {
    /// Answer with this status and text, then close.
    Refuse(u16, String),
    /// The connection failed or closed; nothing to answer.
    Gone,
}

async fn within<T>(deadline: Instant, fut: impl std::future::Future<Output = io::Result<T>>) -> io::Result<T> {
    smol::future::or(fut, async {
        Timer::at(deadline).await;
        Err(io::ErrorKind::TimedOut.into())
    })
    .await
}

/// Reads one request within [`REQUEST_READ_MS`].
pub async fn read_request(stream: &mut TcpStream) -> Result<Request, ReadError> {
    let deadline = Instant::now() + Duration::from_millis(REQUEST_READ_MS);
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; READ_CHUNK_BYTES];
    let (head, n) = loop {
        match parse_head(&buf) {
            Ok(Some(done)) => break done,
            Ok(None) => {}
            Err(e) => return Err(ReadError::Refuse(e.status(), e.to_string())),
        }
        let got = read_some(stream, &mut chunk, deadline).await?;
        buf.extend_from_slice(&chunk[..got]);
    };
    if head.content_length > BODY_BYTES_MAX as u64 {
        return Err(ReadError::Refuse(413, format!("Body exceeds {BODY_BYTES_MAX} bytes")));
    }
    let mut req = fields(&buf[..n]);
    req.method = head.method;
    req.path = head.path;
    let mut body = buf.split_off(n);
    let len = head.content_length as usize;
    while body.len() < len {
        let got = read_some(stream, &mut chunk, deadline).await?;
        body.extend_from_slice(&chunk[..got]);
    }
    body.truncate(len);
    req.body = body;
    Ok(req)
}

async fn read_some(stream: &mut TcpStream, chunk: &mut [u8], deadline: Instant) -> Result<usize, ReadError> {
    match within(deadline, stream.read(chunk)).await {
        Ok(0) => Err(ReadError::Gone),
        Ok(n) => Ok(n),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => {
            Err(ReadError::Refuse(408, "Request not received in time".into()))
        }
        Err(_) => Err(ReadError::Gone),
    }
}

/// The fields the checks need, from a head `parse_head` already accepted (so within its bounds).
fn fields(head: &[u8]) -> Request {
    let mut slots = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut parsed = httparse::Request::new(&mut slots);
    let mut req = Request::default();
    if parsed.parse(&head[..head.len().min(HEADER_BYTES_MAX)]).is_err() {
        return req;
    }
    req.query = parsed.path.and_then(|p| p.split_once('?')).map(|(_, q)| q.to_owned()).unwrap_or_default();
    for f in parsed.headers.iter() {
        let value = || String::from_utf8_lossy(f.value).trim().to_owned();
        let slot = match f.name.to_ascii_lowercase().as_str() {
            "host" => &mut req.host,
            "origin" => &mut req.origin,
            "cookie" => &mut req.cookie,
            "x-csrf-token" => &mut req.csrf,
            _ => continue,
        };
        // A repeated field is ambiguous (two Hosts smuggle a second origin): keep none.
        *slot = if slot.is_some() { Some(String::new()) } else { Some(value()) };
    }
    req
}

/// Writes `bytes` within [`WRITE_MS`].
pub async fn write_all(stream: &mut TcpStream, bytes: &[u8]) -> io::Result<()> {
    let deadline = Instant::now() + Duration::from_millis(WRITE_MS);
    within(deadline, async {
        stream.write_all(bytes).await?;
        stream.flush().await
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_interest_are_read_and_duplicates_blanked() {
        let r = fields(b"GET /x?token=a%20b HTTP/1.1\r\nHost: 127.0.0.1:8200\r\nCookie: a=1; dm_wormhole=v\r\nHost: evil\r\nX-CSRF-Token: t\r\n\r\n");
        assert_eq!(r.host.as_deref(), Some(""));
        assert_eq!(r.cookie("dm_wormhole"), Some("v"));
        assert_eq!(r.csrf.as_deref(), Some("t"));
        assert_eq!(r.query("token").as_deref(), Some("a b"));
    }

    #[test]
    fn every_response_carries_the_security_headers() {
        let text = String::from_utf8(Response::error(403, "no").bytes()).unwrap();
        for h in ["Content-Security-Policy: default-src 'self'", "X-Frame-Options: DENY", "frame-ancestors 'none'"] {
            assert!(text.contains(h), "{h}");
        }
    }
}
