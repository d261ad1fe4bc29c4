//! HTTP/1.1 framing for the peer server: the request head parser and the response writer.
//!
//! Pure functions over bytes, so every refusal is tested without a socket. Only what peers use is
//! supported: `Content-Length` bodies, keep-alive, `Expect: 100-continue`; chunked request bodies
//! are refused (0.5.3's httpx and our ureq always send a length).

use thiserror::Error;

/// Bytes of request line plus headers accepted; a longer head is answered 431.
pub const HEADER_BYTES_MAX: usize = 16 * 1024;
/// Header lines accepted; more are answered 431.
pub const HEADERS_MAX: usize = 64;
/// Longest request target accepted, in bytes (a URL limit plus room for the path prefix).
pub const TARGET_BYTES_MAX: usize = proto_core::limits::URL_BYTES_MAX + 256;

/// The parts of a request head the server uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Head {
    /// Method as sent (`GET`, `POST`, ...).
    pub method: String,
    /// Path without the query string.
    pub path: String,
    /// HTTP/1.1 (true) or HTTP/1.0.
    pub http11: bool,
    /// `Content-Length`, 0 when absent.
    pub content_length: u64,
    /// The client asked for `100 Continue` before sending the body.
    pub expect_continue: bool,
    /// The connection should close after this exchange (`Connection: close`, or HTTP/1.0 without keep-alive).
    pub close: bool,
}

/// Why a request head was refused; each maps to a status and a JSON `error` text.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum HeadError {
    /// The head is longer than [`HEADER_BYTES_MAX`] or has more than [`HEADERS_MAX`] lines.
    #[error("Request header fields too large (at most {HEADERS_MAX} fields, {HEADER_BYTES_MAX} bytes)")]
    TooLarge,
    /// The request line or a header line does not parse, or a length is contradictory.
    #[error("Bad request: {0}")]
    Malformed(&'static str),
    /// The HTTP version is not 1.0 or 1.1.
    #[error("HTTP version not supported")]
    Version,
    /// The body uses a transfer coding (chunked); peers must send `Content-Length`.
    #[error("Transfer-Encoding is not supported; send Content-Length")]
    TransferEncoding,
}

impl HeadError {
    /// The HTTP status answering this error.
    pub fn status(&self) -> u16 {
        match self {
            HeadError::TooLarge => 431,
            HeadError::Malformed(_) => 400,
            HeadError::Version => 505,
            HeadError::TransferEncoding => 501,
        }
    }
}

/// Where the head ends in `buf`: `Some(n)` = the head is `buf[..n]` including the blank line;
/// `Err` as soon as the bytes so far already break a limit (so an endless head is cut early).
pub fn find_head_end(buf: &[u8]) -> Result<Option<usize>, HeadError> {
    let mut lines = 0usize;
    let mut start = 0usize;
    for (i, &b) in buf.iter().enumerate() {
        if b != b'\n' {
            continue;
        }
        let line = &buf[start..i];
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() && lines > 0 {
            return if i + 1 > HEADER_BYTES_MAX { Err(HeadError::TooLarge) } else { Ok(Some(i + 1)) };
        }
        lines += 1;
        // The request line plus HEADERS_MAX fields.
        if lines > HEADERS_MAX + 1 {
            return Err(HeadError::TooLarge);
        }
        start = i + 1;
    }
    if buf.len() > HEADER_BYTES_MAX {
        return Err(HeadError::TooLarge);
    }
    Ok(None)
}

/// Parses a complete head (as delimited by [`find_head_end`]).
pub fn parse_head(raw: &[u8]) -> Result<Head, HeadError> {
    let text = std::str::from_utf8(raw).map_err(|_| HeadError::Malformed("head is not UTF-8"))?;
    let mut lines = text.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed("request line must be METHOD TARGET VERSION"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HeadError::Malformed("method"));
    }
    let http11 = match version {
        "HTTP/1.1" => true,
        "HTTP/1.0" => false,
        v if v.starts_with("HTTP/") => return Err(HeadError::Version),
        _ => return Err(HeadError::Malformed("version")),
    };
    if target.len() > TARGET_BYTES_MAX {
        return Err(HeadError::TooLarge);
    }
    if !target.starts_with('/') {
        return Err(HeadError::Malformed("target must be an absolute path"));
    }
    let path = target.split(['?', '#']).next().unwrap_or_default().to_owned();
    let mut head =
        Head { method: method.to_owned(), path, http11, content_length: 0, expect_continue: false, close: !http11 };
    let mut length: Option<u64> = None;
    for line in lines.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').ok_or(HeadError::Malformed("header line without ':'"))?;
        if name.is_empty() || !name.bytes().all(is_token_byte) {
            return Err(HeadError::Malformed("header name"));
        }
        let value = value.trim_matches([' ', '\t']);
        if name.eq_ignore_ascii_case("content-length") {
            let n: u64 = value.parse().map_err(|_| HeadError::Malformed("Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(HeadError::Malformed("conflicting Content-Length"));
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(HeadError::TransferEncoding);
        } else if name.eq_ignore_ascii_case("connection") {
            let v = value.to_ascii_lowercase();
            if v.contains("close") {
                head.close = true;
            } else if v.contains("keep-alive") {
                head.close = false;
            }
        } else if name.eq_ignore_ascii_case("expect") {
            if value.eq_ignore_ascii_case("100-continue") {
                head.expect_continue = true;
            } else {
                return Err(HeadError::Malformed("unsupported Expect"));
            }
        }
    }
    head.content_length = length.unwrap_or(0);
    Ok(head)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// The reason phrase of the statuses this server sends.
pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        409 => "Conflict",
        411 => "Length Required",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Status",
    }
}

/// A complete response with a JSON body.
pub fn response_bytes(status: u16, body: &[u8], close: bool) -> Vec<u8> {
    let connection = if close { "close" } else { "keep-alive" };
    let mut out = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: {connection}\r\nServer: darkmatter-rs\r\n\r\n",
        reason(status),
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body);
    out
}

/// A refusal: `{"error": text}` with the status.
pub fn error_response(status: u16, text: &str, close: bool) -> Vec<u8> {
    response_bytes(status, &proto_core::wire::error_body(text), close)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plain_post_parses() {
        let raw = b"POST /__darkmatter__/message?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n";
        assert_eq!(find_head_end(raw), Ok(Some(raw.len())));
        let h = parse_head(raw).unwrap();
        assert_eq!(h.method, "POST");
        assert_eq!(h.path, "/__darkmatter__/message");
        assert_eq!(h.content_length, 12);
        assert!(h.http11 && !h.close && !h.expect_continue);
    }

    #[test]
    fn connection_semantics() {
        assert!(parse_head(b"GET / HTTP/1.0\r\n\r\n").unwrap().close);
        assert!(!parse_head(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap().close);
        assert!(parse_head(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap().close);
        assert!(parse_head(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n").unwrap().expect_continue);
    }

    #[test]
    fn endless_heads_are_cut_by_count_and_by_bytes() {
        let mut many = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..HEADERS_MAX {
            many.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        assert_eq!(find_head_end(&many), Ok(None));
        many.extend_from_slice(b"X-last: y\r\n");
        assert_eq!(find_head_end(&many), Err(HeadError::TooLarge));
        let long = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &vec![b'a'; HEADER_BYTES_MAX]].concat();
        assert_eq!(find_head_end(&long), Err(HeadError::TooLarge));
        assert_eq!(HeadError::TooLarge.status(), 431);
    }

    #[test]
    fn malformed_heads_are_refused_with_a_status() {
        for raw in [
            &b"GARBAGE\r\n\r\n"[..],
            b"get / HTTP/1.1\r\n\r\n",
            b"GET nopath HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        ] {
            assert_eq!(parse_head(raw).unwrap_err().status(), 400, "{}", String::from_utf8_lossy(raw));
        }
        assert_eq!(parse_head(b"GET / HTTP/2.0\r\n\r\n").unwrap_err().status(), 505);
        assert_eq!(parse_head(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap_err().status(), 501);
        assert_eq!(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n").unwrap_err().status(),
            400
        );
        assert_eq!(parse_head(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n").unwrap_err().status(), 400);
    }

    #[test]
    fn responses_are_json_with_length() {
        let r = String::from_utf8(error_response(404, "Not Found", true)).unwrap();
        assert!(r.starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(r.contains("Content-Length: 21\r\n") && r.contains("Connection: close"));
        assert!(r.ends_with("{\"error\":\"Not Found\"}"));
    }
}
