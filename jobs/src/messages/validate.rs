//! Checking a bulk send before it is stored (SPEC §5.1): every recipient's address parses and
//! normalises, and the templates render with every recipient's variables. Problems are collected
//! up to a limit, each naming the recipient (by index) and the variable or address at fault, so
//! one 422 tells the planner what to fix.
//!
//! SMS: addresses are E.164 numbers, the template is a text part only (a subject or HTML is a
//! problem named `template.subject` / `template.html`), and a rendered message over
//! [`MAX_SMS_CHARS`](super::template::MAX_SMS_CHARS) is a problem named
//! `recipients[i].variables`. The unsubscribe link is not known yet (its token is made per
//! delivery), but its length is (`SigningKey::link_len`: the public URL's and the organisation
//! id's), so a marketing SMS is measured with a stand-in of exactly that length
//! ([`SendLayout::unsubscribe_url_len`]); the delivery job's render applies the limit again to
//! the real one.

use super::Category;
use super::template::{Footer, SEND_FUEL, SmsFooter, TemplateError, TemplateSource, Templates};
use crate::suppression::{Address, Channel};
use serde::{Deserialize, Serialize};

/// Most recipients one send may carry.
pub const MAX_RECIPIENTS: usize = 50_000;
/// Problems reported at most; the rest are counted.
pub const MAX_PROBLEMS: usize = 50;
/// Characters [`validate`] assumes a marketing message's unsubscribe link takes.
pub const UNSUBSCRIBE_URL_ALLOWANCE: usize = 160;

/// What the layout of every message of a send shows besides its templates, so validation
/// renders (and measures) each message as it will go out.
#[derive(Debug, Clone, Copy)]
pub struct SendLayout<'a> {
    pub sender_name: &'a str,
    pub postal_address: &'a str,
    /// The length of the send's unsubscribe links (`SigningKey::link_len`), used on marketing
    /// messages.
    pub unsubscribe_url_len: usize,
    pub category: Category,
}

/// A recipient as the request gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipient {
    pub address: String,
    #[serde(default = "empty_object")]
    pub variables: serde_json::Value,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(Default::default())
}

/// A recipient that passed: its normalised address.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ValidRecipient {
    pub address: String,
    pub variables: serde_json::Value,
}

/// One problem: `recipients[index].field` (or a template field when `index` is `None`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub message: String,
}

/// What [`validate`] found wrong; `problems` holds the first [`MAX_PROBLEMS`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub problems: Vec<Problem>,
    /// Problems beyond those listed.
    pub more: usize,
}

/// [`validate_send`] with a stand-in sender on a marketing send.
pub fn validate(
    channel: Channel,
    source: &TemplateSource,
    recipients: Vec<Recipient>,
) -> Result<Vec<ValidRecipient>, Invalid> {
    let layout = SendLayout {
        sender_name: "sender",
        postal_address: "postal address",
        unsubscribe_url_len: UNSUBSCRIBE_URL_ALLOWANCE,
        category: Category::Marketing,
    };
    validate_send(channel, source, &layout, recipients)
}

/// Validate the templates and every recipient of a send on `channel` whose messages show
/// `layout`; return the normalised recipients.
pub fn validate_send(
    channel: Channel,
    source: &TemplateSource,
    layout: &SendLayout<'_>,
    recipients: Vec<Recipient>,
) -> Result<Vec<ValidRecipient>, Invalid> {
    let mut found = Found::default();
    if recipients.is_empty() {
        found.push("recipients", "at least one recipient is required".into());
    }
    if recipients.len() > MAX_RECIPIENTS {
        found.push(
            "recipients",
            format!(
                "at most {MAX_RECIPIENTS} recipients per send, not {}",
                recipients.len()
            ),
        );
        return Err(found.into_invalid());
    }
    // PostgreSQL text cannot hold NUL: a send or a recorded body with one could not be stored.
    for (part, text) in [
        ("subject", Some(source.subject.as_str())),
        ("text", Some(source.text.as_str())),
        ("html", source.html.as_deref()),
    ] {
        if text.is_some_and(|t| t.contains('\0')) {
            found.push(&format!("template.{part}"), NUL_PROBLEM.into());
            return Err(found.into_invalid());
        }
    }
    let mut templates = match Templates::compile_for(channel, source) {
        Ok(t) => t,
        Err(TemplateError::Syntax { part, message }) => {
            found.push(&format!("template.{part}"), message);
            return Err(found.into_invalid());
        }
        Err(e @ TemplateError::NotForChannel { part, .. }) => {
            found.push(&format!("template.{part}"), e.to_string());
            return Err(found.into_invalid());
        }
        Err(other) => {
            found.push("template", other.to_string());
            return Err(found.into_invalid());
        }
    };
    templates.limit_total_fuel(SEND_FUEL);
    let unsubscribe_url = unsubscribe_stand_in(layout.unsubscribe_url_len);
    let unsubscribe_url =
        (layout.category == Category::Marketing).then_some(unsubscribe_url.as_str());
    // A footer like the real one, so the layout is checked too.
    let footer = Footer {
        sender_name: layout.sender_name,
        postal_address: layout.postal_address,
        unsubscribe_url,
    };
    let sms_footer = SmsFooter {
        sender_name: layout.sender_name,
        unsubscribe_url,
    };
    let checks = Checks {
        channel,
        templates: &templates,
        footer: &footer,
        sms_footer: &sms_footer,
    };
    let mut valid = Vec::with_capacity(recipients.len());
    for slice in checks.run(recipients) {
        valid.extend(slice.valid);
        found.extend(slice.found);
        if slice.stopped {
            return Err(found.into_invalid());
        }
    }
    if found.total == 0 {
        // Every recipient passed, so `valid` is in the request's order.
        find_repeated_addresses(&valid, &mut found);
    }
    if found.total > 0 {
        return Err(found.into_invalid());
    }
    Ok(valid)
}

/// A guest listed twice (once normalised: `Ann@x.com` and ` ann@x.com`) would get the message
/// twice, each delivery sent on its own. Which listing's variables the planner meant is not ours
/// to guess, so each later listing is a problem that names the first.
fn find_repeated_addresses(valid: &[ValidRecipient], found: &mut Found) {
    use std::collections::hash_map::{Entry, HashMap};
    let mut first_at: HashMap<&str, usize> = HashMap::with_capacity(valid.len());
    for (index, recipient) in valid.iter().enumerate() {
        match first_at.entry(recipient.address.as_str()) {
            Entry::Vacant(entry) => {
                entry.insert(index);
            }
            Entry::Occupied(entry) => found.push(
                &format!("recipients[{index}].address"),
                format!(
                    "the same address as recipients[{}] once normalised: the guest would get \
                     the message twice",
                    entry.get()
                ),
            ),
        }
    }
}

/// Recipients per thread below which one thread checks them all (a thread costs more than
/// checking a few hundred recipients).
const RECIPIENTS_PER_THREAD: usize = 2_000;
/// Threads one send's check uses at most.
const MAX_THREADS: usize = 4;

/// What checking a recipient needs, shared by the threads of one send's check.
#[derive(Clone, Copy)]
struct Checks<'a> {
    channel: Channel,
    templates: &'a Templates,
    footer: &'a Footer<'a>,
    sms_footer: &'a SmsFooter<'a>,
}

/// What one slice of the recipients came to.
struct Checked {
    valid: Vec<ValidRecipient>,
    found: Found,
    /// Stopped at a problem of the template's own making (every next recipient would cost as
    /// much): later slices do not count.
    stopped: bool,
}

impl Checks<'_> {
    /// Check `recipients` in slices, on as many threads as the machine has cores (at most
    /// [`MAX_THREADS`], none beyond one per [`RECIPIENTS_PER_THREAD`]): rendering every
    /// recipient's message is most of a large send's creation (50,000 recipients: SPEC §5.1's
    /// limit). The slices come back in order.
    fn run(&self, mut recipients: Vec<Recipient>) -> Vec<Checked> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = cores
            .min(MAX_THREADS)
            .min(recipients.len().div_ceil(RECIPIENTS_PER_THREAD))
            .max(1);
        if threads == 1 {
            return vec![self.slice(recipients, 0)];
        }
        let size = recipients.len().div_ceil(threads);
        let mut slices = Vec::with_capacity(threads);
        while recipients.len() > size {
            let rest = recipients.split_off(size);
            slices.push(std::mem::replace(&mut recipients, rest));
        }
        slices.push(recipients);
        std::thread::scope(|scope| {
            let running: Vec<_> = slices
                .into_iter()
                .enumerate()
                .map(|(n, slice)| scope.spawn(move || self.slice(slice, n * size)))
                .collect();
            running
                .into_iter()
                .map(|thread| {
                    thread
                        .join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        })
    }

    /// Check `recipients`, the first of them at index `first` of the send.
    fn slice(&self, recipients: Vec<Recipient>, first: usize) -> Checked {
        let Checks {
            channel,
            templates,
            footer,
            sms_footer,
        } = *self;
        let mut found = Found::default();
        let mut valid = Vec::with_capacity(recipients.len());
        for (at, recipient) in recipients.into_iter().enumerate() {
            let index = first + at;
            let address = match Address::parse(channel, &recipient.address) {
                Ok(a) => Some(a),
                Err(e) => {
                    found.push(&format!("recipients[{index}].address"), e.to_string());
                    None
                }
            };
            if !recipient.variables.is_object() {
                found.push(
                    &format!("recipients[{index}].variables"),
                    "must be a JSON object".into(),
                );
                continue;
            }
            if holds_nul(&recipient.variables) {
                found.push(
                    &format!("recipients[{index}].variables"),
                    NUL_PROBLEM.into(),
                );
                continue;
            }
            let rendered = match channel {
                Channel::Email => templates
                    .render(&recipient.variables, footer)
                    .map(|r| r.contains_nul()),
                Channel::Sms => templates
                    .render_sms(&recipient.variables, sms_footer)
                    .map(|body| body.contains('\0')),
            };
            if let Ok(true) = rendered {
                // A template can write one itself (`{{ "\u0000" }}`).
                found.push(
                    &format!("recipients[{index}].message"),
                    format!("the rendered message {NUL_PROBLEM}"),
                );
                continue;
            }
            if let Err(e) = rendered {
                if e.is_costly() || matches!(e, TemplateError::Syntax { .. }) {
                    // The template's doing, not this recipient's: every next one would cost as
                    // much, or fail the same way (an unknown filter shows only when rendered).
                    let field = match e {
                        TemplateError::SendTooCostly { .. } => "template".to_owned(),
                        TemplateError::Syntax { part, .. } => format!("template.{part}"),
                        _ => format!("recipients[{index}].message"),
                    };
                    found.push(&field, e.to_string());
                    return Checked {
                        valid,
                        found,
                        stopped: true,
                    };
                }
                let field = match &e {
                    TemplateError::Undefined { variable, .. } => {
                        format!("recipients[{index}].variables.{variable}")
                    }
                    _ => format!("recipients[{index}].variables"),
                };
                found.push(&field, e.to_string());
                continue;
            }
            if let Some(address) = address {
                valid.push(ValidRecipient {
                    address: address.as_str().to_owned(),
                    variables: recipient.variables,
                });
            }
        }
        Checked {
            valid,
            found,
            stopped: false,
        }
    }
}

const NUL_PROBLEM: &str = "must not contain a NUL character (\\u0000)";

/// Whether a NUL character is in any key or string of `value`.
fn holds_nul(value: &serde_json::Value) -> bool {
    match value {
        serde_json::Value::String(s) => s.contains('\0'),
        serde_json::Value::Array(items) => items.iter().any(holds_nul),
        serde_json::Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || holds_nul(v)),
        _ => false,
    }
}

/// An unsubscribe link of `len` characters (at least the fixed part's).
fn unsubscribe_stand_in(len: usize) -> String {
    let start = "https://example.invalid/unsubscribe?token=";
    format!("{start}{}", "x".repeat(len.saturating_sub(start.len())))
}

#[derive(Default)]
struct Found {
    problems: Vec<Problem>,
    total: usize,
}

impl Found {
    fn push(&mut self, field: &str, message: String) {
        self.total += 1;
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(Problem {
                field: field.to_owned(),
                message,
            });
        }
    }

    /// Add what a later slice found.
    fn extend(&mut self, later: Found) {
        self.total += later.total;
        let room = MAX_PROBLEMS.saturating_sub(self.problems.len());
        self.problems.extend(later.problems.into_iter().take(room));
    }

    fn into_invalid(self) -> Invalid {
        Invalid {
            more: self.total - self.problems.len(),
            problems: self.problems,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::template::MAX_SMS_CHARS;
    use serde_json::json;

    fn source() -> TemplateSource {
        TemplateSource {
            subject: "Hi {{ name }}".into(),
            text: "Table {{ table }}".into(),
            html: None,
        }
    }

    /// `n` valid guests, `g<i>@example.com`, with the variables of [`source`].
    fn guests(n: usize) -> Vec<Recipient> {
        (0..n)
            .map(|i| {
                recipient(
                    &format!("g{i}@example.com"),
                    json!({"name": "G", "table": 1}),
                )
            })
            .collect()
    }

    fn recipient(address: &str, variables: serde_json::Value) -> Recipient {
        Recipient {
            address: address.into(),
            variables,
        }
    }

    #[test]
    fn a_large_send_checked_in_slices_keeps_its_order_and_names_recipients_by_their_index() {
        let n = 3 * RECIPIENTS_PER_THREAD;
        let guests = |broken: &[usize]| -> Vec<Recipient> {
            (0..n)
                .map(|i| {
                    let address = if broken.contains(&i) {
                        format!("guest{i}-at-example.com")
                    } else {
                        format!(" Guest{i}@Example.com")
                    };
                    let variables = if i == n - 1 && !broken.is_empty() {
                        json!({"table": i})
                    } else {
                        json!({"name": format!("Guest {i}"), "table": i})
                    };
                    recipient(&address, variables)
                })
                .collect()
        };
        let valid = validate(Channel::Email, &source(), guests(&[])).unwrap();
        assert_eq!(valid.len(), n);
        for (i, v) in valid.iter().enumerate() {
            assert_eq!(v.address, format!("guest{i}@example.com"));
            assert_eq!(v.variables["table"], i);
        }
        let broken = [10, RECIPIENTS_PER_THREAD + 7, 2 * RECIPIENTS_PER_THREAD + 1];
        let invalid = validate(Channel::Email, &source(), guests(&broken)).unwrap_err();
        let fields: Vec<String> = invalid.problems.iter().map(|p| p.field.clone()).collect();
        let mut expected: Vec<String> = broken
            .iter()
            .map(|i| format!("recipients[{i}].address"))
            .collect();
        expected.push(format!("recipients[{}].variables.name", n - 1));
        assert_eq!(fields, expected);
        assert_eq!(invalid.more, 0);
    }

    #[test]
    fn addresses_are_normalised() {
        let ok = validate(
            Channel::Email,
            &source(),
            vec![recipient(
                " Ann@Example.COM ",
                json!({"name": "Ann", "table": 1}),
            )],
        )
        .unwrap();
        assert_eq!(ok[0].address, "ann@example.com");
    }

    #[test]
    fn a_guest_listed_twice_once_normalised_is_a_problem_naming_the_first_listing() {
        let vars = json!({"name": "Ann", "table": 1});
        let invalid = validate(
            Channel::Email,
            &source(),
            vec![
                recipient("Ann@example.com", vars.clone()),
                recipient("bob@example.com", vars.clone()),
                recipient(" ann@EXAMPLE.com", vars.clone()),
                recipient("ann@example.com", vars.clone()),
            ],
        )
        .unwrap_err();
        let problems: Vec<(&str, bool)> = (invalid.problems.iter())
            .map(|p| (p.field.as_str(), p.message.contains("recipients[0]")))
            .collect();
        assert_eq!(
            problems,
            [
                ("recipients[2].address", true),
                ("recipients[3].address", true)
            ]
        );
        let sms = |address: &str| recipient(address, json!({"table": 1}));
        let sms_source = TemplateSource {
            subject: String::new(),
            text: "Table {{ table }}".into(),
            html: None,
        };
        let invalid = validate(
            Channel::Sms,
            &sms_source,
            vec![sms("+447700900123"), sms("+44 (0)7700 900123")],
        )
        .unwrap_err();
        assert_eq!(invalid.problems[0].field, "recipients[1].address");
    }

    #[test]
    fn a_nul_character_anywhere_is_refused_where_it_stands() {
        let ok = json!({"name": "Ann", "table": 1});
        let one = |source: &TemplateSource, variables: serde_json::Value| {
            validate(
                Channel::Email,
                source,
                vec![recipient("ann@example.com", variables)],
            )
            .unwrap_err()
            .problems[0]
                .clone()
        };
        let in_source = TemplateSource {
            text: "Table\0 {{ table }}".into(),
            ..source()
        };
        assert_eq!(one(&in_source, ok.clone()).field, "template.text");
        let in_variable = json!({"name": "Ann\u{0}", "table": 1});
        assert_eq!(one(&source(), in_variable).field, "recipients[0].variables");
        let nested = json!({"name": "Ann", "table": 1, "extra": [{"k\u{0}": 1}]});
        assert_eq!(one(&source(), nested).field, "recipients[0].variables");
        // Written by the template itself, through an escape in a string literal.
        let by_escape = TemplateSource {
            text: "Table {{ table }}{{ \"\\u0000\" }}".into(),
            ..source()
        };
        let problem = one(&by_escape, ok.clone());
        assert_eq!(problem.field, "recipients[0].message");
        assert!(problem.message.contains("NUL"), "{}", problem.message);
        assert!(
            validate(
                Channel::Email,
                &source(),
                vec![recipient("ann@example.com", ok)]
            )
            .is_ok()
        );
    }

    #[test]
    fn a_template_too_large_to_render_stops_validation_at_the_first_recipient() {
        let huge = TemplateSource {
            text: format!(
                "{{% for i in range(100000) %}}{}{{% endfor %}}",
                "x".repeat(1000)
            ),
            ..source()
        };
        let guests = guests(1000);
        let invalid = validate(Channel::Email, &huge, guests).unwrap_err();
        assert_eq!(invalid.problems.len(), 1);
        assert_eq!(invalid.problems[0].field, "recipients[0].message");
        assert!(invalid.problems[0].message.contains("larger than"));
        assert_eq!(invalid.more, 0);
    }

    #[test]
    fn an_unknown_filter_is_one_problem_of_the_template_not_one_per_recipient() {
        let unknown = TemplateSource {
            text: "Table {{ table | indent(1000000000) }}".into(),
            ..source()
        };
        let guests = guests(100);
        let invalid = validate(Channel::Email, &unknown, guests).unwrap_err();
        assert_eq!(invalid.problems.len(), 1, "{:?}", invalid.problems);
        assert_eq!(invalid.problems[0].field, "template.text");
        assert!(invalid.problems[0].message.contains("unknown filter"));
    }

    #[test]
    fn a_template_too_costly_for_the_whole_send_stops_its_check() {
        // ~120,000 steps a recipient: each render is within its own fuel, 50,000 together are
        // ~6·10⁹ steps (minutes of both cores) without a budget for the send.
        let costly = TemplateSource {
            text: "{% for i in range(60000) %}{% endfor %}Table {{ table }}".into(),
            ..source()
        };
        let guests = guests(50_000);
        let invalid = validate(Channel::Email, &costly, guests).unwrap_err();
        assert_eq!(invalid.problems.len(), 1, "{:?}", invalid.problems);
        assert_eq!(invalid.problems[0].field, "template");
        assert!(invalid.problems[0].message.contains("for every recipient"));
    }

    #[test]
    fn renders_that_fail_spend_the_send_budget_too() {
        // Each render loops ~130,000 steps, then fails on a variable nobody has: charged its
        // whole allowance, ~500 of them end the check instead of all 1,000.
        let failing = TemplateSource {
            text: "{% for i in range(65000) %}{% endfor %}{{ nobody_has_this }}".into(),
            ..source()
        };
        let guests = guests(1_000);
        let invalid = validate(Channel::Email, &failing, guests).unwrap_err();
        let found = invalid.problems.len() + invalid.more;
        assert!((400..=600).contains(&found), "{found}");
    }

    #[test]
    fn a_wedding_message_costs_a_small_share_of_the_send_budget() {
        let mut templates = Templates::compile(&TemplateSource {
            subject: "The ceremony moved to 3 pm, {{ name }}".into(),
            text: "Dear {{ name }},\n\nYou are at table {{ table }}.{% if plus_one is defined %} \
                   With {{ plus_one }}.{% endif %}"
                .into(),
            html: Some("<p>Dear {{ name }},</p><p>Table {{ table | default('-') }}</p>".into()),
        })
        .unwrap();
        // 50,000 renders of this message fit in what a send may spend.
        templates.limit_total_fuel(SEND_FUEL / 50_000);
        let footer = Footer {
            sender_name: "Ann and Bob",
            postal_address: "1 Chapel Lane, York",
            unsubscribe_url: Some("https://example.com/u?token=t"),
        };
        templates
            .render(
                &json!({"name": "Ann", "table": 4, "plus_one": "Bob"}),
                &footer,
            )
            .unwrap();
    }

    #[test]
    fn each_problem_names_the_recipient_and_the_variable() {
        let invalid = validate(
            Channel::Email,
            &source(),
            vec![
                recipient("ann@example.com", json!({"name": "Ann", "table": 1})),
                recipient("not-an-address", json!({"name": "Bob", "table": 2})),
                recipient("cy@example.com", json!({"name": "Cy"})),
            ],
        )
        .unwrap_err();
        let fields: Vec<_> = invalid.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            ["recipients[1].address", "recipients[2].variables.table"]
        );
        assert_eq!(invalid.more, 0);
    }

    #[test]
    fn a_variable_guarded_by_is_defined_may_be_left_out() {
        let template = TemplateSource {
            subject: "Hello {{ name }}".into(),
            text: "Dear {{ name }}{% if plus_one is defined %} and {{ plus_one }}{% endif %}."
                .into(),
            html: None,
        };
        let valid = validate(
            Channel::Email,
            &template,
            vec![
                recipient("ann@example.com", json!({"name": "Ann", "plus_one": "Bob"})),
                recipient("cy@example.com", json!({"name": "Cy"})),
            ],
        )
        .unwrap();
        assert_eq!(valid.len(), 2);
        let invalid = validate(
            Channel::Email,
            &template,
            vec![recipient("di@example.com", json!({"plus_one": "Ed"}))],
        )
        .unwrap_err();
        let fields: Vec<_> = invalid.problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["recipients[0].variables.name"]);
    }

    #[test]
    fn problems_are_capped_and_the_rest_counted() {
        let recipients = (0..MAX_PROBLEMS + 7)
            .map(|i| recipient(&format!("bad{i}"), json!({"name": "x", "table": 1})))
            .collect();
        let invalid = validate(Channel::Email, &source(), recipients).unwrap_err();
        assert_eq!(invalid.problems.len(), MAX_PROBLEMS);
        assert_eq!(invalid.more, 7);
    }

    fn sms_layout(category: Category) -> SendLayout<'static> {
        SendLayout {
            sender_name: "Ann and Bob",
            postal_address: "",
            unsubscribe_url_len: UNSUBSCRIBE_URL_ALLOWANCE,
            category,
        }
    }

    #[test]
    fn sms_numbers_are_normalised_to_e164() {
        let sms = TemplateSource {
            subject: String::new(),
            text: "Hi".into(),
            html: None,
        };
        let layout = sms_layout(Category::Transactional);
        let ok = validate_send(
            Channel::Sms,
            &sms,
            &layout,
            vec![recipient("+44 (7700) 900-123", json!({}))],
        )
        .unwrap();
        assert_eq!(ok[0].address, "+447700900123");
    }

    #[test]
    fn a_marketing_sms_is_measured_with_a_full_length_unsubscribe_link() {
        let sms = TemplateSource {
            subject: String::new(),
            text: "{{ note }}".into(),
            html: None,
        };
        // Fits as transactional ("\n\nAnn and Bob" is 13 characters), not with an opt-out line.
        let note = "x".repeat(MAX_SMS_CHARS - 13);
        let recipients = vec![recipient("+447700900123", json!({ "note": note }))];
        let transactional = sms_layout(Category::Transactional);
        assert!(validate_send(Channel::Sms, &sms, &transactional, recipients.clone()).is_ok());
        let marketing = sms_layout(Category::Marketing);
        let invalid = validate_send(Channel::Sms, &sms, &marketing, recipients).unwrap_err();
        assert_eq!(invalid.problems[0].field, "recipients[0].variables");
        assert!(invalid.problems[0].message.contains("1600"), "{invalid:?}");
    }

    #[test]
    fn a_marketing_sms_is_measured_with_a_link_as_long_as_the_real_one() {
        let sms = TemplateSource {
            subject: String::new(),
            text: "{{ note }}".into(),
            html: None,
        };
        let short = sms_layout(Category::Marketing);
        let long = SendLayout {
            unsubscribe_url_len: UNSUBSCRIBE_URL_ALLOWANCE + 100,
            ..short
        };
        // Fits with a 160-character link, not with a 260-character one.
        let mut note = "x".repeat(MAX_SMS_CHARS);
        let fits = |note: &str, layout: &SendLayout<'_>| {
            let guests = vec![recipient("+447700900123", json!({ "note": note }))];
            validate_send(Channel::Sms, &sms, layout, guests).is_ok()
        };
        while !fits(&note, &short) {
            note.pop();
        }
        assert!(!fits(&note, &long));
        note.truncate(note.len() - 100);
        assert!(fits(&note, &long));
    }

    #[test]
    fn too_many_recipients_are_refused_before_rendering() {
        let recipients = vec![recipient("a@example.com", json!({})); MAX_RECIPIENTS + 1];
        let invalid = validate(Channel::Email, &source(), recipients).unwrap_err();
        assert_eq!(invalid.problems[0].field, "recipients");
        assert!(invalid.problems[0].message.contains("50000"));
    }
}
