//! What a planner's template may do, so that one request cannot take the process's memory or
//! its cores.
//!
//! Fuel counts the template's own instructions, not what a built-in does in one of them, and
//! the rendered-size cap ([`super::MAX_PART_BYTES`]) bounds only what is written out. So:
//! - **Operators that build a value of any size are refused at compile time**: `~` and `+`
//!   (concatenation: `{% set a = a ~ a %}` doubles per line), `*` (`[0] * 10000000000` is a lazy
//!   sequence that `join` or `sum` then walks natively) and `**`. A message needs none of them:
//!   `{{ first }} {{ last }}` writes what `first ~ " " ~ last` would.
//! - **So are statements that render into a string of their own** (`{% set %}` blocks, macros,
//!   `{% call %}`, `{% filter %}`: no cap bounds such a string, and each can double it) **or
//!   reach another template** (`include`, `import`, `from`, `extends`).
//! - **Built-ins whose output is not bounded by their input are removed** (`indent`, `batch`,
//!   `slice`, `chain`, `format`: a width, a fill or a chain of any size) or **capped** (`join`,
//!   `replace`: refused when their result would pass the part's cap).
//! - **A whole send's renders share one budget** ([`FuelBudget`]): each render may spend
//!   [`super::FUEL`], but 50,000 recipients at that cost would keep the cores busy for minutes.

use super::{MAX_PART_BYTES, TemplateError};
use minijinja::machinery::{Token, WhitespaceConfig, tokenize};
use minijinja::syntax::SyntaxConfig;
use minijinja::value::StringInput;
use minijinja::{Environment, Error, ErrorKind, State, Value};
use std::sync::atomic::{AtomicU64, Ordering};

/// Built-in filters a template may not use: their result's size is set by an argument.
const REMOVED_FILTERS: [&str; 5] = ["indent", "batch", "slice", "chain", "format"];

/// An environment with minijinja's built-ins, less those that can build a value of any size.
pub(super) fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    for name in REMOVED_FILTERS {
        env.remove_filter(name);
    }
    env.add_filter("join", capped_join);
    env.add_filter("replace", capped_replace);
    env
}

/// Statements a planner's template may not use: each renders into a string of its own, which
/// no cap bounds (`{% set a %}{{ a }}{{ a }}{% endset %}` doubles per line; a macro called on
/// its own result does the same), or reaches another template (the layouts, itself).
const REFUSED_STATEMENTS: [&str; 7] = [
    "macro", "call", "filter", "include", "import", "from", "extends",
];

/// Refuse `source` (the `part` template) when its code uses an operator or a statement that can
/// build a value of any size. Syntax errors are left to the compiler, which names them better.
pub(super) fn refuse_unbounded_constructs(
    part: &'static str,
    source: &str,
) -> Result<(), TemplateError> {
    let refuse = |what: String, line: u16, instead: &str| {
        Err(TemplateError::Syntax {
            part,
            message: format!(
                "{what} is not allowed in templates (line {line}): it can build a value of any \
                 size; {instead}"
            ),
        })
    };
    let tokens = tokenize(source, false, SyntaxConfig, WhitespaceConfig::default());
    // Within `{% set … %}`: whether an `=` has come (an assignment, not a block).
    let mut in_set: Option<bool> = None;
    let mut after_block_start = false;
    for token in tokens {
        let Ok((token, span)) = token else {
            return Ok(());
        };
        let line = span.start_line;
        let statement_start = std::mem::replace(&mut after_block_start, false);
        match token {
            Token::Tilde | Token::Plus | Token::Mul | Token::Pow => {
                let operator = match token {
                    Token::Tilde => "~",
                    Token::Plus => "+",
                    Token::Mul => "*",
                    _ => "**",
                };
                return refuse(
                    format!("`{operator}`"),
                    line,
                    "write `{{ a }} {{ b }}` rather than `a ~ b`",
                );
            }
            Token::BlockStart => after_block_start = true,
            Token::Ident(keyword) if statement_start && REFUSED_STATEMENTS.contains(&keyword) => {
                return refuse(
                    format!("`{{% {keyword} %}}`"),
                    line,
                    "write the message out in this template",
                );
            }
            Token::Ident("set") if statement_start => in_set = Some(false),
            Token::Assign if in_set.is_some() => in_set = Some(true),
            Token::BlockEnd if in_set.take() == Some(false) => {
                return refuse(
                    "`{% set %}…{% endset %}`".to_owned(),
                    line,
                    "use `{% set name = value %}`",
                );
            }
            _ => {}
        }
    }
    Ok(())
}

/// `join`, refused when the joined string would pass the part's cap.
fn capped_join(
    state: &State,
    value: &Value,
    joiner: Option<StringInput<'_>>,
) -> Result<Value, Error> {
    let joiner_len = joiner.as_ref().map_or(0, |j| j.as_str().len());
    let mut estimate = 0usize;
    if let Ok(items) = value.try_iter() {
        for (n, item) in items.enumerate() {
            let item_len = item
                .as_str()
                .map_or_else(|| item.to_string().len(), str::len);
            estimate += item_len + if n > 0 { joiner_len } else { 0 };
            refuse_past_cap(estimate, "join")?;
        }
    }
    minijinja::filters::join(state, value, joiner)
}

/// `replace`, refused when the result would pass the part's cap.
fn capped_replace(
    state: &State,
    value: StringInput<'_>,
    from: StringInput<'_>,
    to: StringInput<'_>,
) -> Result<Value, Error> {
    let text = value.as_str();
    let matches = if from.as_str().is_empty() {
        text.chars().count() + 1
    } else {
        text.matches(from.as_str()).count()
    };
    let estimate = text
        .len()
        .saturating_add(matches.saturating_mul(to.as_str().len()));
    refuse_past_cap(estimate, "replace")?;
    minijinja::filters::replace(state, value, from, to)
}

fn refuse_past_cap(estimate: usize, filter: &str) -> Result<(), Error> {
    if estimate > MAX_PART_BYTES {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("`{filter}` would build more than {MAX_PART_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Instructions the renders of one send may spend together. Shared by the threads that check a
/// send's recipients; [`FuelBudget::spend`] fails once it is used up.
#[derive(Debug)]
pub(super) struct FuelBudget {
    limit: u64,
    left: AtomicU64,
}

impl FuelBudget {
    pub(super) fn new(limit: u64) -> FuelBudget {
        FuelBudget {
            limit,
            left: AtomicU64::new(limit),
        }
    }

    /// Take `fuel` from the budget; [`TemplateError::SendTooCostly`] when not that much is left.
    pub(super) fn spend(&self, fuel: u64) -> Result<(), TemplateError> {
        self.left
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| {
                left.checked_sub(fuel)
            })
            .map(drop)
            .map_err(|_| TemplateError::SendTooCostly { limit: self.limit })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_unbounded_construct_is_refused_with_what_it_is_and_its_line() {
        for (source, what, line) in [
            ("{{ a ~ b }}", "`~`", 1),
            ("{{ a + b }}", "`+`", 1),
            ("x\n{{ [0] * 10000000000 }}", "`*`", 2),
            ("{% set x = 2 ** 64 %}", "`**`", 1),
            (
                "{% set a %}{{ a }}{{ a }}{% endset %}",
                "`{% set %}…{% endset %}`",
                1,
            ),
            (
                "{% macro d(x) %}{{ x }}{{ x }}{% endmacro %}{{ d(d(name)) }}",
                "`{% macro %}`",
                1,
            ),
            ("{% filter upper %}x{% endfilter %}", "`{% filter %}`", 1),
            ("a\nb\n{% include 'body.txt' %}", "`{% include %}`", 3),
            ("{%- from 'x' import y -%}", "`{% from %}`", 1),
        ] {
            let Err(TemplateError::Syntax { message, .. }) =
                refuse_unbounded_constructs("text", source)
            else {
                panic!("{source} was accepted");
            };
            assert!(
                message.starts_with(&format!("{what} is not allowed in templates (line {line})")),
                "{source}: {message}"
            );
        }
    }

    #[test]
    fn the_same_characters_outside_code_and_bounded_statements_are_fine() {
        for source in [
            "1 + 1 ~ 2 * 3 ** 4 {{ name }} {% if a - 1 > 0 %}{{ a // 2 }}{% endif %}",
            "{% set a = name %}{% set b, c = 1, 2 %}{% if a %}{{ a }}{% endif %} set macro",
        ] {
            assert_eq!(
                refuse_unbounded_constructs("text", source),
                Ok(()),
                "{source}"
            );
        }
    }

    #[test]
    fn a_budget_refuses_what_is_beyond_it_and_keeps_what_is_left() {
        let budget = FuelBudget::new(100);
        assert_eq!(budget.spend(60), Ok(()));
        assert_eq!(
            budget.spend(41),
            Err(TemplateError::SendTooCostly { limit: 100 })
        );
        assert_eq!(budget.spend(40), Ok(()));
    }
}
