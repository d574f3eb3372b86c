//! Templates of a bulk send (SPEC §5.1): a subject, a text part and an optional HTML part, in
//! minijinja, rendered per recipient and wrapped in the base layout of `templates/email/`.
//!
//! - Undefined variables are errors (`UndefinedBehavior::Strict`): a guest never gets
//!   "Dear ," because their row lacked a name.
//! - The HTML part is auto-escaped (its template is named `*.html`); the text part and the
//!   subject are not.
//! - The subject becomes a header: any control character a variable brings (CR, LF, tab) is
//!   replaced by a space, so no variable can add a header line.
//! - Rendering is bounded by fuel, so a template's loop cannot keep a worker busy.
//! - The layouts are embedded with `include_str!`: the binary needs no template files.

use minijinja::{Environment, ErrorKind, UndefinedBehavior, Value, context};
use std::collections::BTreeSet;

const BASE_HTML: &str = include_str!("../../../templates/email/base.html");
const BASE_TEXT: &str = include_str!("../../../templates/email/base.txt");
/// Instructions one recipient's render may execute (all three parts and the layouts).
const FUEL: u64 = 200_000;

/// A send's templates as the planner wrote them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TemplateSource {
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
}

/// Compiled templates of one send.
pub struct Templates {
    env: Environment<'static>,
    /// Top-level variables each part uses, for naming the one a recipient lacks.
    used: Vec<(&'static str, BTreeSet<String>)>,
    has_html: bool,
}

const PARTS: [(&str, &str); 3] = [
    ("subject", "subject.txt"),
    ("text", "body.txt"),
    ("html", "body.html"),
];

impl Templates {
    pub fn compile(source: &TemplateSource) -> Result<Templates, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        env.add_template("base.html", BASE_HTML)
            .expect("the embedded HTML layout compiles");
        env.add_template("base.txt", BASE_TEXT)
            .expect("the embedded text layout compiles");
        let mut used = Vec::new();
        let sources = [
            Some(source.subject.clone()),
            Some(source.text.clone()),
            source.html.clone(),
        ];
        for ((part, name), text) in PARTS.into_iter().zip(sources) {
            let Some(text) = text else { continue };
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
            env,
            used,
            has_html: source.html.is_some(),
        })
    }

    /// The first variable a part uses that `variables` (a JSON object) lacks.
    pub fn missing_variable(&self, variables: &serde_json::Value) -> Option<TemplateError> {
        let object = variables.as_object();
        self.used.iter().find_map(|(part, names)| {
            names
                .iter()
                .find(|name| !object.is_some_and(|o| o.contains_key(name.as_str())))
                .map(|name| TemplateError::Undefined {
                    part,
                    variable: name.clone(),
                })
        })
    }

    /// Render every part for one recipient and wrap it in the layout.
    pub fn render(
        &self,
        variables: &serde_json::Value,
        footer: &Footer<'_>,
    ) -> Result<Rendered, TemplateError> {
        if let Some(missing) = self.missing_variable(variables) {
            return Err(missing);
        }
        let vars = Value::from_serialize(variables);
        let subject = self.part("subject", "subject.txt", &vars)?;
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
        let text_body = self.part("text", "body.txt", &vars)?;
        let text = self.layout("text", "base.txt", layout(Value::from(text_body)))?;
        let html = if self.has_html {
            let body = self.part("html", "body.html", &vars)?;
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

    fn part(&self, part: &'static str, name: &str, vars: &Value) -> Result<String, TemplateError> {
        let template = self.env.get_template(name).expect("compiled");
        template.render(vars).map_err(|e| render_error(part, &e))
    }

    fn layout(&self, part: &'static str, name: &str, ctx: Value) -> Result<String, TemplateError> {
        let template = self.env.get_template(name).expect("embedded");
        template.render(ctx).map_err(|e| render_error(part, &e))
    }
}

fn render_error(part: &'static str, err: &minijinja::Error) -> TemplateError {
    if err.kind() == ErrorKind::UndefinedError {
        // A nested or computed name (`guest.name`, `items[3]`): the top-level check passed.
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
    subject
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
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

    #[test]
    fn a_missing_variable_is_named() {
        let t = Templates::compile(&source("<p>{{ name }} {{ dress_code }}</p>")).unwrap();
        let err = t
            .render(&json!({"name": "Ann", "table": 1}), &FOOTER)
            .unwrap_err();
        assert_eq!(
            err,
            TemplateError::Undefined {
                part: "html",
                variable: "dress_code".into()
            }
        );
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
            matches!(result, Err(TemplateError::Render { part: "text", .. })),
            "{result:?}"
        );
    }
}
