//! A real HTTP SMS provider on loopback for tests, Twilio-shaped: `POST
//! /2010-04-01/Accounts/{ACCOUNT}/Messages.json` with the form fields To, From, Body and HTTP
//! basic auth ([`ACCOUNT`]:[`TOKEN`]); answers 201 with a JSON `sid` and records the message.
//! It can be told to answer a number with a status (a Twilio-like JSON error body; 429 adds
//! `Retry-After: 1`), to wait before answering, or to drop the connection — a number of times or
//! always. Dropping the server closes its port and every open connection, as a provider that
//! goes away does.

use super::rules::{Rule, take_action};
use base64::Engine;
use bytes::Bytes;
use futures::StreamExt;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::Frame;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// The account the server accepts (the basic-auth user, and part of the path).
pub const ACCOUNT: &str = "ACtest0000000000000000000000000001";
/// The account's token (the basic-auth password).
pub const TOKEN: &str = "test-sms-token-3f9a1c";

/// A message the server accepted.
#[derive(Debug, Clone)]
pub struct Received {
    pub to: String,
    pub from: String,
    pub body: String,
    /// The basic-auth user it came with.
    pub user: String,
    pub idempotency_key: Option<String>,
    /// Where its delivery receipts are to go (`StatusCallback`).
    pub status_callback: Option<String>,
    /// The `sid` it was answered with.
    pub sid: String,
    pub at: Instant,
}

/// What the server does with a request for a number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Answer with this status and a Twilio-like JSON error body (429: with `Retry-After: 1`).
    Status(u16),
    /// Answer with this status and this Twilio error code (21610: the number replied STOP).
    Code(u16, u32),
    /// Wait this long, then handle the request as usual.
    Delay(Duration),
    /// Close the connection without answering.
    Drop,
    /// Accept the message, then send the answer's status and the start of its body, and never
    /// the rest (a provider that stalls, or a connection cut, after it took the text).
    AcceptCutOff,
}

#[derive(Default)]
struct State {
    messages: Vec<Received>,
    rules: Vec<Rule<Action>>,
    /// The `To` of every request, accepted or not.
    requests: Vec<String>,
}

pub struct SmsServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    shutdown: CancellationToken,
}

impl SmsServer {
    pub async fn start() -> SmsServer {
        SmsServer::start_on("127.0.0.1:0".parse().unwrap()).await
    }

    /// Listen on `addr`, e.g. a port that refused connections until now.
    pub async fn start_on(addr: SocketAddr) -> SmsServer {
        let listener = TcpListener::bind(addr).await.expect("bind the SMS stub");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let shutdown = CancellationToken::new();
        let (shared, stop) = (state.clone(), shutdown.clone());
        tokio::spawn(async move {
            loop {
                let stream = tokio::select! {
                    accepted = listener.accept() => match accepted {
                        Ok((stream, _)) => stream,
                        Err(_) => continue,
                    },
                    () = stop.cancelled() => return,
                };
                tokio::spawn(connection(stream, shared.clone(), stop.clone()));
            }
        });
        SmsServer {
            addr,
            state,
            shutdown,
        }
    }

    /// The base URL a client is configured with: `http://ACCOUNT:TOKEN@<addr>/2010-04-01/Accounts/ACCOUNT`.
    pub fn url(&self) -> url::Url {
        base_url(self.addr)
    }

    /// Handle requests for `to` with `action`, `times` times (`None`: always). Rules apply in the
    /// order given; a number without a rule is accepted.
    pub fn on_to(&self, to: &str, action: Action, times: Option<usize>) {
        self.state.lock().unwrap().rules.push(Rule {
            recipient: to.to_owned(),
            action,
            remaining: times,
        });
    }

    /// Every message accepted, in arrival order.
    pub fn messages(&self) -> Vec<Received> {
        self.state.lock().unwrap().messages.clone()
    }

    /// How many requests for `to` arrived, accepted or not.
    pub fn requests_to(&self, to: &str) -> usize {
        let state = self.state.lock().unwrap();
        state.requests.iter().filter(|r| *r == to).count()
    }
}

impl Drop for SmsServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// The base URL of a provider at `addr` with the test credentials (nothing need listen there).
pub fn base_url(addr: SocketAddr) -> url::Url {
    format!("http://{ACCOUNT}:{TOKEN}@{addr}/2010-04-01/Accounts/{ACCOUNT}")
        .parse()
        .unwrap()
}

/// One HTTP/1.1 connection, served until the client closes it, a rule drops it, or the server
/// stops. Dropping the connection future closes the socket.
async fn connection(stream: TcpStream, state: Arc<Mutex<State>>, stop: CancellationToken) {
    let drop_it = CancellationToken::new();
    let service = {
        let drop_it = drop_it.clone();
        hyper::service::service_fn(move |req| handle(req, state.clone(), drop_it.clone()))
    };
    let conn =
        hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = conn => {}
        () = drop_it.cancelled() => {}
        () = stop.cancelled() => {}
    }
}

type Answer = Response<BoxBody<Bytes, Infallible>>;

async fn handle(
    req: Request<Incoming>,
    state: Arc<Mutex<State>>,
    drop_it: CancellationToken,
) -> Result<Answer, Infallible> {
    let path = req.uri().path().to_owned();
    let user_and_password = basic_auth(&req);
    let idempotency_key = req
        .headers()
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let form = match req.into_body().collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return Ok(error(400, 21000, "the request body could not be read")),
    };
    let field = |name: &str| {
        url::form_urlencoded::parse(&form)
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.into_owned())
    };
    let (to, from, body) = (field("To"), field("From"), field("Body"));
    let status_callback = field("StatusCallback");
    let mut action = to.as_deref().and_then(|to| action_for(&state, to));
    if let Some(Action::Delay(delay)) = action {
        tokio::time::sleep(delay).await;
        action = None;
    }
    match action {
        Some(Action::Drop) => {
            drop_it.cancel();
            return Ok(std::future::pending::<Answer>().await);
        }
        Some(Action::Status(status)) => {
            let message = format!("test rule for this number on {path}");
            return Ok(error(status, twilio_code(status), &message));
        }
        Some(Action::Code(status, code)) => {
            let message = format!("test rule for this number on {path}");
            return Ok(error(status, code, &message));
        }
        Some(Action::Delay(_) | Action::AcceptCutOff) | None => {}
    }
    if path != format!("/2010-04-01/Accounts/{ACCOUNT}/Messages.json") {
        let message = format!("The requested resource {path} was not found");
        return Ok(error(404, 20404, &message));
    }
    let Some((user, _)) = user_and_password.filter(|(u, p)| u == ACCOUNT && p == TOKEN) else {
        return Ok(error(401, 20003, "Authenticate"));
    };
    let (Some(to), Some(from), Some(body)) = (to, from, body) else {
        return Ok(error(400, 21604, "A 'To', 'From' and 'Body' are required"));
    };
    let sid = format!("SM{}", uuid::Uuid::new_v4().simple());
    let answer = serde_json::json!({
        "sid": sid, "status": "queued", "to": to, "from": from, "body": body,
    });
    state.lock().unwrap().messages.push(Received {
        to,
        from,
        body,
        user,
        idempotency_key,
        status_callback,
        sid,
        at: Instant::now(),
    });
    if action == Some(Action::AcceptCutOff) {
        let start = Bytes::from(answer.to_string()[..10].to_owned());
        let body =
            futures::stream::iter([Ok(Frame::data(start))]).chain(futures::stream::pending());
        let mut cut = Response::new(BodyExt::boxed(StreamBody::new(body)));
        *cut.status_mut() = StatusCode::CREATED;
        return Ok(cut);
    }
    Ok(json(201, &answer))
}

/// Count the request for `to` and return its rule's action, using one of its remaining times.
fn action_for(state: &Mutex<State>, to: &str) -> Option<Action> {
    let mut state = state.lock().unwrap();
    state.requests.push(to.to_owned());
    take_action(&mut state.rules, to)
}

fn basic_auth(req: &Request<Incoming>) -> Option<(String, String)> {
    let value = req.headers().get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let decoded = String::from_utf8(decoded).ok()?;
    let (user, password) = decoded.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

fn twilio_code(status: u16) -> u32 {
    match status {
        400 => 21211,
        401 | 403 => 20003,
        404 => 20404,
        429 => 20429,
        _ => 20500,
    }
}

/// A Twilio-like error document.
fn error(status: u16, code: u32, message: &str) -> Answer {
    let body = serde_json::json!({
        "code": code,
        "message": message,
        "more_info": format!("https://www.twilio.com/docs/errors/{code}"),
        "status": status,
    });
    let mut answer = json(status, &body);
    if status == 429 {
        answer
            .headers_mut()
            .insert("retry-after", hyper::header::HeaderValue::from_static("1"));
    }
    answer
}

fn json(status: u16, body: &serde_json::Value) -> Answer {
    let mut answer = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *answer.status_mut() = StatusCode::from_u16(status).expect("a valid status");
    answer.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    answer
}

/// The number of guest `i` of [`sms_send`].
pub fn number(i: usize) -> String {
    format!("+4477009{i:05}")
}

/// A provider of `role` at `url` (a server of this module), with a breaker that opens after 3
/// failures for 200 ms.
pub fn sms_provider(
    role: wedsync_kinds::messages::providers::ProviderRole,
    url: &url::Url,
) -> wedsync_kinds::messages::providers::Provider {
    use wedsync_kinds::messages::providers::{BreakerConfig, Provider, SmsClient};
    let client = SmsClient::new(url, Duration::from_secs(5)).unwrap();
    let breaker = BreakerConfig {
        failure_threshold: 3,
        open_for: Duration::from_millis(200),
    };
    Provider::sms(role, Arc::new(client), breaker)
}

/// A send of one text to guests `0..n` ([`number`]).
pub fn sms_send(
    category: wedsync_kinds::messages::Category,
    n: usize,
) -> wedsync_kinds::messages::NewSend {
    use wedsync_kinds::messages::template::TemplateSource;
    use wedsync_kinds::messages::validate::ValidRecipient;
    let recipients = (0..n)
        .map(|i| ValidRecipient {
            address: number(i),
            variables: serde_json::json!({"name": format!("Guest {i}")}),
        })
        .collect();
    let mut send = super::messages::new_send(category, recipients);
    send.channel = wedsync_kinds::suppression::Channel::Sms;
    send.template = TemplateSource {
        subject: String::new(),
        text: "{{ name }}, the ceremony moved to 3 pm.".to_owned(),
        html: None,
    };
    send
}
