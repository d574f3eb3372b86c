//! A request's `recipients` read with caps on what they may cost in memory before validation
//! can refuse them:
//! - the first [`MAX_RECIPIENTS`] are parsed, the rest only counted: such a send is refused
//!   anyway, and 32 MiB of tiny recipients (`{"address":"a@b.co"}`, about 1.6 million of them)
//!   would otherwise take some 200 MB of parsed strings and maps first;
//! - their variables may hold at most [`MAX_VALUES_PER_RECIPIENT`] JSON values each and
//!   [`MAX_VALUES`] in all (a value inside a list or an object counts too). A parsed JSON value
//!   takes 32 bytes or more for as little as two bytes of body (`0,`), so 32 MiB of one
//!   recipient's `[0,0,0,…]` would otherwise take over 500 MB in the API, and then in the worker
//!   that sends to that guest.
//!
//! A cap reached is a 422 naming `recipients[i].variables` (the extractor's shape error).

use super::validate::{MAX_RECIPIENTS, Recipient};
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::fmt;

/// The most JSON values one recipient's variables may hold: a guest's name, table, meal and
/// the like are a handful.
pub const MAX_VALUES_PER_RECIPIENT: usize = 1_000;

/// The most JSON values all recipients' variables may hold together: 50,000 guests with 20
/// variables each.
pub const MAX_VALUES: usize = 1_000_000;

/// `recipients` as the request gave them, past the cap only counted.
#[derive(Debug, Clone, PartialEq)]
pub struct CappedRecipients {
    /// The first [`MAX_RECIPIENTS`] at most.
    pub kept: Vec<Recipient>,
    /// How many the request held, those past the cap included.
    pub total: usize,
}

impl CappedRecipients {
    pub fn over_cap(&self) -> bool {
        self.total > MAX_RECIPIENTS
    }
}

impl<'de> Deserialize<'de> for CappedRecipients {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_seq(CappedVisitor)
    }
}

struct CappedVisitor;

impl<'de> Visitor<'de> for CappedVisitor {
    type Value = CappedRecipients;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of recipients")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let hint = seq.size_hint().unwrap_or(0).min(MAX_RECIPIENTS);
        let mut kept = Vec::with_capacity(hint);
        let mut budget = Budget {
            in_all: MAX_VALUES,
            this_recipient: 0,
        };
        while kept.len() < MAX_RECIPIENTS {
            budget.this_recipient = MAX_VALUES_PER_RECIPIENT;
            match seq.next_element_seed(RecipientSeed(&mut budget))? {
                Some(recipient) => kept.push(recipient),
                None => {
                    let total = kept.len();
                    return Ok(CappedRecipients { kept, total });
                }
            }
        }
        let mut total = kept.len();
        while seq.next_element::<IgnoredAny>()?.is_some() {
            total += 1;
        }
        Ok(CappedRecipients { kept, total })
    }
}

/// JSON values the variables may still hold.
struct Budget {
    in_all: usize,
    this_recipient: usize,
}

impl Budget {
    fn take<E: de::Error>(&mut self) -> Result<(), E> {
        if self.this_recipient == 0 {
            return Err(E::custom(format!(
                "a recipient's variables may hold at most {MAX_VALUES_PER_RECIPIENT} values"
            )));
        }
        if self.in_all == 0 {
            return Err(E::custom(format!(
                "the recipients' variables may hold at most {MAX_VALUES} values in all"
            )));
        }
        self.this_recipient -= 1;
        self.in_all -= 1;
        Ok(())
    }
}

/// The fields of a recipient, unknown ones refused as the derived `Recipient` does.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "lowercase")]
enum Field {
    Address,
    Variables,
}

/// One recipient, its variables counted against the budget.
struct RecipientSeed<'b>(&'b mut Budget);

impl<'de> DeserializeSeed<'de> for RecipientSeed<'_> {
    type Value = Recipient;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Recipient, D::Error> {
        deserializer.deserialize_struct("Recipient", &["address", "variables"], self)
    }
}

impl<'de> Visitor<'de> for RecipientSeed<'_> {
    type Value = Recipient;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a recipient {address, variables}")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Recipient, A::Error> {
        let (mut address, mut variables) = (None, None);
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Address if address.is_some() => {
                    return Err(de::Error::duplicate_field("address"));
                }
                Field::Address => address = Some(map.next_value::<String>()?),
                Field::Variables if variables.is_some() => {
                    return Err(de::Error::duplicate_field("variables"));
                }
                Field::Variables => variables = Some(map.next_value_seed(ValueSeed(self.0))?),
            }
        }
        Ok(Recipient {
            address: address.ok_or_else(|| de::Error::missing_field("address"))?,
            variables: variables.unwrap_or_else(|| Value::Object(Map::new())),
        })
    }
}

/// A JSON value as `serde_json::Value` reads it, each value (nested ones too) taken from the
/// budget as it is read.
struct ValueSeed<'b>(&'b mut Budget);

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        self.0.take()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        self.0.take()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        self.0.take()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        self.0.take()?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        self.0.take()?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        self.0.take()?;
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        self.0.take()?;
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        self.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.0.take()?;
        let mut items = Vec::new();
        while let Some(item) = seq.next_element_seed(ValueSeed(&mut *self.0))? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.0.take()?;
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let value = map.next_value_seed(ValueSeed(&mut *self.0))?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn tiny(n: usize) -> String {
        let one = r#"{"address":"a@b.co"}"#;
        format!("[{}]", vec![one; n].join(","))
    }

    #[test]
    fn up_to_the_cap_every_recipient_is_kept() {
        let capped: CappedRecipients = serde_json::from_str(&tiny(MAX_RECIPIENTS)).unwrap();
        assert_eq!(capped.kept.len(), MAX_RECIPIENTS);
        assert_eq!(capped.total, MAX_RECIPIENTS);
        assert!(!capped.over_cap());
        assert_eq!(capped.kept[0].address, "a@b.co");
        assert_eq!(capped.kept[0].variables, json!({}));
    }

    #[test]
    fn past_the_cap_recipients_are_counted_not_kept() {
        let capped: CappedRecipients = serde_json::from_str(&tiny(MAX_RECIPIENTS + 7)).unwrap();
        assert_eq!(capped.kept.len(), MAX_RECIPIENTS);
        assert_eq!(capped.total, MAX_RECIPIENTS + 7);
        assert!(capped.over_cap());
    }

    #[test]
    fn variables_are_read_as_serde_json_reads_them() {
        let raw = r#"[{"variables":{"name":"Ann","table":4,"neg":-2,"pi":1.5,"ok":true,
                       "none":null,"list":[1,[2]],"nested":{"a":"b"}},"address":"ann@x.co"}]"#;
        let capped: CappedRecipients = serde_json::from_str(raw).unwrap();
        let plain: Vec<Recipient> = serde_json::from_str(raw).unwrap();
        assert_eq!(capped.kept, plain);
        assert_eq!(capped.kept[0].variables["list"], json!([1, [2]]));
    }

    #[test]
    fn a_recipient_with_too_many_values_is_refused_naming_the_cap() {
        let values = vec!["0"; MAX_VALUES_PER_RECIPIENT].join(",");
        // The array itself is one value: one element fewer fits.
        let over = format!(r#"[{{"address":"a@b.co","variables":{{"x":[{values}]}}}}]"#);
        let err = serde_json::from_str::<CappedRecipients>(&over).unwrap_err();
        assert!(err.to_string().contains("at most 1000 values"), "{err}");
        let fits = vec!["0"; MAX_VALUES_PER_RECIPIENT - 2].join(",");
        let fits = format!(r#"[{{"address":"a@b.co","variables":{{"x":[{fits}]}}}}]"#);
        assert!(serde_json::from_str::<CappedRecipients>(&fits).is_ok());
    }

    #[test]
    fn all_recipients_together_are_capped_too() {
        // 2,000 recipients of 600 values each: each within its own cap, 1.2 million in all.
        let values = vec!["0"; 598].join(",");
        let one = format!(r#"{{"address":"a@b.co","variables":{{"x":[{values}]}}}}"#);
        let raw = format!("[{}]", vec![one.as_str(); 2_000].join(","));
        let err = serde_json::from_str::<CappedRecipients>(&raw).unwrap_err();
        assert!(err.to_string().contains("values in all"), "{err}");
    }

    #[test]
    fn a_malformed_recipient_within_the_cap_is_still_an_error() {
        let err = serde_json::from_str::<CappedRecipients>(r#"[{"address":"a@b.co","x":1}]"#)
            .unwrap_err();
        assert!(err.to_string().contains("unknown field `x`"), "{err}");
        assert!(serde_json::from_str::<CappedRecipients>(r#"{"address":"a@b.co"}"#).is_err());
        let err = serde_json::from_str::<CappedRecipients>(r#"[{"variables":{}}]"#).unwrap_err();
        assert!(err.to_string().contains("missing field `address`"), "{err}");
    }
}
