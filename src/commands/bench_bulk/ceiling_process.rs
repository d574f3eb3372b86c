//! The bare loops — lettre's (the ceiling) and our transport's — in a process of their
//! own, as the worker is. The loop and the sink then talk across processes, as the worker and
//! the sink do, and as any sender and a real SMTP server do: each reply wakes the other
//! process. In the sink's own process the loop's task and the sink's can hand a message over
//! on one runtime thread without waking anything, which is a speed no deployment has; the
//! bench prints the context switches per message of both ways so that the difference shows.
//!
//! The child renders the same messages from the same recipient count, connects (lettre), says
//! `ready` and waits for a line on its standard input; the parent times from that line to the
//! last message the sink accepted, as for every other rate of the bench. The child's last line
//! is its context switches over the sending.

use super::{Sink, ceiling, recipients, shape, unsuppressed};
use crate::cli::{BenchBareLoopArgs, BenchLoopClient};
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::Instant;
use wedsync_kinds::messages::providers::EmailTransport;

const READY: &str = "ready";
const SWITCHES: &str = "context_switches=";

/// A loop's rate and what it cost in context switches.
pub struct LoopRun {
    pub messages_per_s: f64,
    /// Voluntary and involuntary context switches per message, of the loop's process and the
    /// sink's (the bench's) together.
    pub switches_per_message: f64,
}

/// Run `client`'s loop in a child process for `recipients`' messages over `connections`
/// connections; messages per second from the go to the last accept.
pub async fn run(
    sink: &Sink,
    client: BenchLoopClient,
    recipients: usize,
    connections: usize,
) -> Result<LoopRun> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let client_arg = match client {
        BenchLoopClient::Lettre => "lettre",
        BenchLoopClient::Transport => "transport",
    };
    let mut child = Command::new(exe)
        .args(["bench", "bare-loop", "--sink", &sink.addr.to_string()])
        .args(["--recipients", &recipients.to_string()])
        .args(["--connections", &connections.to_string()])
        .args(["--client", client_arg])
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the loop's process")?;
    let mut stdout = BufReader::new(child.stdout.take().expect("piped"));
    let mut stdin = child.stdin.take().expect("piped");
    let (started, switches) = tokio::task::spawn_blocking(move || -> Result<_> {
        let mut line = String::new();
        stdout.read_line(&mut line)?;
        if line.trim() != READY {
            bail!("the loop's process said {line:?}, not {READY:?}");
        }
        let ours = context_switches();
        let started = Instant::now();
        writeln!(stdin, "go")?;
        line.clear();
        stdout.read_line(&mut line)?;
        let ours = context_switches() - ours;
        let status = child.wait()?;
        if !status.success() {
            bail!("the loop's process failed: {status}");
        }
        let theirs: u64 = line
            .trim()
            .strip_prefix(SWITCHES)
            .and_then(|n| n.parse().ok())
            .with_context(|| format!("the loop's process ended with {line:?}"))?;
        Ok((started, ours + theirs))
    })
    .await??;
    let sent = sink.count();
    Ok(LoopRun {
        messages_per_s: sent as f64 / ceiling::finish(sink, started).as_secs_f64(),
        switches_per_message: switches as f64 / sent.max(1) as f64,
    })
}

/// `bench bare-loop`, the child: render, connect, say `ready`, send on `go`, then print the
/// context switches the sending took.
pub async fn child(args: BenchBareLoopArgs) -> Result<()> {
    let messages = ceiling::render_all(&shape(), &unsuppressed(&recipients(args.recipients)))?;
    let mut go = String::new();
    let switches = match args.client {
        BenchLoopClient::Lettre => {
            let connections = ceiling::connect_lettre(args.sink, args.connections).await?;
            say(READY)?;
            tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut go)).await??;
            let before = context_switches();
            ceiling::send_over_lettre(connections, messages).await;
            context_switches() - before
        }
        BenchLoopClient::Transport => {
            let url = format!("smtp://{}", args.sink);
            let transport = EmailTransport::smtp("bench", &url, args.connections as u32, None)?;
            say(READY)?;
            tokio::task::spawn_blocking(move || std::io::stdin().read_line(&mut go)).await??;
            let before = context_switches();
            ceiling::send_over_transports(&[transport], messages, args.connections).await;
            context_switches() - before
        }
    };
    say(&format!("{SWITCHES}{switches}"))
}

fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}

/// This process's context switches so far ([`context_switches_of`]).
pub fn context_switches() -> u64 {
    context_switches_of("self")
}

/// The context switches so far of process `pid` (`self`: this one), voluntary and involuntary,
/// summed over its live threads (`/proc/<pid>/task/*/status`; a thread's count is its own).
pub fn context_switches_of(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("status")).ok())
        .flat_map(|status| {
            status
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("voluntary_ctxt_switches:")
                        .or_else(|| l.strip_prefix("nonvoluntary_ctxt_switches:"))
                })
                .filter_map(|n| n.trim().parse::<u64>().ok())
                .collect::<Vec<_>>()
        })
        .sum()
}
