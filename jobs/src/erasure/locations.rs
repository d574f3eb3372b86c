//! Where personal data can occur: the registry erasure walks.
//!
//! A family that stores guests' addresses adds one line to [`LOCATIONS`], with a macro for the
//! usual shapes:
//! - [`redact_json!`]`("table", "column")` — every occurrence of the address inside a jsonb
//!   value becomes `"[erased]"` (job args, results, error texts, stored responses);
//! - [`redact_text!`]`("table", "column")` — the same for free text;
//! - [`hash_text!`]`("table", "column")` — a text that contains the address is replaced by
//!   `erased:<sha256 of the old value>`: for keys that must stay distinct (unique keys);
//! - [`delete_where!`]`("name", "DELETE FROM … WHERE …$1…", Param::…)` — anything else, e.g.
//!   `delete_where!("deliveries", "DELETE FROM deliveries WHERE address_hash = $1", Param::Hash)`
//!   or an `UPDATE` that nulls a column.
//!
//! Every statement takes exactly one parameter, `$1`, chosen by its [`Param`]. Locations run in
//! the order listed, each statement with a fresh snapshot inside the erasure's transaction:
//! `jobs` comes before `jobs_finished` so that a job finalised (moved) while the erasure runs is
//! caught in the second table. The suppression list itself is handled by erasure, not here.

/// The value bound to a location's `$1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// A PostgreSQL regular expression (use with `~*`) matching the normalised address
    /// case-insensitively, and not as part of a longer address or number.
    Pattern,
    /// The normalised address itself.
    Normalised,
    /// `suppressions`-style hash of the address (`Address::hash`).
    Hash,
}

/// One place personal data can be, and the statement that removes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The key of its count in the erasure's result, e.g. `jobs.args`.
    pub name: &'static str,
    pub statement: &'static str,
    pub param: Param,
}

/// Replace the address inside a jsonb column with `"[erased]"`.
#[macro_export]
macro_rules! redact_json {
    ($table:literal, $column:literal) => {
        $crate::erasure::Location {
            name: concat!($table, ".", $column),
            statement: concat!(
                "UPDATE ",
                $table,
                " SET ",
                $column,
                " = regexp_replace(",
                $column,
                "::text, $1, '[erased]', 'gi')::jsonb WHERE ",
                $column,
                "::text ~* $1"
            ),
            param: $crate::erasure::Param::Pattern,
        }
    };
}

/// Replace the address inside a text column with `[erased]`.
#[macro_export]
macro_rules! redact_text {
    ($table:literal, $column:literal) => {
        $crate::erasure::Location {
            name: concat!($table, ".", $column),
            statement: concat!(
                "UPDATE ",
                $table,
                " SET ",
                $column,
                " = regexp_replace(",
                $column,
                ", $1, '[erased]', 'gi') WHERE ",
                $column,
                " ~* $1"
            ),
            param: $crate::erasure::Param::Pattern,
        }
    };
}

/// Replace a text containing the address by a hash of it (distinct values stay distinct).
#[macro_export]
macro_rules! hash_text {
    ($table:literal, $column:literal) => {
        $crate::erasure::Location {
            name: concat!($table, ".", $column),
            statement: concat!(
                "UPDATE ",
                $table,
                " SET ",
                $column,
                " = 'erased:' || encode(sha256(convert_to(",
                $column,
                ", 'UTF8')), 'hex') WHERE ",
                $column,
                " ~* $1"
            ),
            param: $crate::erasure::Param::Pattern,
        }
    };
}

/// Any one-parameter statement.
#[macro_export]
macro_rules! delete_where {
    ($name:literal, $statement:literal, $param:expr) => {
        $crate::erasure::Location {
            name: $name,
            statement: $statement,
            param: $param,
        }
    };
}

/// Every place a guest's address can be today. Later families add theirs here.
pub const LOCATIONS: &[Location] = &[
    redact_json!("jobs", "args"),
    redact_json!("jobs", "errors"),
    hash_text!("jobs", "unique_key"),
    redact_json!("jobs_finished", "args"),
    redact_json!("jobs_finished", "errors"),
    redact_json!("jobs_finished", "result"),
    hash_text!("jobs_finished", "unique_key"),
    redact_json!("idempotency_keys", "response"),
    redact_text!("weddings", "name"),
    redact_text!("pools", "reason"),
    // The guest's own entry in a send not fanned out yet loses its variables too (their name,
    // their table): it becomes `{"address": "[erased]"}`, which the fan-out skips, in its place
    // so the other recipients keep their ordinals. Then the address anywhere else in the list.
    delete_where!(
        "bulk_sends.recipient",
        r#"UPDATE bulk_sends b
              SET recipients = (
                  SELECT jsonb_agg(CASE WHEN lower(e.r->>'address') = $1
                                        THEN '{"address": "[erased]"}'::jsonb ELSE e.r END
                                   ORDER BY e.n)
                    FROM jsonb_array_elements(b.recipients) WITH ORDINALITY AS e(r, n))
            WHERE jsonb_typeof(b.recipients) = 'array'
              AND EXISTS (SELECT 1 FROM jsonb_array_elements(b.recipients) AS e(r)
                           WHERE lower(e.r->>'address') = $1)"#,
        Param::Normalised
    ),
    redact_json!("bulk_sends", "recipients"),
    // The guest's own deliveries go (their bodies with them, by trigger); the address in other
    // guests' deliveries (a plus-one's variables, a body that names them) is redacted.
    delete_where!(
        "deliveries",
        "DELETE FROM deliveries WHERE address_hash = $1",
        Param::Hash
    ),
    redact_json!("deliveries", "variables"),
    redact_text!("deliveries", "last_error"),
    redact_text!("delivery_bodies", "subject"),
    redact_text!("delivery_bodies", "body_text"),
    redact_text!("delivery_bodies", "body_html"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_statements_take_one_parameter() {
        for (i, location) in LOCATIONS.iter().enumerate() {
            assert!(
                LOCATIONS[..i].iter().all(|l| l.name != location.name),
                "{} listed twice",
                location.name
            );
            assert!(location.statement.contains("$1"), "{}", location.name);
            assert!(!location.statement.contains("$2"), "{}", location.name);
        }
    }

    #[test]
    fn jobs_are_erased_before_finished_jobs() {
        let position = |name: &str| LOCATIONS.iter().position(|l| l.name == name).unwrap();
        assert!(position("jobs.args") < position("jobs_finished.args"));
    }

    #[test]
    fn the_macros_build_the_documented_statements() {
        let l = redact_json!("t", "c");
        assert_eq!(l.name, "t.c");
        assert_eq!(
            l.statement,
            "UPDATE t SET c = regexp_replace(c::text, $1, '[erased]', 'gi')::jsonb WHERE c::text ~* $1"
        );
        let d = delete_where!("d", "DELETE FROM d WHERE h = $1", Param::Hash);
        assert_eq!(d.param, Param::Hash);
    }
}
