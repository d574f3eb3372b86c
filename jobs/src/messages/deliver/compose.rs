//! One delivery as a message for its channel: the templates rendered with the recipient's
//! variables inside the layout, and for email the MIME message with its headers.

use super::claim::Claimed;
use crate::messages::MessagesContext;
use crate::messages::email::{self, Recipient, Sender};
use crate::messages::providers::{Outgoing, SmsMessage};
use crate::messages::template::{Footer, Rendered, SmsFooter, TemplateSource, Templates};
use crate::messages::unsubscribe::{LINK_PATH, UnsubscribeClaim};
use crate::suppression::Channel;

const NUL_IN_MESSAGE: &str = "the rendered message contains a NUL character";

/// What a batch job knows of its send.
#[derive(Debug, sqlx::FromRow)]
pub(super) struct SendRow {
    pub org_id: String,
    pub channel: String,
    pub category: String,
    pub state: String,
    pub subject_template: Option<String>,
    pub text_template: String,
    pub html_template: Option<String>,
    pub sender_name: String,
    pub sender_email: String,
    pub postal_address: String,
}

impl SendRow {
    pub fn channel(&self) -> Result<Channel, String> {
        self.channel
            .parse()
            .map_err(|e| format!("the send's channel: {e}"))
    }

    fn marketing(&self) -> bool {
        self.category == "marketing"
    }
}

/// A message ready to go, with what is recorded once it was accepted.
pub(super) struct Composed {
    pub outgoing: Outgoing,
    pub message_id: Option<String>,
    pub rendered: Rendered,
}

/// Composes the messages of one send; built once per batch job.
pub(super) struct Composer<'a> {
    send: &'a SendRow,
    send_id: &'a str,
    channel: Channel,
    templates: Templates,
    /// Email only: the sender, parsed once for every message (an unusable one fails each
    /// delivery with the reason, as a message that cannot be made does).
    sender: Option<Result<Sender, String>>,
    messages: &'a MessagesContext,
}

impl<'a> Composer<'a> {
    /// Compile the send's templates (validated when the send was created, so failing here means
    /// the stored send is broken: a permanent error).
    pub fn new(
        send: &'a SendRow,
        send_id: &'a str,
        messages: &'a MessagesContext,
    ) -> Result<Composer<'a>, String> {
        let channel = send.channel()?;
        let templates = Templates::compile_stored(
            channel,
            &TemplateSource {
                subject: send.subject_template.clone().unwrap_or_default(),
                text: send.text_template.clone(),
                html: send.html_template.clone(),
            },
        )
        .map_err(|e| e.to_string())?;
        let sender = match channel {
            Channel::Email => Some(
                Sender::new(&send.sender_name, &send.sender_email)
                    .map(|s| s.bouncing_to(messages.bounce_address.as_ref())),
            ),
            Channel::Sms => None,
        };
        Ok(Composer {
            send,
            send_id,
            channel,
            templates,
            sender,
            messages,
        })
    }

    pub fn channel(&self) -> Channel {
        self.channel
    }

    /// The message for `delivery`, or why it cannot be made (the delivery fails).
    pub fn compose(&self, delivery: &Claimed) -> Result<Composed, String> {
        // Marketing messages: the https link and the mailto address, with a signed token.
        let links = self.send.marketing().then(|| {
            let token = self.messages.signing_key.sign(&UnsubscribeClaim {
                delivery_id: delivery.id,
                org_id: self.send.org_id.clone(),
                channel: self.channel,
                address_hash: delivery.address_hash.clone(),
            });
            let public = &self.messages.public_url;
            (
                format!("{public}{LINK_PATH}{token}"),
                unsubscribe_mailto(public, &token),
            )
        });
        let unsubscribe = links.as_ref().map(|(url, _)| url.as_str());
        match self.channel {
            Channel::Email => {
                let sender = self
                    .sender
                    .as_ref()
                    .expect("an email send has a sender")
                    .as_ref()
                    .map_err(Clone::clone)?;
                let footer = Footer {
                    sender_name: &self.send.sender_name,
                    postal_address: &self.send.postal_address,
                    unsubscribe_url: unsubscribe,
                };
                let rendered = self
                    .templates
                    .render(&delivery.variables, &footer)
                    .map_err(|e| e.to_string())?;
                // Refused at creation since; a send stored before could still hold one, and its
                // body could not be recorded (the outcome write would fail for every row).
                if rendered.contains_nul() {
                    return Err(NUL_IN_MESSAGE.into());
                }
                let message_id =
                    email::message_id(delivery.id, self.send_id, &self.send.sender_email);
                let recipient = Recipient {
                    to: &delivery.address,
                    message_id: &message_id,
                    unsubscribe: links
                        .as_ref()
                        .map(|(url, mailto)| (url.as_str(), mailto.as_str())),
                };
                let message = sender.build(&rendered, &recipient)?;
                Ok(Composed {
                    outgoing: Outgoing::Email(Box::new(message)),
                    message_id: Some(message_id),
                    rendered,
                })
            }
            Channel::Sms => {
                let footer = SmsFooter {
                    sender_name: &self.send.sender_name,
                    unsubscribe_url: unsubscribe,
                };
                let body = self
                    .templates
                    .render_sms(&delivery.variables, &footer)
                    .map_err(|e| e.to_string())?;
                if body.contains('\0') {
                    return Err(NUL_IN_MESSAGE.into());
                }
                Ok(Composed {
                    outgoing: Outgoing::Sms(SmsMessage {
                        to: delivery.address.clone(),
                        from: self.messages.sms_from.clone(),
                        body: body.clone(),
                        // A provider that honours it drops the second of two sends after a crash.
                        idempotency_key: Some(format!("delivery-{}", delivery.id)),
                        status_callback: self.messages.sms_status_callback.clone(),
                    }),
                    message_id: None,
                    rendered: Rendered {
                        subject: String::new(),
                        text: body,
                        html: None,
                    },
                })
            }
        }
    }
}

/// `unsubscribe@<host of the public URL>?subject=unsubscribe%20<token>` (RFC 2369): the token
/// goes in the subject because it is longer than the 64 characters a local part may have.
fn unsubscribe_mailto(public_url: &str, token: &str) -> String {
    let host = url::Url::parse(public_url)
        .ok()
        .and_then(|u| u.host_str().map(str::to_owned))
        .unwrap_or_else(|| "localhost".to_owned());
    format!("unsubscribe@{host}?subject=unsubscribe%20{token}")
}
