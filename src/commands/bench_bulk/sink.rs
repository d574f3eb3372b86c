//! A minimal SMTP server for the benchmark: accepts everything, remembers when each message
//! arrived and which delivery it was (from its `Message-ID`), and nothing else, so that it
//! costs as little as possible of the two cores the system under test also needs.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// One accepted message: when, and the delivery id of `<delivery-<id>.…>` (0 if none).
pub type Arrival = (Instant, i64);

pub struct Sink {
    pub addr: SocketAddr,
    arrivals: Arc<Mutex<Vec<Arrival>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Sink {
    pub async fn start() -> std::io::Result<Sink> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let shared = arrivals.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(session(stream, shared.clone()));
            }
        });
        Ok(Sink {
            addr,
            arrivals,
            task,
        })
    }

    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    pub fn count(&self) -> usize {
        lock(&self.arrivals).len()
    }

    /// Everything received so far, and forget it.
    pub fn take(&self) -> Vec<Arrival> {
        std::mem::take(&mut *lock(&self.arrivals))
    }
}

impl Drop for Sink {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

async fn session(stream: TcpStream, arrivals: Arc<Mutex<Vec<Arrival>>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::with_capacity(64 * 1024, read);
    if write.write_all(b"220 bench-sink ESMTP\r\n").await.is_err() {
        return;
    }
    let mut line = String::new();
    loop {
        line.clear();
        if !matches!(lines.read_line(&mut line).await, Ok(n) if n > 0) {
            return;
        }
        let reply: &[u8] = match line.as_bytes().get(..4).map(|c| c.to_ascii_uppercase()) {
            Some(c) if c == b"EHLO" || c == b"HELO" => b"250 bench-sink\r\n",
            Some(c) if c == b"DATA" => {
                if write.write_all(b"354 go ahead\r\n").await.is_err() {
                    return;
                }
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
            Some(c) if c == b"QUIT" => {
                let _ = write.write_all(b"221 bye\r\n").await;
                return;
            }
            _ => b"250 OK\r\n",
        };
        if write.write_all(reply).await.is_err() {
            return;
        }
    }
}
