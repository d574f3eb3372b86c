//! A real SMTP server on loopback for tests: speaks enough SMTP for lettre (EHLO/HELO, MAIL,
//! RCPT, DATA, RSET, NOOP, QUIT), records every accepted message, and can be told to answer a
//! recipient with a given reply code (a number of times or always) or to drop the connection.

use super::rules::{Rule, take_action};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// A message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub from: String,
    pub to: Vec<String>,
    /// Headers and body as sent (dot-unstuffed, CRLF line ends).
    pub data: String,
    /// When the server answered `250` to the message.
    pub accepted_at: std::time::Instant,
}

impl Received {
    /// The value of header `name` (first occurrence, unfolded).
    pub fn header(&self, name: &str) -> Option<String> {
        let head = self.data.split("\r\n\r\n").next().unwrap_or_default();
        let mut value: Option<String> = None;
        for line in head.split("\r\n") {
            if let Some(v) = value.as_mut() {
                if line.starts_with([' ', '\t']) {
                    // Unfolding removes only the line break.
                    v.push_str(line);
                    continue;
                }
                break;
            }
            if let Some((n, v)) = line.split_once(':')
                && n.eq_ignore_ascii_case(name)
            {
                value = Some(v.trim().to_owned());
            }
        }
        value
    }
}

/// What the server does when a recipient is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Answer with this code (421 also closes the connection, as a server going away does).
    Reply(u16),
    /// Close the connection without answering.
    Drop,
    /// Accept the recipient and take the message, then close the connection instead of
    /// answering the final `.`: the server has the message, the client cannot know it.
    DropAfterContent,
    /// Accept the recipient and the message, then close the connection (an idle session the
    /// server ends): the client finds out at its next command.
    CloseAfterMessage,
}

#[derive(Default)]
struct State {
    messages: Vec<Received>,
    rules: Vec<Rule<Action>>,
    /// Every RCPT seen, accepted or not.
    rcpt_attempts: VecDeque<String>,
}

pub struct SmtpServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl SmtpServer {
    pub async fn start() -> SmtpServer {
        SmtpServer::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// A server on `addr`, e.g. a port that refused connections until now (a provider that
    /// comes back).
    pub async fn start_on(addr: SocketAddr) -> SmtpServer {
        let listener = TcpListener::bind(addr).await.expect("bind SMTP");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(session(stream, shared.clone()));
            }
        });
        SmtpServer { addr, state, task }
    }

    /// `smtp://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("smtp://{}", self.addr)
    }

    /// Answer RCPT for `address` with `action`, `times` times (`None`: always).
    pub fn on_rcpt(&self, address: &str, action: Action, times: Option<usize>) {
        self.state.lock().unwrap().rules.push(Rule {
            recipient: address.to_lowercase(),
            action,
            remaining: times,
        });
    }

    pub fn messages(&self) -> Vec<Received> {
        self.state.lock().unwrap().messages.clone()
    }

    /// How many messages were accepted so far.
    pub fn count(&self) -> usize {
        self.state.lock().unwrap().messages.len()
    }

    /// How many times `address` was given in RCPT (accepted or not).
    pub fn rcpt_count(&self, address: &str) -> usize {
        let address = address.to_lowercase();
        let state = self.state.lock().unwrap();
        state
            .rcpt_attempts
            .iter()
            .filter(|a| **a == address)
            .count()
    }
}

impl Drop for SmtpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The rule's action for `address`, using one of its remaining times.
fn action_for(state: &Mutex<State>, address: &str) -> Option<Action> {
    let mut state = state.lock().unwrap();
    state.rcpt_attempts.push_back(address.to_owned());
    take_action(&mut state.rules, address)
}

fn path_address(arg: &str) -> String {
    let start = arg.find('<').map_or(0, |i| i + 1);
    let end = arg[start..].find('>').map_or(arg.len(), |i| start + i);
    arg[start..end].trim().to_lowercase()
}

async fn session(stream: TcpStream, state: Arc<Mutex<State>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read);
    let mut from = String::new();
    let mut to: Vec<String> = Vec::new();
    let mut after_message: Option<Action> = None;
    if write
        .write_all(b"220 test-smtp ESMTP ready\r\n")
        .await
        .is_err()
    {
        return;
    }
    let mut line = String::new();
    loop {
        line.clear();
        match lines.read_line(&mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let command = line.trim_end();
        let upper = command.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            "250 test-smtp\r\n".into()
        } else if upper.starts_with("MAIL FROM:") {
            from = path_address(&command[10..]);
            to.clear();
            "250 OK\r\n".into()
        } else if upper.starts_with("RCPT TO:") {
            let address = path_address(&command[8..]);
            match action_for(&state, &address) {
                Some(Action::Drop) => return,
                Some(then @ (Action::DropAfterContent | Action::CloseAfterMessage)) => {
                    after_message = Some(then);
                    to.push(address);
                    "250 OK\r\n".into()
                }
                Some(Action::Reply(code)) => {
                    let text = format!("{code} {} test rule for this recipient\r\n", class(code));
                    if write.write_all(text.as_bytes()).await.is_err() || code == 421 {
                        return;
                    }
                    continue;
                }
                None => {
                    to.push(address);
                    "250 OK\r\n".into()
                }
            }
        } else if upper == "DATA" {
            if to.is_empty() {
                "503 no valid recipients\r\n".into()
            } else {
                if write.write_all(b"354 end with .\r\n").await.is_err() {
                    return;
                }
                let mut data = String::new();
                loop {
                    line.clear();
                    match lines.read_line(&mut line).await {
                        Ok(0) | Err(_) => return,
                        Ok(_) => {}
                    }
                    if line == ".\r\n" || line == ".\n" {
                        break;
                    }
                    let unstuffed = line.strip_prefix('.').unwrap_or(&line);
                    data.push_str(unstuffed);
                }
                state.lock().unwrap().messages.push(Received {
                    from: from.clone(),
                    to: std::mem::take(&mut to),
                    data,
                    accepted_at: std::time::Instant::now(),
                });
                match after_message.take() {
                    Some(Action::DropAfterContent) => return,
                    Some(Action::CloseAfterMessage) => {
                        let _ = write.write_all(b"250 queued\r\n").await;
                        return;
                    }
                    _ => {}
                }
                "250 queued\r\n".into()
            }
        } else if upper == "RSET" {
            to.clear();
            "250 OK\r\n".into()
        } else if upper == "NOOP" {
            "250 OK\r\n".into()
        } else if upper == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else {
            "502 command not implemented\r\n".into()
        };
        if write.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
    }
}

fn class(code: u16) -> &'static str {
    match code / 100 {
        4 => "4.0.0",
        5 => "5.1.1",
        _ => "2.0.0",
    }
}
