//! A minimal SMTP server for the benchmark: accepts everything, remembers when each message
//! arrived and which delivery it was (from its `Message-ID`), and nothing else, so that it
//! costs as little as possible of the two cores the system under test also needs. It offers
//! PIPELINING and CHUNKING (BDAT), as Postfix and Exim do, and can hold each reply back a while
//! to stand for a server farther away. The ceiling's lettre client uses neither: it sends after
//! DATA, which the sink reads line by line.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One accepted message: when, and the delivery id of `<delivery-<id>.…>` (0 if none).
pub type Arrival = (Instant, i64);

pub struct Sink {
    pub addr: SocketAddr,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    /// A sink on a free loopback port; `delay` before each reply it writes.
    pub async fn start(delay: Duration) -> std::io::Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let shared = arrivals.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(session(stream, shared.clone(), delay));
            }
        });
        Ok(Sink {
            addr,
            arrivals,
            task,
        })
    }

    pub fn url(&self) -> String {
        url_of(self.addr)
    }

    pub fn count(&self) -> usize {
        lock(&self.arrivals).len()
    }

    /// Everything received so far, and forget it.
    pub fn take(&self) -> Vec<Arrival> {
        std::mem::take(&mut *lock(&self.arrivals))
    }
}

/// The `WEDSYNC_SMTP_URL` of a sink at `addr`.
pub fn url_of(addr: SocketAddr) -> String {
    format!("smtp://{addr}")
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn session(stream: TcpStream, arrivals: Arc<Mutex<Vec<Arrival>>>, delay: Duration) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::with_capacity(64 * 1024, read);
    // Replies wait here until the client's pipelined commands are all answered (RFC 2920: a
    // server flushes when it would otherwise wait for input), as real servers do.
    let mut replies: Vec<u8> = b"220 bench-sink ESMTP\r\n".to_vec();
    let mut line = String::new();
    // The chunks of the message coming in BDAT commands.
    let mut message = Vec::new();
    loop {
        if !lines.buffer().contains(&b'\n') && !replies.is_empty() {
            if !delay.is_zero() {
                tokio::time::sleep(delay).await;
            }
            if write.write_all(&replies).await.is_err() {
                return;
            }
            replies.clear();
        }
        line.clear();
        if !matches!(lines.read_line(&mut line).await, Ok(n) if n > 0) {
            return;
        }
        let reply: &[u8] = match line.as_bytes().get(..4).map(|c| c.to_ascii_uppercase()) {
            Some(c) if c == b"EHLO" => b"250-bench-sink\r\n250-PIPELINING\r\n250 CHUNKING\r\n",
            Some(c) if c == b"HELO" => b"250 bench-sink\r\n",
            Some(c) if c == b"DATA" => {
                replies.extend_from_slice(b"354 go ahead\r\n");
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                if write.write_all(&replies).await.is_err() {
                    return;
                }
                replies.clear();
                let mut delivery = 0;
                loop {
                    line.clear();
                    if !matches!(lines.read_line(&mut line).await, Ok(n) if n > 0) {
                        return;
                    }
                    if line == ".\r\n" {
                        break;
                    }
                    if delivery == 0
                        && let Some(rest) = line.strip_prefix("Message-ID: <delivery-")
                    {
                        delivery = rest
                            .split('.')
                            .next()
                            .and_then(|id| id.parse().ok())
                            .unwrap_or(0);
                    }
                }
                lock(&arrivals).push((Instant::now(), delivery));
                b"250 queued\r\n"
            }
            Some(c) if c == b"BDAT" => {
                let Some(size) = line[4..]
                    .split_ascii_whitespace()
                    .next()
                    .and_then(|n| n.parse::<usize>().ok())
                else {
                    return;
                };
                let from = message.len();
                message.resize(from + size, 0);
                if lines.read_exact(&mut message[from..]).await.is_err() {
                    return;
                }
                if !line.to_ascii_uppercase().contains("LAST") {
                    b"250 chunk taken\r\n"
                } else {
                    lock(&arrivals).push((Instant::now(), delivery_of(&message)));
                    message.clear();
                    b"250 queued\r\n"
                }
            }
            Some(c) if c == b"QUIT" => {
                replies.extend_from_slice(b"221 bye\r\n");
                let _ = write.write_all(&replies).await;
                return;
            }
            _ => b"250 OK\r\n",
        };
        replies.extend_from_slice(reply);
    }
}

/// The delivery id of a message's `Message-ID: <delivery-<id>.…>` header (0 if none).
fn delivery_of(message: &[u8]) -> i64 {
    const HEADER: &[u8] = b"Message-ID: <delivery-";
    message
        .windows(HEADER.len())
        .enumerate()
        .position(|(at, w)| w == HEADER && (at == 0 || message[at - 1] == b'\n'))
        .and_then(|at| {
            let rest = &message[at + HEADER.len()..];
            let end = rest.iter().position(|b| !b.is_ascii_digit())?;
            std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
        })
        .unwrap_or(0)
}
