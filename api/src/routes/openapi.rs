//! `GET /openapi.json`: the hand-written OpenAPI 3.1 document in `api/openapi.json`.
//!
//! Hand-written so the document is reviewed as the contract it is; the tests below keep it from
//! drifting from the router (every route documented, nothing documented that is not routed, every
//! `$ref` resolving).

use crate::routes::Route;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;

/// The document, embedded at build time.
pub const DOCUMENT: &str = include_str!("../../openapi.json");

pub fn routes() -> Vec<Route> {
    vec![("/openapi.json", get(document))]
}

async fn document() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/json")], DOCUMENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use std::collections::BTreeSet;

    fn parsed() -> Value {
        serde_json::from_str(DOCUMENT).expect("openapi.json is valid JSON")
    }

    #[test]
    fn document_is_openapi_3_1() {
        assert_eq!(parsed()["openapi"], "3.1.0");
    }

    #[test]
    fn every_routed_path_is_documented_and_nothing_else() {
        let doc = parsed();
        let documented: BTreeSet<&str> = doc["paths"]
            .as_object()
            .expect("paths")
            .keys()
            .map(String::as_str)
            .collect();
        let routed: BTreeSet<&str> = crate::routes::all().iter().map(|(p, _)| *p).collect();
        assert_eq!(routed, documented);
    }

    #[test]
    fn every_ref_resolves() {
        fn refs<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
            match value {
                Value::Object(map) => {
                    if let Some(Value::String(target)) = map.get("$ref") {
                        out.push(target);
                    }
                    map.values().for_each(|v| refs(v, out));
                }
                Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
                _ => {}
            }
        }
        let doc = parsed();
        let mut targets = Vec::new();
        refs(&doc, &mut targets);
        assert!(!targets.is_empty());
        for target in targets {
            let pointer = target.strip_prefix('#').expect("local ref");
            assert!(doc.pointer(pointer).is_some(), "dangling $ref {target}");
        }
    }
}
