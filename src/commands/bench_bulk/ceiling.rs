//! The ceilings: the same messages, rendered beforehand, sent to the same sink with no
//! database, no queue and no suppression check —
//! - a bare loop over lettre's own SMTP client ([`connect_lettre`], [`send_over_lettre`]), one
//!   task per connection, given only the `TCP_NODELAY` its pool cannot set (`--stock-lettre`
//!   shows what that costs): the ceiling when it runs in a process of its own
//!   (`ceiling_process`), and [`run_lettre_loop`] in the sink's process, as every figure before
//!   2026-12-07 was taken;
//! - a bare loop over our transport ([`send_over_transports`]: `EmailTransport`, the worker's
//!   SMTP pool with its pipelining), in a process of its own, to tell the system's overhead from
//!   the transport's own speed.

use super::sink::Sink;
use super::switches::Switches;
use anyhow::{Context, Result, bail};
use futures::StreamExt;
use std::time::{Duration, Instant};
use wedsync_kinds::messages::email::{self, Email, Recipient, Sender};
use wedsync_kinds::messages::providers::EmailTransport;
use wedsync_kinds::messages::template::{Footer, Templates};
use wedsync_kinds::messages::validate::ValidRecipient;

use super::SendShape;

/// Render every message of `recipients` as a delivery would, ready to hand to SMTP.
pub fn render_all(shape: &SendShape, recipients: &[ValidRecipient]) -> Result<Vec<Email>> {
    let templates = Templates::compile(&shape.template).context("compiling the templates")?;
    let unsubscribe = format!(
        "{}/unsubscribe?token={}",
        super::PUBLIC_URL,
        uuid::Uuid::nil()
    );
    let footer = Footer {
        sender_name: &shape.sender.name,
        postal_address: &shape.sender.postal_address,
        unsubscribe_url: Some(&unsubscribe),
    };
    let sender =
        Sender::new(&shape.sender.name, &shape.sender.email).map_err(anyhow::Error::msg)?;
    recipients
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let rendered = templates.render(&r.variables, &footer)?;
            let message_id = email::message_id(i as i64 + 1, "ceiling", &shape.sender.email);
            let recipient = Recipient {
                to: &r.address,
                message_id: &message_id,
                unsubscribe: Some((&unsubscribe, "unsubscribe@localhost")),
            };
            sender
                .build(&rendered, &recipient)
                .map_err(anyhow::Error::msg)
        })
        .collect()
}

/// lettre's own pooled transport, as a bare loop would use it out of the box: for the record,
/// since Nagle's algorithm holds each message's closing `.` back about 40 ms on its sockets
/// (see `providers::smtp_pool`). Sends `messages` like [`run_lettre_loop`].
pub async fn run_stock_lettre(
    sink: &Sink,
    messages: Vec<Email>,
    pool: u32,
    workers: usize,
) -> Result<f64> {
    use lettre::AsyncTransport;
    use lettre::transport::smtp::PoolConfig;
    let n = messages.len();
    let transport =
        lettre::AsyncSmtpTransport::<lettre::Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(sink.addr.port())
            .pool_config(PoolConfig::new().max_size(pool * workers as u32))
            .build();
    let started = Instant::now();
    futures::stream::iter(messages)
        .for_each_concurrent(pool as usize * workers, |message| {
            let transport = &transport;
            async move {
                if let Err(err) = transport
                    .send_raw(&message.envelope, &message.formatted)
                    .await
                {
                    tracing::warn!(error = %err, "stock lettre send failed");
                }
            }
        })
        .await;
    Ok(n as f64 / finish(sink, started).as_secs_f64())
}

/// What a bare loop came to.
pub struct LoopRun {
    pub messages_per_s: f64,
    /// Voluntary and involuntary context switches per message while it sent, of the loop's
    /// process and the sink's (the bench's) together.
    pub switches_per_message: f64,
}

/// lettre's `AsyncSmtpConnection::send` in a loop on `pool × workers` connections, each its own
/// task taking the next message: MAIL, RCPT, DATA and the content each wait for their reply.
/// In the sink's own process; `ceiling_process` runs the same loop in one of its own.
pub async fn run_lettre_loop(
    sink: &Sink,
    messages: Vec<Email>,
    pool: u32,
    workers: usize,
) -> Result<LoopRun> {
    let n = messages.len();
    let connections = connect_lettre(sink.addr, pool as usize * workers).await?;
    let before = Switches::now();
    let started = Instant::now();
    send_over_lettre(connections, messages).await;
    let switches = Switches::now().since(&before);
    finish_loop(sink, started, n, switches)
}

/// The rate of a loop that started at `started` to send `expected` messages, and its
/// `switches` per message; an error if the sink did not get them all.
pub(super) fn finish_loop(
    sink: &Sink,
    started: Instant,
    expected: usize,
    switches: u64,
) -> Result<LoopRun> {
    let sent = sink.count();
    let took = finish(sink, started);
    if sent != expected {
        bail!("a bare loop delivered {sent} of {expected} messages");
    }
    Ok(LoopRun {
        messages_per_s: sent as f64 / took.as_secs_f64(),
        switches_per_message: switches as f64 / sent.max(1) as f64,
    })
}

/// `count` connections of lettre's SMTP client to `addr`, greeted, with `TCP_NODELAY`.
pub async fn connect_lettre(
    addr: std::net::SocketAddr,
    count: usize,
) -> Result<Vec<lettre::transport::smtp::client::AsyncSmtpConnection>> {
    use lettre::transport::smtp::client::AsyncSmtpConnection;
    use lettre::transport::smtp::extension::ClientId;
    let mut connections = Vec::new();
    for _ in 0..count {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let conn =
            AsyncSmtpConnection::connect_with_transport(Box::new(stream), &ClientId::default())
                .await?;
        connections.push(conn);
    }
    Ok(connections)
}

/// Send `messages` over `connections`, each connection a task taking the next message.
pub async fn send_over_lettre(
    connections: Vec<lettre::transport::smtp::client::AsyncSmtpConnection>,
    messages: Vec<Email>,
) {
    let queue = std::sync::Mutex::new(messages.into_iter());
    let next = || queue.lock().unwrap_or_else(|p| p.into_inner()).next();
    futures::future::join_all(connections.into_iter().map(|mut conn| async move {
        while let Some(message) = next() {
            if let Err(err) = conn.send(&message.envelope, &message.formatted).await {
                tracing::warn!(error = %err, "lettre loop send failed");
            }
        }
    }))
    .await;
}

/// From `started` to the last message the sink accepted (forgetting them).
fn finish(sink: &Sink, started: Instant) -> Duration {
    let last = sink
        .take()
        .iter()
        .map(|(at, _)| *at)
        .max()
        .unwrap_or_else(Instant::now);
    last.saturating_duration_since(started)
        .max(Duration::from_millis(1))
}

/// Send `messages` over `transports` in turn, `concurrency` sends in flight.
pub async fn send_over_transports(
    transports: &[EmailTransport],
    messages: Vec<Email>,
    concurrency: usize,
) {
    futures::stream::iter(messages.into_iter().enumerate())
        .for_each_concurrent(concurrency, |(i, message)| {
            let transport = &transports[i % transports.len()];
            async move {
                if let Err(err) = transport.send(&message).await {
                    tracing::warn!(error = %err, "ceiling send failed");
                }
            }
        })
        .await;
}
