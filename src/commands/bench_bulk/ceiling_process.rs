//! The bare loops — lettre's (the ceiling, as we read it) and our transport's — in a
//! process of their own, as the worker is. The loop and the sink then talk across processes, as
//! the worker and the sink do, and as any sender and a real SMTP server do: each reply wakes the
//! other process. In the sink's own process the loop's task and the sink's can hand a message
//! over on one runtime thread without waking anything, which no deployment can; the bench prints
//! the context switches per message of both ways so that the difference shows.
//!
//! The child renders the same messages from the same recipient count and connects (lettre), says
//! `ready`, and sends only once it reads `go` (anything else, end of input included, ends it
//! unsent); the parent times from that line to the last message the sink accepted, as for every
//! other rate of the bench. The child's last line is its context switches over the sending. A
//! parent that fails on the way kills the child.

use super::ceiling::{self, LoopRun};
use super::sink::{Sink, url_of};
use super::switches::Switches;
use super::{recipients, shape, unsuppressed};
use crate::cli::{BenchBareLoopArgs, BenchLoopClient};
use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::time::Instant;
use wedsync_kinds::messages::providers::EmailTransport;

const READY: &str = "ready";
const GO: &str = "go";
const SWITCHES: &str = "context_switches=";

/// Run `client`'s loop in a child process over the connections of `workers` worker processes
/// with `pool` each, for the `expected` messages of `recipients`; messages per second from the
/// go to the last accept.
pub async fn run(
    sink: &Sink,
    client: BenchLoopClient,
    recipients: usize,
    (pool, workers): (u32, usize),
    expected: usize,
) -> Result<LoopRun> {
    let exe = std::env::current_exe().context("locating this binary")?;
    let client_arg = match client {
        BenchLoopClient::Lettre => "lettre",
        BenchLoopClient::Transport => "transport",
    };
    let child = Command::new(exe)
        .args(["bench", "bare-loop", "--sink", &sink.addr.to_string()])
        .args(["--recipients", &recipients.to_string()])
        .args([
            "--pool",
            &pool.to_string(),
            "--workers",
            &workers.to_string(),
        ])
        .args(["--client", client_arg])
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "error".into()),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting the loop's process")?;
    let (started, switches) =
        tokio::task::spawn_blocking(move || drive(KillOnDrop(Some(child)))).await??;
    ceiling::finish_loop(sink, started, expected, switches)
}

/// Wait for the child's `ready`, say `go`, wait for its count and its exit: when the go was
/// given, and the switches of both processes meanwhile.
fn drive(mut child: KillOnDrop) -> Result<(Instant, u64)> {
    let process = child.0.as_mut().expect("not yet waited for");
    let mut stdout = BufReader::new(process.stdout.take().expect("piped"));
    let mut stdin = process.stdin.take().expect("piped");
    let mut line = String::new();
    stdout.read_line(&mut line)?;
    if line.trim() != READY {
        let status = child.wait()?;
        bail!("the loop's process said {line:?}, not {READY:?}, and ended: {status}");
    }
    let ours = Switches::now();
    let started = Instant::now();
    writeln!(stdin, "{GO}")?;
    line.clear();
    stdout.read_line(&mut line)?;
    let ours = Switches::now().since(&ours);
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
}

/// The child process, killed if the parent lets go of it before it was waited for.
struct KillOnDrop(Option<Child>);

impl KillOnDrop {
    fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.0.take().expect("waited for once").wait()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `bench bare-loop`, the child: render, connect, say `ready`, send on `go`, then print the
/// context switches the sending took.
pub async fn child(args: BenchBareLoopArgs) -> Result<()> {
    let messages = ceiling::render_all(&shape(), &unsuppressed(&recipients(args.recipients)))?;
    let connections = args.pool as usize * args.workers;
    let switches = match args.client {
        BenchLoopClient::Lettre => {
            let lettre = ceiling::connect_lettre(args.sink, connections).await?;
            let before = ready_then_go().await?;
            ceiling::send_over_lettre(lettre, messages).await;
            Switches::now().since(&before)
        }
        BenchLoopClient::Transport => {
            let transports = (0..args.workers)
                .map(|_| EmailTransport::smtp("bench", &url_of(args.sink), args.pool, None))
                .collect::<Result<Vec<_>, _>>()?;
            let before = ready_then_go().await?;
            ceiling::send_over_transports(&transports, messages, connections).await;
            Switches::now().since(&before)
        }
    };
    say(&format!("{SWITCHES}{switches}"))
}

/// Say `ready` and wait for `go`: this process's switches then.
async fn ready_then_go() -> Result<Switches> {
    say(READY)?;
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).map(|_| line)
    })
    .await??;
    if line.trim() != GO {
        bail!("expected {GO:?} on standard input, read {line:?}: not sending");
    }
    Ok(Switches::now())
}

fn say(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}
