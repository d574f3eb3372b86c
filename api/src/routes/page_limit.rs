//! The `limit` query parameter of the listing endpoints.

use crate::error::FieldError;

/// `raw` as a page size from 1 to `max`; absent or empty: `default`. Anything else is a problem
/// on `limit` (a 422 with the listing's other problems), whether it is out of range or no
/// number at all.
pub(crate) fn page_limit(raw: Option<&str>, default: i64, max: i64) -> Result<i64, FieldError> {
    match raw.filter(|s| !s.is_empty()).map(str::parse::<i64>) {
        None => Ok(default),
        Some(Ok(n)) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(FieldError::new(
            "limit",
            format!("must be an integer from 1 to {max}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::page_limit;

    #[test]
    fn a_limit_is_a_number_in_range_or_the_default_when_absent() {
        assert_eq!(page_limit(None, 50, 500).ok(), Some(50));
        assert_eq!(page_limit(Some(""), 50, 500).ok(), Some(50));
        assert_eq!(page_limit(Some("500"), 50, 500).ok(), Some(500));
        for bad in ["0", "501", "abc", "-1"] {
            let err = page_limit(Some(bad), 50, 500).unwrap_err();
            assert_eq!(err.field, "limit", "{bad}");
        }
    }
}
