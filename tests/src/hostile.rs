//! A registry that misbehaves on purpose: a loopback HTTP/1.1 server whose answers the
//! test decides (huge bodies, bodies that drip, challenges that point elsewhere).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// What the server sends for one request.
pub enum Reply {
    /// Status line, headers and a body.
    Full(u16, Vec<(String, String)>, Vec<u8>),
    /// 200 with `len` bytes of `fill`, no Content-Length (ends when the connection
    /// closes).
    Endless(usize, u8),
    /// 200 with headers, then one byte every `every` until the client hangs up.
    Drip(Duration),
}

/// One request as the server saw it.
pub struct Request {
    /// `GET`, `HEAD`, ...
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
}

/// A hostile server on 127.0.0.1.
pub struct HostileRegistry {
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

fn handle(stream: TcpStream, answer: &(dyn Fn(&Request) -> Reply + Send + Sync)) {
    let Ok(read) = stream.try_clone() else { return };
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    if reader.read_line(&mut line).unwrap_or(0) == 0 {
        return;
    }
    let mut content_length = 0usize;
    let mut authorization = None;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim().to_string());
            if k == "content-length" {
                content_length = v.parse().unwrap_or(0);
            } else if k == "authorization" {
                authorization = Some(v);
            }
        }
    }
    let mut body = vec![0u8; content_length];
    let _ = std::io::Read::read_exact(&mut reader, &mut body);
    let mut parts = line.split_whitespace();
    let request = Request {
        method: parts.next().unwrap_or("").to_string(),
        path: parts.next().unwrap_or("").to_string(),
        authorization,
    };
    let method = request.method.as_str();
    let mut s = stream;
    match answer(&request) {
        Reply::Full(status, headers, body) => {
            let mut head = format!(
                "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
                body.len()
            );
            for (k, v) in headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = s.write_all(head.as_bytes());
            if method != "HEAD" {
                let _ = s.write_all(&body);
            }
        }
        Reply::Endless(len, fill) => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n");
            let chunk = vec![fill; 64 * 1024];
            let mut sent = 0;
            while sent < len {
                if s.write_all(&chunk).is_err() {
                    return;
                }
                sent += chunk.len();
            }
        }
        Reply::Drip(every) => {
            let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: 1000000\r\nConnection: close\r\n\r\n");
            for _ in 0..600 {
                if s.write_all(b" ").and_then(|_| s.flush()).is_err() {
                    return;
                }
                std::thread::sleep(every);
            }
        }
    }
}

impl HostileRegistry {
    /// Serves every request with `answer(request)` until the test ends.
    pub fn start(answer: impl Fn(&Request) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let answer: Arc<dyn Fn(&Request) -> Reply + Send + Sync> = Arc::new(answer);
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let answer = answer.clone();
                std::thread::spawn(move || handle(stream, answer.as_ref()));
            }
        });
        Self { addr }
    }
}
