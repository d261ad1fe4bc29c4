//! Raw HTTP/1.1 on loopback from a chosen source address.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

/// Longest answer head or body read, in bytes (a node's answers are a few KiB).
pub const ANSWER_BYTES_MAX: usize = 1024 * 1024;

/// 127.0.0.`n`: a source of its own to the node.
pub fn source(n: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 0, n)
}

/// A TCP connection to `addr` bound to `from`, with read and write timeouts of `timeout`.
pub fn connect_from(from: Ipv4Addr, addr: SocketAddr, timeout: Duration) -> std::io::Result<TcpStream> {
    use socket2::{Domain, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None)?;
    socket.bind(&SocketAddr::from((from, 0)).into())?;
    socket.connect_timeout(&addr.into(), timeout)?;
    let s: TcpStream = socket.into();
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// The bytes of one request; `close` adds `Connection: close`.
pub fn request(method: &str, path: &str, addr: SocketAddr, body: &[u8], close: bool) -> Vec<u8> {
    let connection = if close { "Connection: close\r\n" } else { "" };
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{connection}\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

/// Reads one response: its status and body.
pub fn read_response(s: &mut TcpStream) -> std::io::Result<(u16, Vec<u8>)> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i;
        }
        if buf.len() > ANSWER_BYTES_MAX {
            return Err(std::io::Error::other("answer head too long"));
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let status: u16 = head.split(' ').nth(1).and_then(|c| c.parse().ok()).ok_or(std::io::ErrorKind::InvalidData)?;
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    if len > ANSWER_BYTES_MAX {
        return Err(std::io::Error::other("answer body too long"));
    }
    let mut body = buf.split_off(head_end + 4);
    while body.len() < len {
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(len);
    Ok((status, body))
}

/// One request from `from` with `Connection: close`: status and JSON body (`Null` if not JSON).
pub fn exchange(
    from: Ipv4Addr,
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: &[u8],
    timeout: Duration,
) -> std::io::Result<(u16, Value)> {
    let mut s = connect_from(from, addr, timeout)?;
    s.write_all(&request(method, path, addr, body, true))?;
    let (status, body) = read_response(&mut s)?;
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

/// Connections a [`Sink`] serves at once; more are closed unanswered.
pub const SINK_CONNECTIONS_MAX: usize = 64;

/// A loopback HTTP server answering every request `200 {}`: the URL of the newcomers and throwaway
/// keys, so a node's callbacks to them (acceptance, disconnect notices) end at once.
pub struct Sink {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
}

impl Sink {
    /// Starts the sink on its own thread (it ends with the process).
    pub fn start() -> std::io::Result<Self> {
        use std::sync::atomic::{AtomicUsize, Ordering};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let url = format!("http://{}", listener.local_addr()?);
        let open = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                if open.load(Ordering::Acquire) >= SINK_CONNECTIONS_MAX {
                    continue;
                }
                open.fetch_add(1, Ordering::AcqRel);
                let open = open.clone();
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let ok = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}";
                    while read_request(&mut s).is_ok() && s.write_all(ok).is_ok() {}
                    open.fetch_sub(1, Ordering::AcqRel);
                });
            }
        });
        Ok(Self { url })
    }
}

/// Reads one request (head and `Content-Length` body) and discards it.
fn read_request(s: &mut TcpStream) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if buf.len() > ANSWER_BYTES_MAX || s.read(&mut byte)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    let len: usize =
        head.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse().ok()).unwrap_or(0);
    if len > ANSWER_BYTES_MAX {
        return Err(std::io::ErrorKind::InvalidData.into());
    }
    let mut body = vec![0u8; len];
    s.read_exact(&mut body)
}
