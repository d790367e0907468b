//! The admin API's `POST /api/publish` body (`hub::app::admin::parse_publish`,
//! public only for this target).
//!
//! Input: the request body.
//!
//! Checks: no panic; what is accepted is what the body says: a JSON object
//! whose `event` is a string, room lists of non-empty names, `volatile` a
//! boolean when given, `data` as given (`null` when absent).
#![no_main]

use hub::app::admin::parse_publish;
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|body: &[u8]| {
    let Ok(spec) = parse_publish(body) else {
        return;
    };
    let Ok(Value::Object(json)) = serde_json::from_slice::<Value>(body) else {
        panic!("accepted a body that is not a JSON object");
    };
    assert_eq!(
        json.get("event").and_then(Value::as_str),
        Some(spec.event.as_str())
    );
    assert_eq!(
        json.get("namespace").and_then(Value::as_str).unwrap_or("/"),
        spec.namespace
    );
    assert!(spec
        .to
        .iter()
        .chain(&spec.except)
        .all(|room| !room.is_empty()));
    assert_eq!(json.get("data").unwrap_or(&Value::Null), &spec.data);
    assert_eq!(
        json.get("volatile")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        spec.volatile
    );
});
