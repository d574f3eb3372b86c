//! SMS templates: one plain-text part (no auto-escaping, strict undefined variables as for
//! email), wrapped in `templates/sms/base.txt` — the body, the sender's name and, on marketing
//! messages, an opt-out line with the unsubscribe link. Rendering refuses a message over
//! [`MAX_SMS_CHARS`], so validation and the delivery job apply the same limit.

use super::{TemplateError, TemplateSource, Templates};
use crate::suppression::Channel;
use minijinja::{Value, context};

/// The layout's name in the environment.
pub(super) const LAYOUT: &str = "sms_base.txt";
/// Longest rendered SMS, in UTF-16 code units: the most Twilio-style providers accept in one
/// request (Twilio's 21617 beyond), where a character outside the Basic Multilingual Plane (an
/// emoji) counts twice. Counted so, a body over the limit is refused when the send is created,
/// not by the provider at send time. (1,600 GSM-7 characters go as 11 segments of 153; one
/// character outside GSM-7, a curly quote, makes it UCS-2, 67 per segment.)
pub const MAX_SMS_CHARS: usize = 1_600;

/// What the SMS layout adds after the body.
#[derive(Debug, Clone, Copy)]
pub struct SmsFooter<'a> {
    pub sender_name: &'a str,
    /// Marketing messages only: the recipient's unsubscribe link.
    pub unsubscribe_url: Option<&'a str>,
}

/// An SMS has a text part only: a subject or an HTML part is a mistake of the planner.
pub(super) fn refuse_email_parts(source: &TemplateSource) -> Result<(), TemplateError> {
    let not_for_sms = |part| TemplateError::NotForChannel {
        part,
        channel: Channel::Sms,
    };
    if !source.subject.is_empty() {
        return Err(not_for_sms("subject"));
    }
    if source.html.is_some() {
        return Err(not_for_sms("html"));
    }
    Ok(())
}

impl Templates {
    /// Render an SMS for one recipient: the text part in the SMS layout, at most
    /// [`MAX_SMS_CHARS`] UTF-16 code units ([`TemplateError::TooLong`] beyond).
    pub fn render_sms(
        &self,
        variables: &serde_json::Value,
        footer: &SmsFooter<'_>,
    ) -> Result<String, TemplateError> {
        self.expect_channel(Channel::Sms)?;
        let body = self.part(
            "text",
            "body.txt",
            &Value::from_serialize(variables),
            variables,
        )?;
        let ctx = context! {
            body => body,
            sender_name => footer.sender_name,
            marketing => footer.unsubscribe_url.is_some(),
            unsubscribe_url => footer.unsubscribe_url.unwrap_or_default(),
        };
        let text = self.layout("text", LAYOUT, ctx)?;
        let length = text.encode_utf16().count();
        if length > MAX_SMS_CHARS {
            return Err(TemplateError::TooLong {
                length,
                max: MAX_SMS_CHARS,
            });
        }
        Ok(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sms(text: &str) -> TemplateSource {
        TemplateSource {
            subject: String::new(),
            text: text.into(),
            html: None,
        }
    }

    const MARKETING: SmsFooter<'static> = SmsFooter {
        sender_name: "Ann & Bob",
        unsubscribe_url: Some("https://example.com/unsubscribe?token=t1"),
    };

    fn compile(text: &str) -> Templates {
        Templates::compile_for(Channel::Sms, &sms(text)).unwrap()
    }

    #[test]
    fn a_marketing_sms_is_the_body_the_sender_and_an_opt_out_line() {
        let text = compile("Hi {{ name }}, save 6 June!")
            .render_sms(&json!({"name": "Ann"}), &MARKETING)
            .unwrap();
        assert_eq!(
            text,
            "Hi Ann, save 6 June!\n\nAnn & Bob\nOpt out: https://example.com/unsubscribe?token=t1"
        );
    }

    #[test]
    fn a_transactional_sms_has_no_opt_out_line() {
        let footer = SmsFooter {
            unsubscribe_url: None,
            ..MARKETING
        };
        let text = compile("Table {{ table }}")
            .render_sms(&json!({"table": 4}), &footer)
            .unwrap();
        assert_eq!(text, "Table 4\n\nAnn & Bob");
    }

    #[test]
    fn nothing_is_escaped_in_an_sms() {
        let text = compile("{{ name }}")
            .render_sms(&json!({"name": "<b>Ann</b> & \"Bob\""}), &MARKETING)
            .unwrap();
        assert!(text.starts_with("<b>Ann</b> & \"Bob\"\n"), "{text}");
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err = compile("Hi {{ name }}")
            .render_sms(&json!({}), &MARKETING)
            .unwrap_err();
        assert_eq!(
            err,
            TemplateError::Undefined {
                part: "text",
                variable: "name".into()
            }
        );
    }

    #[test]
    fn an_sms_over_1600_characters_is_refused() {
        let t = compile("{{ note }}");
        let footer = SmsFooter {
            sender_name: "A",
            unsubscribe_url: None,
        };
        // The layout adds "\n\nA": 3 characters. Characters count, not bytes ("é" is 2 bytes).
        let fits = "é".repeat(MAX_SMS_CHARS - 3);
        assert!(t.render_sms(&json!({"note": fits}), &footer).is_ok());
        let over = "é".repeat(MAX_SMS_CHARS - 2);
        assert_eq!(
            t.render_sms(&json!({"note": over}), &footer),
            Err(TemplateError::TooLong {
                length: MAX_SMS_CHARS + 1,
                max: MAX_SMS_CHARS
            })
        );
    }

    #[test]
    fn an_emoji_counts_twice_as_the_provider_counts_it() {
        let t = compile("{{ note }}");
        let footer = SmsFooter {
            sender_name: "A",
            unsubscribe_url: None,
        };
        // 799 emoji are 1,598 UTF-16 units, and the layout's 3 make 1,601: 802 characters.
        let emoji = "\u{1F48D}".repeat(799);
        assert_eq!(
            t.render_sms(&json!({"note": emoji}), &footer),
            Err(TemplateError::TooLong {
                length: MAX_SMS_CHARS + 1,
                max: MAX_SMS_CHARS
            })
        );
        let fits = "\u{1F48D}".repeat(798);
        assert!(t.render_sms(&json!({"note": fits}), &footer).is_ok());
    }

    #[test]
    fn a_subject_or_html_is_refused_for_sms() {
        let with_subject = TemplateSource {
            subject: "Hi".into(),
            ..sms("x")
        };
        let with_html = TemplateSource {
            html: Some("<p>x</p>".into()),
            ..sms("x")
        };
        for (source, part) in [(with_subject, "subject"), (with_html, "html")] {
            let err = Templates::compile_for(Channel::Sms, &source).err().unwrap();
            assert_eq!(
                err,
                TemplateError::NotForChannel {
                    part,
                    channel: Channel::Sms
                }
            );
        }
    }

    #[test]
    fn rendering_for_the_other_channel_is_an_error_not_a_panic() {
        let footer = super::super::Footer {
            sender_name: "A",
            postal_address: "B",
            unsubscribe_url: None,
        };
        let err = compile("x").render(&json!({}), &footer).unwrap_err();
        assert!(matches!(err, TemplateError::WrongChannel { .. }), "{err}");
        let email = Templates::compile(&TemplateSource {
            subject: "s".into(),
            ..sms("x")
        })
        .unwrap();
        let err = email.render_sms(&json!({}), &MARKETING).unwrap_err();
        assert!(matches!(err, TemplateError::WrongChannel { .. }), "{err}");
    }
}
