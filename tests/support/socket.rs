//! Raw TCP probes for the examples' connection limits: what a slowloris
//! client sees. Every wait is bounded.

use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// A complete HTTP/1.1 request head for `GET /health`.
pub const GET_HEALTH: &[u8] = b"GET /health HTTP/1.1\r\nHost: example.test\r\n\r\n";

/// The first 16 of the 24 octets of the HTTP/2 client connection preface
/// (RFC 9113 §3.4).
pub const HALF_H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n";

/// The whole HTTP/2 client connection preface: the 24 octets, then an
/// empty SETTINGS frame (length 0, type 0x4, no flags, stream 0).
pub const H2_PREFACE_AND_SETTINGS: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// Generous: the bound on anything the server should do at once.
pub const PROMPTLY: Duration = Duration::from_secs(5);

/// Reads, discarding what the server sends, until it closes the connection
/// (EOF or a reset); panics if it is still open after `within`. `what`
/// names the connection in the message.
pub async fn assert_closed_within(what: &str, stream: &mut TcpStream, within: Duration) {
    let closed = tokio::time::timeout(within, async {
        let mut buf = [0u8; 1024];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    })
    .await;
    assert!(
        closed.is_ok(),
        "the server kept the {what} connection open for {within:?}"
    );
}

/// Reads up to the end of an HTTP/1 response head; panics if the server
/// closes first or has not sent one after `within`.
pub async fn response_head(stream: &mut TcpStream, within: Duration) -> String {
    let head = tokio::time::timeout(within, async {
        let mut head = Vec::new();
        let mut buf = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = stream.read(&mut buf).await.expect("read");
            assert_ne!(n, 0, "closed before a response head: {head:?}");
            head.extend_from_slice(&buf[..n]);
        }
        String::from_utf8_lossy(&head).into_owned()
    })
    .await;
    head.unwrap_or_else(|_| panic!("no response head within {within:?}"))
}

/// The first bytes the server sends; panics if it closes first or sends
/// nothing within `within`.
pub async fn first_bytes(stream: &mut TcpStream, within: Duration) -> Vec<u8> {
    let mut buf = [0u8; 1024];
    let n = tokio::time::timeout(within, stream.read(&mut buf))
        .await
        .unwrap_or_else(|_| panic!("nothing from the server within {within:?}"))
        .expect("read");
    assert_ne!(n, 0, "closed without a byte");
    buf[..n].to_vec()
}

/// Panics if the server sends anything, or closes, within `quiet`: the
/// connection waits unserved.
pub async fn assert_not_served(stream: &mut TcpStream, quiet: Duration) {
    let mut buf = [0u8; 1024];
    match tokio::time::timeout(quiet, stream.read(&mut buf)).await {
        Err(_elapsed) => {}
        Ok(Ok(0)) => panic!("closed instead of waiting"),
        Ok(Ok(n)) => panic!("served at once: {:?}", String::from_utf8_lossy(&buf[..n])),
        Ok(Err(err)) => panic!("reset instead of waiting: {err}"),
    }
}

/// With `max` connections open and served (`GET /health`, kept alive), one
/// more is not served until one of them closes, then it is: what
/// `MAX_CONNECTIONS = max` must do for an HTTP/1.1 example on `addr`.
pub async fn assert_connections_over_max_wait(addr: std::net::SocketAddr, max: usize) {
    use tokio::io::AsyncWriteExt;
    let mut open = Vec::new();
    for _ in 0..max {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(GET_HEALTH).await.unwrap();
        let head = response_head(&mut stream, PROMPTLY).await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        open.push(stream); // kept alive, holding its place
    }
    let mut extra = TcpStream::connect(addr).await.unwrap();
    extra.write_all(GET_HEALTH).await.unwrap();
    assert_not_served(&mut extra, Duration::from_millis(500)).await;

    drop(open.pop());
    let head = response_head(&mut extra, PROMPTLY).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
}

/// An HTTP/1.1 example on `addr` (header read timeout well under
/// [`PROMPTLY`]) closes a connection that sent half a request head, one
/// that sent nothing, and a kept-alive one gone silent after a request.
pub async fn assert_slow_clients_are_closed(addr: std::net::SocketAddr) {
    use tokio::io::AsyncWriteExt;
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /health HTTP/1.1\r\nHost: example.test\r\nX-Slow: ")
        .await
        .unwrap();
    let mut silent = TcpStream::connect(addr).await.unwrap();
    let mut kept_alive = TcpStream::connect(addr).await.unwrap();
    kept_alive.write_all(GET_HEALTH).await.unwrap();
    let head = response_head(&mut kept_alive, PROMPTLY).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");

    assert_closed_within("half", &mut half, PROMPTLY).await;
    assert_closed_within("silent", &mut silent, PROMPTLY).await;
    assert_closed_within("kept alive", &mut kept_alive, PROMPTLY).await;
}
