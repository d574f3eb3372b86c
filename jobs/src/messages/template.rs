//! Templates of a bulk send (SPEC §5.1): for email a subject, a text part and an optional HTML
//! part, in minijinja, rendered per recipient and wrapped in the base layout of
//! `templates/email/`; for SMS only the text part, wrapped in `templates/sms/base.txt` ([`sms`]).
//!
//! - Undefined variables are errors (`UndefinedBehavior::Strict`): a guest never gets
//!   "Dear ," because their row lacked a name.
//! - The HTML part is auto-escaped (its template is named `*.html`); the text part and the
//!   subject are not.
//! - The subject becomes a header: any control character a variable brings (CR, LF, tab) is
//!   replaced by a space, so no variable can add a header line.
//! - Rendering is bounded by fuel, so a template's loop cannot keep a worker busy, and what a
//!   template may build is bounded too ([`sandbox`]): one request cannot take the process's
//!   memory or cores.
//! - The layouts are embedded with `include_str!`: the binary needs no template files.

mod sandbox;
mod sms;

pub use sms::{MAX_SMS_CHARS, SmsFooter};

use crate::suppression::Channel;
use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value, context};
use std::collections::BTreeSet;

const BASE_HTML: &str = include_str!("../../../templates/email/base.html");
const BASE_TEXT: &str = include_str!("../../../templates/email/base.txt");
const BASE_SMS: &str = include_str!("../../../templates/sms/base.txt");
/// Instructions one render of a part or of a layout may execute.
const FUEL: u64 = 200_000;
/// Instructions the renders of one send's check may execute together
/// ([`Templates::limit_total_fuel`]): ~2,000 a recipient at 50,000 recipients, where a
/// message with a dozen variables and its layout take ~100–200.
pub const SEND_FUEL: u64 = 100_000_000;
/// Most bytes a rendered part (with its layout) may have: beyond any wedding message (Gmail
/// clips HTML past ~102 KB), and what bounds a template that writes a long text in a loop
/// before it takes the process's memory.
pub const MAX_PART_BYTES: usize = 128 * 1024;

/// A send's templates as the planner wrote them. An unknown field is refused: a misspelt
/// `html` would otherwise be dropped and every guest get the text part alone.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSource {
    /// Empty for SMS, which has no subject.
    #[serde(default)]
    pub subject: String,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
}

/// What the layout's footer shows.
#[derive(Debug, Clone, Copy)]
pub struct Footer<'a> {
    pub sender_name: &'a str,
    pub postal_address: &'a str,
    /// Marketing mail only: the recipient's unsubscribe link.
    pub unsubscribe_url: Option<&'a str>,
}

/// One recipient's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
}

impl Rendered {
    /// Whether a part holds a NUL character, which PostgreSQL text (the recorded body) cannot.
    pub fn contains_nul(&self) -> bool {
        [Some(&self.subject), Some(&self.text), self.html.as_ref()]
            .into_iter()
            .flatten()
            .any(|part| part.contains('\0'))
    }
}

/// Why a template did not compile or render; `part` is `subject`, `text` or `html`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TemplateError {
    #[error("the {part} template is invalid: {message}")]
    Syntax { part: &'static str, message: String },
    #[error("the {part} template uses the variable `{variable}`, which this recipient lacks")]
    Undefined {
        part: &'static str,
        variable: String,
    },
    #[error("the {part} template failed to render: {message}")]
    Render { part: &'static str, message: String },
    /// The part rendered past [`MAX_PART_BYTES`].
    #[error("the rendered {part} is larger than {limit} bytes")]
    TooLarge { part: &'static str, limit: usize },
    /// The part's render ran past its instruction budget (an endless or huge loop).
    #[error("the {part} template takes too long to render (a loop too long or endless)")]
    OutOfFuel { part: &'static str },
    /// The renders of the whole send ran past [`Templates::limit_total_fuel`]'s budget.
    #[error(
        "the templates take too long to render for every recipient (more than {limit} steps \
         together): shorten their loops"
    )]
    SendTooCostly { limit: u64 },
    /// The channel has no such part (an SMS has no subject and no HTML).
    #[error("an {channel} message has no {part}")]
    NotForChannel {
        part: &'static str,
        channel: Channel,
    },
    /// A rendered SMS over [`MAX_SMS_CHARS`] UTF-16 code units (providers refuse it).
    #[error(
        "the rendered SMS is {length} characters long (an emoji counts as 2); at most {max} fit"
    )]
    TooLong { length: usize, max: usize },
    /// Rendering for another channel than the templates were compiled for (a bug of the caller).
    #[error("the templates were compiled for {compiled}, not {requested}")]
    WrongChannel {
        compiled: Channel,
        requested: Channel,
    },
}

/// Compiled templates of one send.
pub struct Templates {
    channel: Channel,
    env: Environment<'static>,
    /// Top-level variables each part uses, for naming the one a recipient lacks.
    used: Vec<(&'static str, BTreeSet<String>)>,
    has_html: bool,
    /// Set while a send is checked: what its renders may spend together.
    budget: Option<sandbox::FuelBudget>,
}

const PARTS: [(&str, &str); 3] = [
    ("subject", "subject.txt"),
    ("text", "body.txt"),
    ("html", "body.html"),
];

impl Templates {
    /// Email templates: [`Templates::compile_for`] with [`Channel::Email`].
    pub fn compile(source: &TemplateSource) -> Result<Templates, TemplateError> {
        Templates::compile_for(Channel::Email, source)
    }

    /// Compile `source` for `channel`: email takes a subject, a text and an optional HTML part
    /// ([`Templates::render`]); SMS only a text part — a subject or HTML is refused as
    /// [`TemplateError::NotForChannel`] ([`Templates::render_sms`]).
    pub fn compile_for(
        channel: Channel,
        source: &TemplateSource,
    ) -> Result<Templates, TemplateError> {
        Templates::compile_checked(channel, source, true)
    }

    /// [`Templates::compile_for`] for a send already stored: its templates were checked when it
    /// was created, so a send created before [`sandbox`]'s rules (no `~`, `+`, `*`, `**`, set
    /// blocks or macros; fewer built-in filters) still renders, with minijinja's built-ins and
    /// bounded by its fuel and size caps as before.
    pub fn compile_stored(
        channel: Channel,
        source: &TemplateSource,
    ) -> Result<Templates, TemplateError> {
        Templates::compile_checked(channel, source, false)
    }

    fn compile_checked(
        channel: Channel,
        source: &TemplateSource,
        sandboxed: bool,
    ) -> Result<Templates, TemplateError> {
        let mut env = if sandboxed {
            sandbox::environment()
        } else {
            Environment::new()
        };
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        let sources = match channel {
            Channel::Email => {
                env.add_template("base.html", BASE_HTML)
                    .expect("the embedded HTML layout compiles");
                env.add_template("base.txt", BASE_TEXT)
                    .expect("the embedded text layout compiles");
                [
                    Some(source.subject.clone()),
                    Some(source.text.clone()),
                    source.html.clone(),
                ]
            }
            Channel::Sms => {
                sms::refuse_email_parts(source)?;
                env.add_template(sms::LAYOUT, BASE_SMS)
                    .expect("the embedded SMS layout compiles");
                [None, Some(source.text.clone()), None]
            }
        };
        let mut used = Vec::new();
        for ((part, name), text) in PARTS.into_iter().zip(sources) {
            let Some(text) = text else { continue };
            if sandboxed {
                sandbox::refuse_unbounded_constructs(part, &text)?;
            }
            env.add_template_owned(name, text)
                .map_err(|e| TemplateError::Syntax {
                    part,
                    message: describe(&e),
                })?;
            let template = env.get_template(name).expect("just added");
            // Functions like `range` are globals, not variables a recipient must carry.
            let used_here = template
                .undeclared_variables(false)
                .into_iter()
                .filter(|name| env.globals().all(|(global, _)| global != name))
                .collect();
            used.push((part, used_here));
        }
        Ok(Templates {
            channel,
            env,
            used,
            has_html: source.html.is_some(),
            budget: None,
        })
    }

    /// Make every later render spend from one budget of `fuel` instructions, and fail with
    /// [`TemplateError::SendTooCostly`] once it is used up: a send's check renders every
    /// recipient, and [`FUEL`] each would let one request keep the cores busy for minutes.
    pub fn limit_total_fuel(&mut self, fuel: u64) {
        self.budget = Some(sandbox::FuelBudget::new(fuel));
    }

    /// The first top-level variable `part` mentions that `variables` (a JSON object) lacks.
    fn missing_in(&self, part: &str, variables: &serde_json::Value) -> Option<String> {
        let object = variables.as_object();
        self.used
            .iter()
            .filter(|(used_in, _)| *used_in == part)
            .flat_map(|(_, names)| names)
            .find(|name| !object.is_some_and(|o| o.contains_key(name.as_str())))
            .cloned()
    }

    /// Render every part of an email for one recipient and wrap it in the layout.
    pub fn render(
        &self,
        variables: &serde_json::Value,
        footer: &Footer<'_>,
    ) -> Result<Rendered, TemplateError> {
        self.expect_channel(Channel::Email)?;
        let vars = Value::from_serialize(variables);
        let subject = self.part("subject", "subject.txt", &vars, variables)?;
        let subject = one_line(&subject);
        let layout = |body: Value| {
            context! {
                body => body,
                subject => subject.clone(),
                sender_name => footer.sender_name,
                postal_address => footer.postal_address,
                marketing => footer.unsubscribe_url.is_some(),
                unsubscribe_url => footer.unsubscribe_url.unwrap_or_default(),
            }
        };
        let text_body = self.part("text", "body.txt", &vars, variables)?;
        let text = self.layout("text", "base.txt", layout(Value::from(text_body)))?;
        let html = if self.has_html {
            let body = self.part("html", "body.html", &vars, variables)?;
            Some(self.layout("html", "base.html", layout(Value::from_safe_string(body)))?)
        } else {
            None
        };
        Ok(Rendered {
            subject,
            text,
            html,
        })
    }

    fn expect_channel(&self, requested: Channel) -> Result<(), TemplateError> {
        if self.channel == requested {
            return Ok(());
        }
        Err(TemplateError::WrongChannel {
            compiled: self.channel,
            requested,
        })
    }

    /// Render one part for the recipient whose `variables` `vars` holds. A variable the part
    /// mentions may be missing as long as the render does not need it (`{% if plus_one is
    /// defined %}`); one it needs is an error naming it — minijinja's own error names none.
    fn part(
        &self,
        part: &'static str,
        name: &str,
        vars: &Value,
        variables: &serde_json::Value,
    ) -> Result<String, TemplateError> {
        let template = self.env.get_template(name).expect("compiled");
        self.render_capped(&template, vars, part)
            .map_err(|error| match error {
                TemplateError::Undefined { part, variable } => TemplateError::Undefined {
                    part,
                    variable: self.missing_in(part, variables).unwrap_or(variable),
                },
                other => other,
            })
    }

    fn layout(&self, part: &'static str, name: &str, ctx: Value) -> Result<String, TemplateError> {
        let template = self.env.get_template(name).expect("embedded");
        self.render_capped(&template, &ctx, part)
    }

    /// Render into a buffer that refuses to grow past [`MAX_PART_BYTES`], and spend what the
    /// render took from the send's budget, if one is set.
    fn render_capped(
        &self,
        template: &minijinja::Template<'_, '_>,
        ctx: &Value,
        part: &'static str,
    ) -> Result<String, TemplateError> {
        let mut out = Capped(Vec::new());
        match template.render_captured_to(ctx, &mut out) {
            Ok(captured) => {
                if let Some(budget) = &self.budget {
                    let (spent, _) = captured.state().fuel_levels().unwrap_or_default();
                    budget.spend(spent)?;
                }
                String::from_utf8(out.0).map_err(|e| TemplateError::Render {
                    part,
                    message: e.to_string(),
                })
            }
            Err(e) if e.kind() == ErrorKind::WriteFailure => Err(TemplateError::TooLarge {
                part,
                limit: MAX_PART_BYTES,
            }),
            Err(e) if e.kind() == ErrorKind::OutOfFuel => Err(TemplateError::OutOfFuel { part }),
            Err(e) => {
                // What a failed render spent is not known: it is charged all it may spend, so
                // failing renders cannot run the send's check past its budget.
                if let Some(budget) = &self.budget {
                    budget.spend(FUEL)?;
                }
                Err(render_error(part, &e))
            }
        }
    }
}

impl TemplateError {
    /// Caused by the template's own cost (size, loops) rather than one recipient's data: the
    /// next recipients would cost as much, so validation stops at the first.
    pub fn is_costly(&self) -> bool {
        matches!(
            self,
            TemplateError::TooLarge { .. }
                | TemplateError::OutOfFuel { .. }
                | TemplateError::SendTooCostly { .. }
        )
    }
}

struct Capped(Vec<u8>);

impl std::io::Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.0.len() + buf.len() > MAX_PART_BYTES {
            return Err(std::io::Error::other("the rendered part is too large"));
        }
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn render_error(part: &'static str, err: &minijinja::Error) -> TemplateError {
    if matches!(
        err.kind(),
        ErrorKind::UnknownFilter
            | ErrorKind::UnknownTest
            | ErrorKind::UnknownFunction
            | ErrorKind::UnknownMethod
    ) {
        // Found only when rendered, but the template's fault whoever the recipient.
        return TemplateError::Syntax {
            part,
            message: describe(err),
        };
    }
    if err.kind() == ErrorKind::UndefinedError {
        // Named by `Templates::part` when a top-level variable is missing; else a nested or
        // computed name (`guest.name`, `items[3]`).
        return TemplateError::Undefined {
            part,
            variable: err.detail().unwrap_or("a nested value").to_owned(),
        };
    }
    TemplateError::Render {
        part,
        message: describe(err),
    }
}

/// The error and its line, without the template source.
fn describe(err: &minijinja::Error) -> String {
    let mut message = err.kind().to_string();
    if let Some(detail) = err.detail() {
        message = format!("{message}: {detail}");
    }
    if let Some(line) = err.line() {
        message = format!("{message} (line {line})");
    }
    message
}

/// Control characters (CR, LF, tab…) become spaces; the result is trimmed.
fn one_line(subject: &str) -> String {
    super::one_line::one_line(subject, usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn source(html: &str) -> TemplateSource {
        TemplateSource {
            subject: "Hello {{ name }}".into(),
            text: "Dear {{ name }}, table {{ table }}.".into(),
            html: Some(html.into()),
        }
    }

    const FOOTER: Footer<'static> = Footer {
        sender_name: "Ann & Bob",
        postal_address: "1 Chapel Lane, York",
        unsubscribe_url: Some("https://example.com/unsubscribe?token=t1"),
    };

    #[test]
    fn html_is_escaped_and_text_is_not() {
        let t = Templates::compile(&source("<p>Dear {{ name }}</p>")).unwrap();
        let r = t
            .render(&json!({"name": "<script>x</script>", "table": 4}), &FOOTER)
            .unwrap();
        let html = r.html.unwrap();
        assert!(
            html.contains("<p>Dear &lt;script&gt;x&lt;&#x2f;script&gt;</p>"),
            "{html}"
        );
        assert!(html.contains("Ann &amp; Bob"), "{html}");
        // Escaped in the attribute like every value; browsers decode it.
        assert!(html.contains("https:&#x2f;&#x2f;example.com&#x2f;unsubscribe?token=t1"));
        assert!(r.text.starts_with("Dear <script>x</script>, table 4."));
        assert!(r.text.contains("1 Chapel Lane, York"));
    }

    /// The HTML part `html` rendered for a guest with `variables`.
    fn html_of(html: &str, variables: serde_json::Value) -> Result<String, TemplateError> {
        let t = Templates::compile(&source(html)).unwrap();
        t.render(&variables, &FOOTER).map(|r| r.html.unwrap())
    }

    fn undefined_in_html(variable: &str) -> TemplateError {
        TemplateError::Undefined {
            part: "html",
            variable: variable.into(),
        }
    }

    #[test]
    fn a_missing_variable_is_named() {
        let err = html_of(
            "<p>{{ name }} {{ dress_code }}</p>",
            json!({"name": "Ann", "table": 1}),
        );
        assert_eq!(err, Err(undefined_in_html("dress_code")));
    }

    #[test]
    fn a_variable_the_render_does_not_need_may_be_missing() {
        let guarded = "<p>{{ name }}{% if plus_one is defined %} and {{ plus_one }}{% endif %}</p>";
        let alone = html_of(guarded, json!({"name": "Ann", "table": 1})).unwrap();
        assert!(alone.contains("<p>Ann</p>"), "{alone}");
        let with = html_of(
            guarded,
            json!({"name": "Ann", "table": 1, "plus_one": "Bob"}),
        );
        assert!(with.unwrap().contains("<p>Ann and Bob</p>"));
        let defaulted = html_of(
            "<p>{{ plus_one | default(\"-\") }}</p>",
            json!({"name": "Ann", "table": 1}),
        );
        assert!(defaulted.unwrap().contains("<p>-</p>"));
        // Unguarded, the same missing variable is named.
        let unguarded = html_of(
            "<p>{% if plus_one %}{{ plus_one }}{% endif %}</p>",
            json!({"name": "Ann", "table": 1}),
        );
        assert_eq!(unguarded, Err(undefined_in_html("plus_one")));
    }

    #[test]
    fn a_subject_variable_cannot_add_header_lines() {
        let t = Templates::compile(&source("x")).unwrap();
        let r = t
            .render(
                &json!({"name": "Ann\r\nBcc: evil@example.com", "table": 1}),
                &FOOTER,
            )
            .unwrap();
        assert_eq!(r.subject, "Hello Ann  Bcc: evil@example.com");
    }

    #[test]
    fn transactional_mail_has_no_unsubscribe_link() {
        let t = Templates::compile(&source("x")).unwrap();
        let footer = Footer {
            unsubscribe_url: None,
            ..FOOTER
        };
        let r = t
            .render(&json!({"name": "A", "table": 1}), &footer)
            .unwrap();
        assert!(!r.text.contains("Unsubscribe"));
        assert!(!r.html.unwrap().contains("Unsubscribe"));
    }

    #[test]
    fn syntax_errors_name_the_part() {
        let err = Templates::compile(&TemplateSource {
            subject: "ok".into(),
            text: "{% if %}".into(),
            html: None,
        })
        .err()
        .unwrap();
        assert!(
            matches!(err, TemplateError::Syntax { part: "text", .. }),
            "{err}"
        );
    }

    #[test]
    fn endless_templates_run_out_of_fuel() {
        let t = Templates::compile(&TemplateSource {
            subject: "s".into(),
            text:
                "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}"
                    .into(),
            html: None,
        })
        .unwrap();
        let result = t.render(&json!({}), &FOOTER);
        assert!(
            matches!(result, Err(TemplateError::OutOfFuel { part: "text" })),
            "{result:?}"
        );
    }

    #[test]
    fn a_part_rendered_past_the_size_limit_is_refused_before_it_grows_further() {
        let t = Templates::compile(&TemplateSource {
            subject: "s".into(),
            text: "ok".into(),
            html: Some(format!(
                "{{% for i in range(100000) %}}{}{{% endfor %}}",
                "x".repeat(1000)
            )),
        })
        .unwrap();
        let result = t.render(&json!({}), &FOOTER);
        assert!(
            matches!(result, Err(TemplateError::TooLarge { part: "html", .. })),
            "{result:?}"
        );
        assert!(result.unwrap_err().is_costly());
        let just_under = Templates::compile(&TemplateSource {
            subject: "s".into(),
            text: format!(
                "{{% for i in range(1000) %}}{}{{% endfor %}}",
                "x".repeat(100)
            ),
            html: None,
        })
        .unwrap();
        assert!(just_under.render(&json!({}), &FOOTER).is_ok());
    }

    /// What `text` does when compiled and rendered for one guest.
    fn text_of(text: &str) -> Result<String, TemplateError> {
        let t = Templates::compile(&TemplateSource {
            subject: "s".into(),
            text: text.into(),
            html: None,
        })?;
        t.render(&json!({"name": "Ann"}), &FOOTER).map(|r| r.text)
    }

    #[test]
    fn a_template_cannot_build_a_value_of_any_size() {
        for attack in [
            "{{ ([0] * 10000000000) | sum }}",
            "{% set a = name %}{% set a = a ~ a %}{% set a = a ~ a %}{{ a }}",
            "{% set a = [name] + [name] %}{{ a | join }}",
        ] {
            assert!(
                matches!(
                    text_of(attack),
                    Err(TemplateError::Syntax { part: "text", .. })
                ),
                "{attack}"
            );
        }
        let joined = text_of(&format!(
            "{{{{ range(100000) | join(\"{}\") }}}}",
            "x".repeat(2000)
        ));
        let Err(TemplateError::Render { message, .. }) = joined else {
            panic!("{joined:?}")
        };
        assert!(
            message.contains("`join` would build more than"),
            "{message}"
        );
        let replaced = text_of(&format!(
            "{{{{ \"{}\" | replace(\"\", \"{}\") }}}}",
            "y".repeat(1000),
            "x".repeat(1000)
        ));
        assert!(
            matches!(replaced, Err(TemplateError::Render { .. })),
            "{replaced:?}"
        );
        for removed in ["indent(1000000000)", "format", "batch(1000000000, 'x')"] {
            let result = text_of(&format!("{{{{ name | {removed} }}}}"));
            assert!(
                matches!(result, Err(TemplateError::Syntax { part: "text", .. })),
                "{removed}: {result:?}"
            );
        }
        // The capped filters still do their work within the cap.
        assert!(
            text_of("{{ ['a', 'b'] | join(', ') }} {{ name | replace('n', 'm') }}")
                .unwrap()
                .starts_with("a, b Amm")
        );
    }

    #[test]
    fn the_renders_of_a_send_share_one_budget() {
        let mut t = Templates::compile(&TemplateSource {
            subject: "s".into(),
            text: "{% for i in range(10000) %}{% endfor %}{{ name }}".into(),
            html: None,
        })
        .unwrap();
        let guest = json!({"name": "Ann"});
        t.limit_total_fuel(3 * FUEL);
        let mut rendered = 0;
        let err = loop {
            match t.render(&guest, &FOOTER) {
                Ok(_) => rendered += 1,
                Err(e) => break e,
            }
        };
        assert_eq!(err, TemplateError::SendTooCostly { limit: 3 * FUEL });
        assert!(err.is_costly());
        // Each render takes ~20,000 steps (two a turn of the loop): ~30 fit in the budget.
        assert!((10..=40).contains(&rendered), "{rendered}");
    }

    #[test]
    fn a_send_stored_before_the_operator_check_still_renders() {
        let source = TemplateSource {
            subject: "s".into(),
            text: "{{ name ~ '!' }}".into(),
            html: None,
        };
        assert!(matches!(
            Templates::compile(&source),
            Err(TemplateError::Syntax { part: "text", .. })
        ));
        let stored = Templates::compile_stored(Channel::Email, &source).unwrap();
        let text = stored
            .render(&json!({"name": "Ann"}), &FOOTER)
            .unwrap()
            .text;
        assert!(text.starts_with("Ann!"), "{text}");
        let indented = TemplateSource {
            text: "{{ 'a\nb' | indent(2) }}".into(),
            ..source
        };
        let stored = Templates::compile_stored(Channel::Email, &indented).unwrap();
        let text = stored.render(&json!({}), &FOOTER).unwrap().text;
        assert!(text.starts_with("a\n  b"), "{text}");
    }
}
