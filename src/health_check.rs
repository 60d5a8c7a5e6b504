//! `switchboard health`: asks a node's `/health/ready` whether it is ready, for container healthchecks (the slim
//! image has no curl) and scripts.
//!
//! One HTTP/1.1 GET over a plain TCP stream, bounded by [`TIMEOUT`] as a whole; no HTTP client dependency. The
//! answer is a [`Verdict`]: ready (HTTP 200) or not, with a one-line reason built from the node's JSON (its
//! `status`, `redis` and `backplane` fields and Redis's own error) or from the connection error, naming the URL.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

/// Longest the whole check may take: connect, request and answer.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Largest answer read: `/health/ready` answers a few hundred bytes.
const MAX_ANSWER: u64 = 64 * 1024;

/// The outcome of a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// HTTP 200: the node is ready.
    Ready(String),
    /// Anything else: not listening, not answering in time, 503 (not ready or draining), or not switchboard.
    NotReady(String),
}

/// The readiness URL of a node listening on `bind`: a wildcard address (`0.0.0.0`, `[::]`) is asked on loopback.
pub fn url_for_bind(bind: SocketAddr) -> String {
    let ip = match bind.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    format!("http://{}/health/ready", SocketAddr::new(ip, bind.port()))
}

/// GETs `url` (`http://host:port/path`) within [`TIMEOUT`] and judges the answer.
pub fn check(url: &str) -> Verdict {
    match get(url) {
        Ok((200, body)) => Verdict::Ready(format!("{url}: ready{}", summary(&body))),
        Ok((status, body)) => Verdict::NotReady(format!("{url}: HTTP {status}{}", summary(&body))),
        Err(e) => Verdict::NotReady(format!("{url}: {e}")),
    }
}

/// ` (status draining, redis up, backplane up)` from the node's JSON, or nothing if it is not JSON.
fn summary(body: &str) -> String {
    let Ok(json) = serde_json::from_str::<serde_json::Value>(body) else {
        return String::new();
    };
    let fields = ["status", "redis", "backplane", "redis_error", "backplane_error"];
    let parts: Vec<String> = fields
        .iter()
        .filter_map(|&name| json.get(name).and_then(|v| v.as_str()).map(|v| format!("{name} {v}")))
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(" ({})", parts.join(", "))
    }
}

/// One GET; the status code and the body.
fn get(url: &str) -> Result<(u16, String), String> {
    let deadline = Instant::now() + TIMEOUT;
    let rest = url.strip_prefix("http://").ok_or("only http:// URLs are supported")?;
    let (authority, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap_or((rest, "/".into()));
    let addr = authority
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve {authority}: {e}"))?
        .next()
        .ok_or_else(|| format!("{authority} resolves to no address"))?;
    let mut stream = TcpStream::connect_timeout(&addr, TIMEOUT).map_err(|e| e.to_string())?;
    let left = || deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1));
    stream.set_write_timeout(Some(left())).map_err(|e| e.to_string())?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\nUser-Agent: switchboard-health\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    let mut limited = (&stream).take(MAX_ANSWER);
    let mut chunk = [0u8; 4096];
    loop {
        stream.set_read_timeout(Some(left())).map_err(|e| e.to_string())?;
        match limited.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut => {
                return Err(format!("no answer within {TIMEOUT:?}"))
            }
            Err(e) => return Err(e.to_string()),
        }
        if Instant::now() >= deadline {
            return Err(format!("no answer within {TIMEOUT:?}"));
        }
    }
    parse(&answer)
}

/// The status code and body of an HTTP/1.1 answer. The request asked for `Connection: close`, so the body runs
/// to the end of the stream (the node answers with a `Content-Length`, never chunked; [`summary`] tolerates a
/// body that is not JSON anyway).
fn parse(answer: &[u8]) -> Result<(u16, String), String> {
    let text = String::from_utf8_lossy(answer);
    let (head, body) = text.split_once("\r\n\r\n").ok_or("the answer is not HTTP")?;
    let status = head
        .lines()
        .next()
        .and_then(|line| line.strip_prefix("HTTP/1."))
        .and_then(|rest| rest.get(2..5))
        .and_then(|code| code.parse().ok())
        .ok_or("the answer is not HTTP")?;
    Ok((status, body.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_binds_are_asked_on_loopback() {
        assert_eq!(url_for_bind("0.0.0.0:8080".parse().unwrap()), "http://127.0.0.1:8080/health/ready");
        assert_eq!(url_for_bind("[::]:80".parse().unwrap()), "http://[::1]:80/health/ready");
        assert_eq!(url_for_bind("10.1.2.3:9".parse().unwrap()), "http://10.1.2.3:9/health/ready");
    }

    #[test]
    fn answers_are_parsed_and_summarised() {
        let answer = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\r\n{\"status\":\"draining\",\"redis\":\"up\",\"backplane\":\"up\"}";
        let (status, body) = parse(answer).unwrap();
        assert_eq!(status, 503);
        assert_eq!(summary(&body), " (status draining, redis up, backplane up)");
        assert!(parse(b"SSH-2.0-OpenSSH\r\n").is_err());
        assert_eq!(summary("<html>"), "");
    }

    #[test]
    fn nothing_listening_is_not_ready_and_names_the_url() {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/health/ready");
        match check(&url) {
            Verdict::NotReady(reason) => assert!(reason.starts_with(&url) && reason.contains("refused"), "{reason}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_silent_server_is_not_ready_within_the_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/health/ready", listener.local_addr().unwrap());
        let started = Instant::now();
        assert!(matches!(check(&url), Verdict::NotReady(r) if r.contains("no answer")));
        assert!(started.elapsed() < TIMEOUT + Duration::from_secs(1));
    }
}
