//! Raw HTTP/1.1 over `TcpStream`, for what `reqwest` will not send
//! (oversize heads, trickled bytes), and an HTTPS client for
//! `--tls-self-signed`.

use base64::Engine;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A response read off the wire.
#[derive(Debug, Clone)]
pub struct Raw {
    pub status: u16,
    /// Lower-cased names, in order.
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Raw {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The `code` of a problem+json body or of the HTML error page.
    pub fn error_code(&self) -> Option<String> {
        if let Ok(json) = serde_json::from_str::<serde_json::Value>(&self.body) {
            return json["code"].as_str().map(str::to_owned);
        }
        let marker = "Error code: <code>";
        let start = self.body.find(marker)? + marker.len();
        let end = self.body[start..].find('<')? + start;
        Some(self.body[start..end].to_owned())
    }
}

/// Parses one response from `bytes` (a complete head; the body as far as
/// it arrived, cut to `Content-Length`).
pub fn parse(bytes: &[u8]) -> Option<Raw> {
    let text = String::from_utf8_lossy(bytes);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    let body = match length {
        Some(n) => body.chars().take(n).collect(),
        None => body.to_owned(),
    };
    Some(Raw {
        status,
        headers,
        body,
    })
}

/// Whether `bytes` hold a complete response.
fn complete(bytes: &[u8]) -> bool {
    let Some(at) = bytes.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&bytes[..at]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    bytes.len() >= at + 4 + length
}

/// Reads one response, waiting at most `limit`. `None` when the connection
/// closed (or nothing came) before a whole response.
pub fn read_response(stream: &mut TcpStream, limit: Duration) -> Option<Raw> {
    let deadline = Instant::now() + limit;
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 16 * 1024];
    while Instant::now() < deadline && !complete(&bytes) {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    parse(&bytes)
}

/// Whether the peer closes the connection within `limit` (reads give EOF or
/// a reset); bytes that arrive meanwhile are returned.
pub fn closes_within(stream: &mut TcpStream, limit: Duration) -> (bool, Vec<u8>) {
    let deadline = Instant::now() + limit;
    let mut bytes = Vec::new();
    let mut buffer = [0u8; 4096];
    while Instant::now() < deadline {
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        match stream.read(&mut buffer) {
            Ok(0) => return (true, bytes),
            Ok(n) => bytes.extend_from_slice(&buffer[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return (true, bytes),
        }
    }
    (false, bytes)
}

pub fn connect(port: u16) -> TcpStream {
    let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream.set_nodelay(true).unwrap();
    stream
}

/// Sends `request` whole (write errors ignored: the server may answer and
/// close before reading all of an oversize request) and reads the answer.
pub fn exchange(port: u16, request: &[u8]) -> Option<Raw> {
    let mut stream = connect(port);
    let mut writer = stream.try_clone().unwrap();
    let request = request.to_vec();
    let sending = std::thread::spawn(move || {
        let _ = writer.write_all(&request);
    });
    let response = read_response(&mut stream, Duration::from_secs(10));
    let _ = sending.join();
    response
}

/// A request head: `method target`, `Host: {site}.localhost:{port}`,
/// `Connection: close`, then `extra` lines.
pub fn head(method: &str, target: &str, site: &str, port: u16, extra: &[String]) -> String {
    let mut text = format!(
        "{method} {target} HTTP/1.1\r\nHost: {site}.localhost:{port}\r\nConnection: close\r\n"
    );
    for line in extra {
        text.push_str(line);
        text.push_str("\r\n");
    }
    text.push_str("\r\n");
    text
}

/// The DER of the first certificate in `pem`.
pub fn pem_to_der(pem: &str) -> Vec<u8> {
    let body: String = pem
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN CERTIFICATE"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

/// One HTTP/1.1 request over TLS to `127.0.0.1:port`, as `host`, trusting
/// only the certificate `pem`.
pub fn https_request(port: u16, host: &str, pem: &str, request: &str) -> Raw {
    use rustls::pki_types::{CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from(pem_to_der(pem))).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(host.to_owned()).unwrap();
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), name).unwrap();
    let socket = connect(port);
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut tls = rustls::StreamOwned::new(connection, socket);
    tls.write_all(request.as_bytes()).unwrap();
    let mut bytes = Vec::new();
    let _ = tls.read_to_end(&mut bytes);
    parse(&bytes).unwrap_or_else(|| panic!("no response: {}", String::from_utf8_lossy(&bytes)))
}
