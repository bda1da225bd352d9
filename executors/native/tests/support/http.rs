//! A tiny HTTP/1.1 server for tests: faults a real registry cannot be made to produce (5xx,
//! 403, hangs) and the token server of a token-auth registry. One thread per connection, one
//! request per connection (`Connection: close`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A request's line and headers.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// The value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A response; `None` from the handler means: never answer (hold the connection for 10 s).
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self { status, headers: Vec::new(), body: body.into() }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }
}

/// A running server; stops accepting when dropped.
pub struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// Serves `handler` on a free port of 127.0.0.1.
pub fn serve(handler: impl Fn(&Request) -> Option<Response> + Send + Sync + 'static) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("local addr").port();
    let stop = Arc::new(AtomicBool::new(false));
    let handler = Arc::new(handler);
    let stop2 = Arc::clone(&stop);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stop2.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let handler = Arc::clone(&handler);
            std::thread::spawn(move || handle(conn, &*handler));
        }
    });
    Server { port, stop }
}

fn handle(conn: TcpStream, handler: &(dyn Fn(&Request) -> Option<Response> + Send + Sync)) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else { return };
    let mut req = Request { method: method.to_owned(), path: path.to_owned(), headers: Vec::new() };
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).is_err() || h.trim().is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            req.headers.push((k.trim().to_owned(), v.trim().to_owned()));
        }
    }
    let len: u64 = req.header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    let _ = std::io::copy(&mut (&mut reader).take(len), &mut std::io::sink());
    let mut conn = conn;
    match handler(&req) {
        None => std::thread::sleep(Duration::from_secs(10)),
        Some(resp) => {
            let mut head =
                format!("HTTP/1.1 {} X\r\nContent-Length: {}\r\nConnection: close\r\n", resp.status, resp.body.len());
            for (k, v) in &resp.headers {
                head.push_str(&format!("{k}: {v}\r\n"));
            }
            head.push_str("\r\n");
            let _ = conn.write_all(head.as_bytes());
            if req.method != "HEAD" {
                let _ = conn.write_all(&resp.body);
            }
            let _ = conn.flush();
        }
    }
}
