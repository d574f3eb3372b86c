//! The providers messages go out through (SPEC §5.1): SMTP for email, an HTTP API for SMS, each
//! with an optional secondary, behind circuit breakers and a send-rate limit shared by every
//! worker process.
//!
//! [`Providers::send`] picks the provider for a message: the channel's primary while its breaker
//! lets calls through, else the secondary; it waits for the provider's rate-limit slot, sends,
//! and tells the breaker how it went. A primary that fails as a provider (refused connection,
//! timeout, 421, 5xx) on this very message hands it to the secondary at once. When every
//! breaker of the channel is open, the answer is [`Dispatched::Waiting`]: the delivery job puts
//! the message back and snoozes until the first breaker half-opens, so an outage delays
//! messages without failing them or using up attempts.

mod breaker;
mod error;
mod publish;
mod rate_limit;
mod sms;
mod smtp;
mod smtp_pool;
mod smtp_tls;
mod smtp_transaction;
pub mod status;

pub use breaker::{Breaker, BreakerConfig, BreakerSnapshot, Call, Permission};
pub use error::{SendError, SmsMessage};
pub use publish::{BreakerPublisher, PUBLISH_EVERY};
pub use rate_limit::RateLimiter;
pub(crate) use sms::{OPTED_OUT_CODE, RECIPIENT_CODES};
pub use sms::{SmsClient, SmsConfigError, SmsOutbox};
pub use smtp::{DEFAULT_POOL_SIZE, EmailTransport, SmtpConfigError};
pub use status::{
    BreakerReport, BreakerState, ProcessBreaker, ProviderRole, ProviderStatus, breaker_states,
    publish_breakers,
};

use crate::suppression::Channel;
use futures::FutureExt;
use futures::future::BoxFuture;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

/// An SMS transport: the HTTP provider or the outbox folder.
pub trait SmsTransport: Send + Sync + 'static {
    /// The provider's id for the accepted message (`None`: accepted, its id unknown).
    fn send<'a>(
        &'a self,
        message: &'a SmsMessage,
    ) -> BoxFuture<'a, Result<Option<String>, SendError>>;
}

impl SmsTransport for SmsClient {
    fn send<'a>(
        &'a self,
        message: &'a SmsMessage,
    ) -> BoxFuture<'a, Result<Option<String>, SendError>> {
        Box::pin(SmsClient::send(self, message))
    }
}

impl SmsTransport for SmsOutbox {
    fn send<'a>(
        &'a self,
        message: &'a SmsMessage,
    ) -> BoxFuture<'a, Result<Option<String>, SendError>> {
        Box::pin(SmsOutbox::send(self, message))
    }
}

/// A message ready for its channel's transport.
#[derive(Debug, Clone)]
pub enum Outgoing {
    Email(Box<crate::messages::email::Email>),
    Sms(SmsMessage),
}

#[derive(Clone)]
enum Transport {
    Email(EmailTransport),
    Sms(Arc<dyn SmsTransport>),
}

/// One provider of this process: its transport, breaker and optional rate limit.
pub struct Provider {
    name: String,
    channel: Channel,
    role: ProviderRole,
    transport: Transport,
    breaker: Breaker,
    limit: Option<RateLimiter>,
}

impl Provider {
    /// The channel's provider in `role`, named `smtp`/`smtp_secondary` or `sms`/`sms_secondary`.
    pub fn email(role: ProviderRole, transport: EmailTransport, breaker: BreakerConfig) -> Self {
        Provider::new(Channel::Email, role, Transport::Email(transport), breaker)
    }

    pub fn sms(
        role: ProviderRole,
        transport: Arc<dyn SmsTransport>,
        breaker: BreakerConfig,
    ) -> Self {
        Provider::new(Channel::Sms, role, Transport::Sms(transport), breaker)
    }

    fn new(
        channel: Channel,
        role: ProviderRole,
        transport: Transport,
        breaker: BreakerConfig,
    ) -> Self {
        let base = match channel {
            Channel::Email => "smtp",
            Channel::Sms => "sms",
        };
        let name = match role {
            ProviderRole::Primary => base.to_owned(),
            ProviderRole::Secondary => format!("{base}_secondary"),
        };
        Provider {
            name,
            channel,
            role,
            transport,
            breaker: Breaker::new(breaker),
            limit: None,
        }
    }

    /// Send at most `per_second` messages per second through this provider, counted over every
    /// worker process on the database of `pool`.
    pub fn with_rate_limit(mut self, pool: sqlx::PgPool, per_second: f64) -> Self {
        self.limit = Some(RateLimiter::new(pool, self.name.clone(), per_second));
        self
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn channel(&self) -> Channel {
        self.channel
    }

    pub fn role(&self) -> ProviderRole {
        self.role
    }

    pub fn breaker(&self) -> &Breaker {
        &self.breaker
    }

    /// Messages per second this provider may take, if limited.
    pub fn rate_limit(&self) -> Option<f64> {
        self.limit.as_ref().map(RateLimiter::per_second)
    }

    /// Hand the message over, unless `proceed` says no once the transport can take it.
    async fn transmit(
        &self,
        outgoing: &Outgoing,
        proceed: &dyn Proceed,
    ) -> Result<Handed, SendError> {
        match (&self.transport, outgoing) {
            (Transport::Email(t), Outgoing::Email(message)) => {
                t.send_if(message, proceed).await.map(|sent| {
                    if sent {
                        Handed::Accepted(None)
                    } else {
                        Handed::Withdrawn
                    }
                })
            }
            // An SMS is one HTTP request, with no queue of its own to wait in: asked here.
            (Transport::Sms(t), Outgoing::Sms(message)) => {
                if !proceed.proceed().await {
                    return Ok(Handed::Withdrawn);
                }
                t.send(message).await.map(Handed::Accepted)
            }
            _ => Err(SendError::Unavailable(format!(
                "{} cannot carry this kind of message",
                self.name
            ))),
        }
    }
}

/// Asked right before a message goes, once the rate limit and the transport (a free SMTP
/// connection) can take it — either can keep a message waiting for seconds, and what was true
/// when it started waiting (the send active, the guest not suppressed) may no longer be.
/// `false` withdraws it unsent. Asked once per provider tried, by the transport itself, as late
/// as it can be: what it answers (and may wait for, such as a permit of the unrecorded limit)
/// then holds only for the message's own transmission, not for its wait in the queue of the
/// SMTP pool. A plain `Fn() -> bool` closure is one.
///
/// One exception to "as late as it can be": before a message queues for the transport of a
/// provider that is not the channel's first, [`Proceed::reserve`] takes now whatever
/// `proceed` would wait for. A message the first provider failed keeps what it took there
/// (a permit of the unrecorded limit: that provider may have taken the message) while it
/// queues for the next provider's connection, so a message holding such a connection must
/// never wait for one of those permits: with the permits all held by messages queued behind
/// it, the two would wait for each other for good (`tests/message_providers.rs`,
/// `failing_over_with_the_unrecorded_permits_all_taken_does_not_stall_the_send`).
pub trait Proceed: Sync {
    fn proceed(&self) -> BoxFuture<'_, bool>;

    /// Wait until the caller may send at all (the worker's lease on its job), before the
    /// message takes a connection, a breaker call or a rate-limit slot: a message that waited
    /// holding those would hold a connection idle and go in a burst; nothing by default.
    fn ready(&self) -> BoxFuture<'_, ()> {
        futures::future::ready(()).boxed()
    }

    /// Take what [`Proceed::proceed`] would wait for, before queueing for a fallback
    /// provider's transport; nothing by default.
    fn reserve(&self) -> BoxFuture<'_, ()> {
        futures::future::ready(()).boxed()
    }

    /// Whether what [`Proceed::proceed`] last said still holds, without waiting (the worker's
    /// lease): asked again right before the message goes when setting up the transport took
    /// time (a new SMTP connection). `false` sends the message back to `proceed`.
    fn still(&self) -> bool {
        true
    }
}

impl<F: Fn() -> bool + Sync> Proceed for F {
    fn proceed(&self) -> BoxFuture<'_, bool> {
        futures::future::ready(self()).boxed()
    }

    fn still(&self) -> bool {
        self()
    }
}

/// What a provider did with a message it was handed.
enum Handed {
    /// Taken, with the provider's own id for it when it gives one (an SMS `sid`).
    Accepted(Option<String>),
    /// `proceed` said no while it waited for the transport (a free SMTP connection).
    Withdrawn,
}

/// How a message fared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dispatched {
    /// Accepted by the provider called `provider`, which named it `provider_id` (an SMS `sid`;
    /// email has its own Message-ID).
    Sent {
        provider: String,
        provider_id: Option<String>,
    },
    /// Refused, deferred or failed at `provider` (the last one tried).
    Failed { provider: String, error: SendError },
    /// Every provider of the channel is open; nothing was sent. Come back after `retry_after`.
    Waiting { retry_after: Duration },
    /// `proceed` said no once the rate limit and the transport let the message go (the send was
    /// paused or cancelled meanwhile, or the guest suppressed); nothing was sent.
    Withdrawn,
    /// The provider's shared rate limit could not be read (the database failing): nothing was
    /// sent, and no provider is at fault, so the delivery waits without using an attempt.
    NotReady { reason: String },
}

/// Every provider of this process, by channel, first choice first.
#[derive(Default)]
pub struct Providers {
    email: Vec<Provider>,
    sms: Vec<Provider>,
}

impl Providers {
    pub fn new() -> Self {
        Providers::default()
    }

    /// Add a provider; a channel's providers are tried in the order added.
    pub fn with(mut self, provider: Provider) -> Self {
        match provider.channel {
            Channel::Email => self.email.push(provider),
            Channel::Sms => self.sms.push(provider),
        }
        self
    }

    pub fn of(&self, channel: Channel) -> &[Provider] {
        match channel {
            Channel::Email => &self.email,
            Channel::Sms => &self.sms,
        }
    }

    /// Every provider, email first.
    pub fn all(&self) -> impl Iterator<Item = &Provider> {
        self.email.iter().chain(&self.sms)
    }

    /// The rate limit, if any, of the provider the channel's messages go to now: the first
    /// whose breaker is not open (the first when every one is). During a primary's outage that
    /// is the secondary's, whose lower limit a batch must size its chunks to.
    pub fn rate_limit(&self, channel: Channel) -> Option<f64> {
        let chain = self.of(channel);
        (chain.iter())
            .find(|p| p.breaker.state() != BreakerState::Open)
            .or(chain.first())
            .and_then(Provider::rate_limit)
    }

    /// Send `outgoing` on `channel` (see the module documentation for the choice of provider),
    /// unless `proceed` answers false right before it would go: under a rate limit a message
    /// may wait a while for its slot, and what was true when it started waiting may not be.
    pub async fn send(
        &self,
        channel: Channel,
        outgoing: Outgoing,
        proceed: &dyn Proceed,
    ) -> Dispatched {
        let chain = self.of(channel);
        proceed.ready().await;
        let mut retry_after: Option<Duration> = None;
        let mut failure: Option<(String, SendError)> = None;
        for (position, provider) in chain.iter().enumerate() {
            let call = match provider.breaker.permit() {
                Permission::Granted(call) => call,
                Permission::Denied { retry_after: d } => {
                    retry_after = Some(retry_after.map_or(d, |r| r.min(d)));
                    continue;
                }
            };
            if position > 0 {
                proceed.reserve().await;
            }
            let gate = Gate {
                provider,
                probe: call.is_probe(),
                proceed,
                stopped: std::sync::Mutex::new(None),
            };
            match provider.transmit(&outgoing, &gate).await {
                // Nothing was sent: the breaker's call is dropped unjudged.
                Ok(Handed::Withdrawn) => match gate.stopped.into_inner().ok().flatten() {
                    None => return Dispatched::Withdrawn,
                    Some(GateStop::BreakerOpened(d)) => {
                        retry_after = Some(retry_after.map_or(d, |r| r.min(d)));
                    }
                    // Our database failed, not the provider: no attempt is charged for it.
                    Some(GateStop::RateLimit(err)) => {
                        return Dispatched::NotReady {
                            reason: format!(
                                "the rate limit of {} could not be read: {err}",
                                provider.name
                            ),
                        };
                    }
                },
                Ok(Handed::Accepted(provider_id)) => {
                    call.succeeded();
                    return Dispatched::Sent {
                        provider: provider.name.clone(),
                        provider_id,
                    };
                }
                Err(error) if error.is_provider_failure() => {
                    call.failed();
                    failure = Some((provider.name.clone(), error));
                }
                Err(error) => {
                    call.succeeded();
                    return Dispatched::Failed {
                        provider: provider.name.clone(),
                        error,
                    };
                }
            }
        }
        match (failure, retry_after) {
            (Some((provider, error)), _) => Dispatched::Failed { provider, error },
            (None, Some(retry_after)) => Dispatched::Waiting { retry_after },
            (None, None) => Dispatched::Failed {
                provider: String::new(),
                error: SendError::Unavailable(format!("no {channel} provider is configured")),
            },
        }
    }
}

/// What a provider asks right before a message goes, once the transport can take it (a free
/// SMTP connection), around the caller's [`Proceed`]: is its breaker still not open, and its
/// rate-limit slot. Both wait until then, not from before the message queued for a connection:
/// a breaker that opened while messages queued behind a dead server sends them to the secondary
/// (or back, to wait) instead of each waiting out its connect timeout there, and a slot taken
/// before a stall would be spent late, in a burst, once the stall ends.
struct Gate<'a> {
    provider: &'a Provider,
    probe: bool,
    proceed: &'a dyn Proceed,
    /// Why the gate, not the caller, said no.
    stopped: std::sync::Mutex<Option<GateStop>>,
}

enum GateStop {
    /// The breaker opened while the message waited; open for this much longer.
    BreakerOpened(Duration),
    RateLimit(sqlx::Error),
}

impl Gate<'_> {
    fn stop(&self, why: GateStop) -> bool {
        *crate::sync::lock(&self.stopped) = Some(why);
        false
    }
}

/// How long after its rate-limit slot a message may still go on it. The checks after the slot
/// can take long (an unrecorded permit while the outcome writer is slow, a suppression lookup,
/// the worker's lease); messages held up there together would otherwise all go the moment they
/// are let through, each on a slot long past: a burst. Past this, a message takes a new slot.
const LATE_SLOT: Duration = rate_limit::RESERVE_AHEAD;

impl Proceed for Gate<'_> {
    fn proceed(&self) -> BoxFuture<'_, bool> {
        async move {
            loop {
                if !self.probe
                    && let Some(rest) = self.provider.breaker.refuses_now()
                {
                    return self.stop(GateStop::BreakerOpened(rest));
                }
                let slot = match &self.provider.limit {
                    Some(limit) => match limit.acquire().await {
                        Ok(()) => Some(tokio::time::Instant::now()),
                        Err(err) => return self.stop(GateStop::RateLimit(err)),
                    },
                    None => None,
                };
                if !self.proceed.proceed().await {
                    return false;
                }
                // A second pass is quick: what the first waited for (a permit) is held now.
                if slot.is_none_or(|at| at.elapsed() <= LATE_SLOT) {
                    return true;
                }
            }
        }
        .boxed()
    }

    fn reserve(&self) -> BoxFuture<'_, ()> {
        self.proceed.reserve()
    }

    fn still(&self) -> bool {
        self.proceed.still()
    }
}

impl fmt::Debug for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("state", &self.breaker.state())
            .field("rate_limit", &self.rate_limit())
            .finish()
    }
}

impl fmt::Debug for Providers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.all()).finish()
    }
}
