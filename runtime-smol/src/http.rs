//! HTTP/1.1 framing for the peer server: the request head parser and the response writer.
//!
//! Pure functions over bytes, so every refusal is tested without a socket. Only what peers use is
//! supported: `Content-Length` bodies, keep-alive, `Expect: 100-continue`; chunked request bodies
//! are refused (0.5.3's httpx and our ureq always send a length).
//!
//! ## What httparse does and what we bound ourselves
//! [`httparse`] reads the head's grammar: the request line (method token, target, `HTTP/1.0` or
//! `HTTP/1.1`), header names as tokens, header values free of control bytes, CRLF or bare-LF line
//! ends, and it stops with `TooManyHeaders` once the fields outrun the slots we hand it. It never
//! allocates and never reads past the slice it is given. What stays ours:
//! - the byte cap [`HEADER_BYTES_MAX`]: httparse is only ever shown the first that many bytes, so an
//!   endless head is refused without scanning past the cap;
//! - the field cap [`HEADERS_MAX`]: the number of slots given to httparse, its `TooManyHeaders`
//!   answered 431 like the byte cap;
//! - what a request must be to reach the core: an upper-case method, an absolute-path target of at
//!   most [`TARGET_BYTES_MAX`] bytes, and a `Content-Length` that is one run of digits (repeats must
//!   agree); `Transfer-Encoding` is refused, `Connection` and `Expect` are read here;
//! - the statuses and JSON texts of every refusal ([`HeadError`]).

use thiserror::Error;

/// Bytes of request line plus headers accepted; a longer head is answered 431.
pub const HEADER_BYTES_MAX: usize = 16 * 1024;
/// Header fields accepted; more are answered 431.
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
    /// The query string (after `?`, before any `#`), still percent-encoded; empty when absent.
    pub query: String,
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
    /// The head is longer than [`HEADER_BYTES_MAX`], has more than [`HEADERS_MAX`] fields, or its
    /// target is longer than [`TARGET_BYTES_MAX`].
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

/// The request head at the start of `buf`: `Ok(Some((head, n)))` when it is complete and is
/// `buf[..n]` (blank line included; what follows is body or the next request), `Ok(None)` while
/// more bytes are needed, `Err` as soon as the bytes so far break the grammar or a limit (so an
/// endless head is cut early).
pub fn parse_head(buf: &[u8]) -> Result<Option<(Head, usize)>, HeadError> {
    let mut fields = [httparse::EMPTY_HEADER; HEADERS_MAX];
    let mut req = httparse::Request::new(&mut fields);
    let shown = &buf[..buf.len().min(HEADER_BYTES_MAX)];
    match req.parse(shown) {
        Ok(httparse::Status::Complete(n)) => Ok(Some((head_of(&req)?, n))),
        // The first HEADER_BYTES_MAX bytes hold no complete head, and more have arrived.
        Ok(httparse::Status::Partial) if buf.len() > HEADER_BYTES_MAX => Err(HeadError::TooLarge),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(grammar_error(e, shown)),
    }
}

/// Maps httparse's refusal to ours.
fn grammar_error(e: httparse::Error, buf: &[u8]) -> HeadError {
    match e {
        httparse::Error::TooManyHeaders => HeadError::TooLarge,
        // httparse knows only 1.0 and 1.1; a version we can name is 505, anything else 400.
        httparse::Error::Version if version_token(buf).starts_with(b"HTTP/") => HeadError::Version,
        httparse::Error::Version => HeadError::Malformed("version"),
        httparse::Error::HeaderName => HeadError::Malformed("header name"),
        httparse::Error::HeaderValue => HeadError::Malformed("header value"),
        httparse::Error::NewLine => HeadError::Malformed("line ending"),
        httparse::Error::Token | httparse::Error::Status => {
            HeadError::Malformed("request line must be METHOD TARGET VERSION")
        }
    }
}

/// What stands after the second space of the request line (httparse skips leading blank lines too).
fn version_token(buf: &[u8]) -> &[u8] {
    let start = buf.iter().position(|b| !matches!(b, b'\r' | b'\n')).unwrap_or(buf.len());
    let line = buf[start..].split(|&b| b == b'\n').next().unwrap_or_default();
    line.splitn(3, |&b| b == b' ').nth(2).unwrap_or_default()
}

/// Our rules over what httparse accepted.
fn head_of(req: &httparse::Request<'_, '_>) -> Result<Head, HeadError> {
    // httparse fills all three before it reports a complete head.
    let (Some(method), Some(target), Some(minor)) = (req.method, req.path, req.version) else {
        return Err(HeadError::Malformed("request line must be METHOD TARGET VERSION"));
    };
    // Methods are case-sensitive and every one we serve is upper case.
    if !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(HeadError::Malformed("method"));
    }
    if target.len() > TARGET_BYTES_MAX {
        return Err(HeadError::TooLarge);
    }
    if !target.starts_with('/') {
        return Err(HeadError::Malformed("target must be an absolute path"));
    }
    let http11 = minor == 1;
    let path = target.split(['?', '#']).next().unwrap_or_default().to_owned();
    let query =
        target.split('#').next().unwrap_or_default().split_once('?').map(|(_, q)| q.to_owned()).unwrap_or_default();
    let mut head = Head {
        method: method.to_owned(),
        path,
        query,
        http11,
        content_length: 0,
        expect_continue: false,
        close: !http11,
    };
    let mut length: Option<u64> = None;
    for field in req.headers.iter() {
        apply_field(&mut head, &mut length, field.name, field.value)?;
    }
    head.content_length = length.unwrap_or(0);
    Ok(head)
}

/// Reads one header field into `head`; fields we do not use are ignored.
fn apply_field(head: &mut Head, length: &mut Option<u64>, name: &str, value: &[u8]) -> Result<(), HeadError> {
    if name.eq_ignore_ascii_case("content-length") {
        let n = content_length(value)?;
        if length.is_some_and(|l| l != n) {
            return Err(HeadError::Malformed("conflicting Content-Length"));
        }
        *length = Some(n);
    } else if name.eq_ignore_ascii_case("transfer-encoding") {
        return Err(HeadError::TransferEncoding);
    } else if name.eq_ignore_ascii_case("connection") {
        let v = value.to_ascii_lowercase();
        if contains(&v, b"close") {
            head.close = true;
        } else if contains(&v, b"keep-alive") {
            head.close = false;
        }
    } else if name.eq_ignore_ascii_case("expect") {
        if !value.eq_ignore_ascii_case(b"100-continue") {
            return Err(HeadError::Malformed("unsupported Expect"));
        }
        head.expect_continue = true;
    }
    Ok(())
}

/// A `Content-Length` value: one run of ASCII digits (no sign, no list) that fits a u64.
fn content_length(value: &[u8]) -> Result<u64, HeadError> {
    let bad = HeadError::Malformed("Content-Length");
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return Err(bad);
    }
    // All ASCII digits, so UTF-8; only overflow can fail here.
    std::str::from_utf8(value).ok().and_then(|s| s.parse().ok()).ok_or(bad)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
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
        507 => "Insufficient Storage",
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

    /// Parses `raw`, which must be exactly one complete head.
    fn whole(raw: &[u8]) -> Result<Head, HeadError> {
        let (head, n) = parse_head(raw)?.expect("a complete head");
        assert_eq!(n, raw.len(), "{}", String::from_utf8_lossy(raw));
        Ok(head)
    }

    /// A head of exactly `len` bytes: a GET whose one filler field pads it out.
    fn head_of_len(len: usize) -> Vec<u8> {
        let fixed = b"GET / HTTP/1.1\r\nX: \r\n\r\n".len();
        format!("GET / HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(len - fixed)).into_bytes()
    }

    /// A head with `fields` header fields, complete or not.
    fn head_with_fields(fields: usize, complete: bool) -> Vec<u8> {
        let mut raw = b"GET / HTTP/1.1\r\n".to_vec();
        for i in 0..fields {
            raw.extend_from_slice(format!("X-{i}: y\r\n").as_bytes());
        }
        if complete {
            raw.extend_from_slice(b"\r\n");
        }
        raw
    }

    #[test]
    fn a_plain_post_parses() {
        let raw = b"POST /__darkmatter__/message?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\n\r\n";
        let h = whole(raw).unwrap();
        assert_eq!(h.method, "POST");
        assert_eq!(h.path, "/__darkmatter__/message");
        assert_eq!(h.query, "x=1");
        assert_eq!(h.content_length, 12);
        assert!(h.http11 && !h.close && !h.expect_continue);
    }

    #[test]
    fn the_body_and_a_pipelined_request_are_left_unread() {
        let raw = b"POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.1\r\n\r\n";
        let (h, n) = parse_head(raw).unwrap().unwrap();
        assert_eq!(h.content_length, 2);
        assert_eq!(&raw[n..n + 2], b"hi");
        assert_eq!(parse_head(&raw[..raw.len() - 2]).unwrap().unwrap().1, n);
    }

    #[test]
    fn an_unfinished_head_asks_for_more() {
        for raw in [&b""[..], b"GE", b"GET / HTTP/1.1\r\n", b"GET / HTTP/1.1\r\nHost: a\r\n", b"GET / HTTP/1.1\r\nHo"] {
            assert_eq!(parse_head(raw), Ok(None), "{}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn connection_semantics() {
        assert!(whole(b"GET / HTTP/1.0\r\n\r\n").unwrap().close);
        assert!(!whole(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap().close);
        assert!(whole(b"GET / HTTP/1.1\r\nConnection: close\r\n\r\n").unwrap().close);
        assert!(whole(b"GET / HTTP/1.1\r\nconnection:Keep-Alive, Close\r\n\r\n").unwrap().close);
        assert!(!whole(b"GET / HTTP/1.1\r\n\r\n").unwrap().close);
        assert!(whole(b"POST / HTTP/1.1\r\nExpect: 100-continue\r\n\r\n").unwrap().expect_continue);
        assert_eq!(whole(b"POST / HTTP/1.1\r\nExpect: 200-ok\r\n\r\n").unwrap_err().status(), 400);
    }

    #[test]
    fn endless_heads_are_cut_by_count_and_by_bytes() {
        let mut many = head_with_fields(HEADERS_MAX, false);
        assert_eq!(parse_head(&many), Ok(None));
        many.extend_from_slice(b"X-last: y\r\n");
        assert_eq!(parse_head(&many), Err(HeadError::TooLarge));
        let long = [b"GET / HTTP/1.1\r\nX: ".as_slice(), &vec![b'a'; HEADER_BYTES_MAX]].concat();
        assert_eq!(parse_head(&long), Err(HeadError::TooLarge));
        assert_eq!(HeadError::TooLarge.status(), 431);
    }

    #[test]
    fn field_count_cap_edge() {
        assert!(whole(&head_with_fields(HEADERS_MAX, true)).is_ok());
        assert_eq!(parse_head(&head_with_fields(HEADERS_MAX + 1, true)), Err(HeadError::TooLarge));
    }

    #[test]
    fn byte_cap_edge() {
        let at_cap = head_of_len(HEADER_BYTES_MAX);
        assert_eq!(at_cap.len(), HEADER_BYTES_MAX);
        assert!(whole(&at_cap).is_ok());
        // The body after a head at the cap does not count against it.
        let (_, n) = parse_head(&[at_cap.as_slice(), b"body"].concat()).unwrap().unwrap();
        assert_eq!(n, HEADER_BYTES_MAX);
        assert_eq!(parse_head(&head_of_len(HEADER_BYTES_MAX + 1)), Err(HeadError::TooLarge));
        // Unfinished: exactly the cap still waits for more, one byte over is refused.
        assert_eq!(parse_head(&at_cap[..HEADER_BYTES_MAX - 1]), Ok(None));
        let over = head_of_len(HEADER_BYTES_MAX + 2);
        assert_eq!(parse_head(&over[..HEADER_BYTES_MAX]), Ok(None));
        assert_eq!(parse_head(&over[..HEADER_BYTES_MAX + 1]), Err(HeadError::TooLarge));
        // Blank lines before the request line are tolerated (RFC 9112 §2.2) but count.
        assert!(whole(&[b"\r\n".as_slice(), &head_of_len(HEADER_BYTES_MAX - 2)].concat()).is_ok());
        let padded = [b"\r\n".as_slice(), &head_of_len(HEADER_BYTES_MAX - 1)].concat();
        assert_eq!(parse_head(&padded), Err(HeadError::TooLarge));
    }

    #[test]
    fn target_cap_edge() {
        let target = |len: usize| format!("GET /{} HTTP/1.1\r\n\r\n", "t".repeat(len - 1)).into_bytes();
        assert_eq!(whole(&target(TARGET_BYTES_MAX)).unwrap().path.len(), TARGET_BYTES_MAX);
        assert_eq!(whole(&target(TARGET_BYTES_MAX + 1)), Err(HeadError::TooLarge));
    }

    #[test]
    fn content_length_is_one_run_of_digits() {
        let with = |v: &str| whole(format!("POST / HTTP/1.1\r\nContent-Length: {v}\r\n\r\n").as_bytes());
        assert_eq!(with("0").unwrap().content_length, 0);
        assert_eq!(with(" 42 ").unwrap().content_length, 42);
        assert_eq!(with(&u64::MAX.to_string()).unwrap().content_length, u64::MAX);
        for bad in ["", "+5", "-1", "5, 5", "0x10", "1e3", "18446744073709551616"] {
            assert_eq!(with(bad).unwrap_err(), HeadError::Malformed("Content-Length"), "{bad:?}");
        }
        let twice = |a: &str, b: &str| {
            whole(format!("POST / HTTP/1.1\r\nContent-Length: {a}\r\ncontent-length: {b}\r\n\r\n").as_bytes())
        };
        assert_eq!(twice("7", "7").unwrap().content_length, 7);
        assert_eq!(twice("7", "8").unwrap_err(), HeadError::Malformed("conflicting Content-Length"));
    }

    #[test]
    fn malformed_heads_are_refused_with_a_status() {
        for raw in [
            &b"GARBAGE\r\n\r\n"[..],
            b"get / HTTP/1.1\r\n\r\n",
            b"GET nopath HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nNoColon\r\n\r\n",
            b"THIS IS NOT HTTP\r\n\r\n",
            b"GET  / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n",
            b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n",
        ] {
            assert_eq!(parse_head(raw).unwrap_err().status(), 400, "{}", String::from_utf8_lossy(raw));
        }
        assert_eq!(parse_head(b"GET / HTTP/2.0\r\n\r\n").unwrap_err().status(), 505);
        // Refused as soon as the version is wrong, before the head is complete.
        assert_eq!(parse_head(b"GET / HTTP/2"), Err(HeadError::Version));
        assert_eq!(parse_head(b"\r\nGET / HTTP/1.2\r\n\r\n").unwrap_err().status(), 505);
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
