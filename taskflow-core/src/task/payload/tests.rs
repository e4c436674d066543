//! The validator against real `schemars` schemas: every serde enum
//! representation, nested choices, integers, odd keys.

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::json;

use super::{normalize_integers, validate};

/// Internally tagged: `{"type": "Card", "amount": 5, "last4": "4242"}`.
#[derive(Debug, JsonSchema, Deserialize)]
#[serde(tag = "type")]
#[allow(dead_code)]
enum Payment {
    Cash { amount: u8 },
    Card { amount: u8, last4: String },
}

/// Externally tagged: `"Pickup"`, `{"Courier": {"address": "…"}}`, `{"Freight": 3}`.
#[derive(Debug, JsonSchema, Deserialize)]
#[allow(dead_code)]
enum Delivery {
    Pickup,
    Courier { address: String },
    Freight(u8),
}

/// Adjacently tagged: `{"t": "Circle", "c": 3}`.
#[derive(Debug, JsonSchema, Deserialize)]
#[serde(tag = "t", content = "c")]
#[allow(dead_code)]
enum Shape {
    Point,
    Circle(u8),
    Rect { w: u8, h: u8 },
}

/// Untagged: `3`, `"a"`, `{"kind": "a", "seq": 3}`.
#[derive(Debug, JsonSchema, Deserialize)]
#[serde(untagged)]
#[allow(dead_code)]
enum Id {
    Number(u8),
    Name(String),
    Pair { kind: String, seq: u8 },
}

/// Unit variants with doc comments: schemars makes each a `const` branch.
#[derive(Debug, JsonSchema, Deserialize)]
#[serde(rename_all = "snake_case")]
#[allow(dead_code)]
enum Speed {
    /// Today
    Express,
    /// This week
    Standard,
}

#[derive(Debug, JsonSchema, Deserialize)]
#[allow(dead_code)]
struct Order {
    payment: Payment,
    delivery: Delivery,
    shape: Shape,
    id: Id,
    speed: Speed,
    stops: Vec<Stop>,
    tip: Option<Payment>,
}

#[derive(Debug, JsonSchema, Deserialize)]
#[allow(dead_code)]
struct Stop {
    delivery: Delivery,
}

fn order() -> serde_json::Value {
    json!({
        "payment": {"type": "Card", "amount": 5, "last4": "4242"},
        "delivery": {"Courier": {"address": "1 Main St"}},
        "shape": {"t": "Rect", "c": {"w": 1, "h": 2}},
        "id": {"kind": "a", "seq": 1},
        "speed": "express",
        "stops": [{"delivery": "Pickup"}, {"delivery": {"Freight": 3}}],
        "tip": null
    })
}

/// The messages for `order()` with `field` replaced by `value`.
fn order_messages(field: &str, value: serde_json::Value) -> Vec<String> {
    let mut payload = order();
    payload[field] = value;
    let schema = serde_json::to_value(schemars::schema_for!(Order)).unwrap();
    let issues = messages(schema, payload.clone());
    let parsed = serde_json::from_value::<Order>(payload);
    assert_eq!(issues.is_empty(), parsed.is_ok(), "the validator and serde disagree: {issues:?} {parsed:?}");
    issues
}

#[test]
fn derived_enum_schemas_accept_every_representation() {
    assert_eq!(order_messages("tip", json!({"type": "Cash", "amount": 1})), Vec::<String>::new());
    assert_eq!(order_messages("delivery", json!("Pickup")), Vec::<String>::new());
    assert_eq!(order_messages("shape", json!({"t": "Point"})), Vec::<String>::new());
    assert_eq!(order_messages("id", json!("name")), Vec::<String>::new());
}

#[test]
fn internally_tagged_errors_come_from_the_variant_the_tag_selects() {
    assert_eq!(
        order_messages("payment", json!({"type": "Card", "amount": 5})),
        ["payload.payment.last4: required field is missing"]
    );
    assert_eq!(
        order_messages("payment", json!({"type": "Cash", "amount": 300})),
        ["payload.payment.amount: expected a number <= 255, found 300"]
    );
    assert_eq!(
        order_messages("payment", json!({"type": "Wire", "amount": 5})),
        ["payload.payment.type: expected one of \"Cash\", \"Card\", found string \"Wire\""]
    );
    assert_eq!(
        order_messages("payment", json!({"amount": 5})),
        ["payload.payment.type: required field is missing; expected one of \"Cash\", \"Card\""]
    );
    assert_eq!(
        order_messages("payment", json!(5)),
        ["payload.payment: expected an object with \"type\" one of \"Cash\", \"Card\", found integer 5"]
    );
}

#[test]
fn adjacently_tagged_errors_come_from_the_variant_the_tag_selects() {
    assert_eq!(
        order_messages("shape", json!({"t": "Rect", "c": {"w": 1}})),
        ["payload.shape.c.h: required field is missing"]
    );
    assert_eq!(
        order_messages("shape", json!({"t": "Circle", "c": 300})),
        ["payload.shape.c: expected a number <= 255, found 300"]
    );
    assert_eq!(order_messages("shape", json!({"t": "Circle"})), ["payload.shape.c: required field is missing"]);
    assert_eq!(
        order_messages("shape", json!({"t": "Hex", "c": 1})),
        ["payload.shape.t: expected one of \"Point\", \"Circle\", \"Rect\", found string \"Hex\""]
    );
}

#[test]
fn externally_tagged_errors_come_from_the_variant_the_key_selects() {
    assert_eq!(
        order_messages("delivery", json!({"Courier": {}})),
        ["payload.delivery.Courier.address: required field is missing"]
    );
    assert_eq!(
        order_messages("delivery", json!({"Freight": -1})),
        ["payload.delivery.Freight: expected a number >= 0, found -1"]
    );
    assert_eq!(
        order_messages("delivery", json!("Courier")),
        ["payload.delivery: expected an object with key \"Courier\", found string \"Courier\""]
    );
    assert_eq!(
        order_messages("delivery", json!({"Pickup": 1})),
        ["payload.delivery: expected \"Pickup\", found an object with key \"Pickup\""]
    );
}

#[test]
fn an_unknown_variant_names_every_variant() {
    let every = "expected one of \"Pickup\", \"Courier\", \"Freight\"";
    assert_eq!(
        order_messages("delivery", json!("Teleport")),
        [format!("payload.delivery: {every}, found string \"Teleport\"")]
    );
    assert_eq!(
        order_messages("delivery", json!({"Teleport": {"address": "x"}})),
        [format!("payload.delivery: {every}, found an object with key \"Teleport\"")]
    );
    assert_eq!(
        order_messages("delivery", json!({"Courier": {"address": "x"}, "Freight": 1})),
        ["payload.delivery: expected an object with exactly one of the keys \"Courier\", \"Freight\", \
             found an object with keys \"Courier\", \"Freight\""]
    );
    assert_eq!(
        order_messages("speed", json!("overnight")),
        ["payload.speed: expected one of \"express\", \"standard\", found string \"overnight\""]
    );
}

#[test]
fn untagged_errors_come_from_the_closest_branch() {
    assert_eq!(
        order_messages("id", json!({"kind": "a", "seq": 300})),
        ["payload.id.seq: expected a number <= 255, found 300"]
    );
    assert_eq!(order_messages("id", json!(300)), ["payload.id: expected a number <= 255, found 300"]);
    assert_eq!(
        order_messages("id", json!(true)),
        ["payload.id: expected integer or string or an object with keys \"kind\", \"seq\", found boolean true"]
    );
}

#[test]
fn an_enum_nested_in_a_vec_reports_its_full_path() {
    assert_eq!(
        order_messages("stops", json!([{"delivery": "Pickup"}, {"delivery": {"Courier": {"address": 7}}}])),
        ["payload.stops[1].delivery.Courier.address: expected string, found integer 7"]
    );
    assert_eq!(
        order_messages("stops", json!([{"delivery": "Teleport"}])),
        ["payload.stops[0].delivery: expected one of \"Pickup\", \"Courier\", \"Freight\", found string \"Teleport\""]
    );
}

#[test]
fn an_optional_enum_reports_the_enum_or_null() {
    assert_eq!(
        order_messages("tip", json!({"type": "Card", "amount": 5})),
        ["payload.tip.last4: required field is missing"]
    );
    assert_eq!(
        order_messages("tip", json!({"type": "Wire"})),
        ["payload.tip.type: expected one of \"Cash\", \"Card\", found string \"Wire\""]
    );
    assert_eq!(
        order_messages("tip", json!(5)),
        ["payload.tip: expected an object with \"type\" one of \"Cash\", \"Card\" or null, found integer 5"]
    );
}

#[test]
fn a_plain_any_of_lists_its_types() {
    let schema = json!({"anyOf": [{"type": "integer"}, {"type": "string"}, {"type": "integer"}]});
    assert_eq!(messages(schema, json!(true)), ["payload: expected integer or string, found boolean true"]);
}

fn messages(schema: serde_json::Value, value: serde_json::Value) -> Vec<String> {
    match validate(&schema, &value) {
        Ok(()) => Vec::new(),
        Err(error) => error.issues.iter().map(ToString::to_string).collect(),
    }
}

fn add_schema() -> serde_json::Value {
    json!({
        "type": "object",
        "properties": {"a": {"type": "integer", "format": "int64"}, "b": {"type": "integer", "format": "int64"}},
        "required": ["a", "b"],
        "additionalProperties": false
    })
}

#[test]
fn accepts_a_good_payload() {
    assert!(messages(add_schema(), json!({"a": 1, "b": 2})).is_empty());
}

#[test]
fn names_path_expectation_and_found_value() {
    assert_eq!(messages(add_schema(), json!({"a": 1, "b": "x"})), ["payload.b: expected integer, found string \"x\""]);
    assert_eq!(messages(add_schema(), json!({"a": 1})), ["payload.b: required field is missing"]);
    assert_eq!(
        messages(add_schema(), json!({"a": 1, "b": 2, "c": 3})),
        ["payload.c: unknown field; expected one of a, b"]
    );
    assert_eq!(messages(add_schema(), json!([1, 2])), ["payload: expected object, found an array of 2 items"]);
}

#[test]
fn integer_formats_bound_values() {
    let schema = json!({"type": "integer", "format": "uint8", "minimum": 0});
    assert_eq!(messages(schema.clone(), json!(256)), ["payload: expected a number <= 255, found 256"]);
    assert_eq!(messages(schema.clone(), json!(-1)), ["payload: expected a number >= 0, found -1"]);
    assert_eq!(messages(schema, json!(1.5)), ["payload: expected integer, found number 1.5"]);
}

#[test]
fn refs_enums_and_alternatives() {
    let schema = json!({
        "type": "object",
        "properties": {
            "p": {"$ref": "#/$defs/Priority"},
            "shape": {"$ref": "#/$defs/Shape"},
            "items": {"type": "array", "items": {"$ref": "#/$defs/Item"}}
        },
        "$defs": {
            "Priority": {"type": "string", "enum": ["low", "high"]},
            "Item": {"type": "object", "properties": {"name": {"type": "string"}}, "required": ["name"]},
            "Shape": {"oneOf": [
                {"type": "string", "const": "point"},
                {"type": "object", "properties": {"circle": {"type": "number"}}, "required": ["circle"], "additionalProperties": false}
            ]}
        }
    });
    assert_eq!(
        messages(schema.clone(), json!({"p": "urgent"})),
        ["payload.p: expected one of \"low\", \"high\", found string \"urgent\""]
    );
    assert_eq!(
        messages(schema.clone(), json!({"items": [{"name": "a"}, {"name": 3}]})),
        ["payload.items[1].name: expected string, found integer 3"]
    );
    assert_eq!(
        messages(schema.clone(), json!({"shape": {"circle": "big"}})),
        ["payload.shape.circle: expected number, found string \"big\""]
    );
    assert!(messages(schema.clone(), json!({"shape": "point", "p": "low"})).is_empty());
    assert_eq!(
        messages(schema, json!({"shape": 4})),
        ["payload.shape: expected \"point\" or an object with key \"circle\", found integer 4"]
    );
}

#[test]
fn odd_keys_are_quoted() {
    let schema = json!({"type": "object", "additionalProperties": {"type": "integer"}});
    assert_eq!(messages(schema, json!({"my key": "v"})), ["payload[\"my key\"]: expected integer, found string \"v\""]);
}

#[test]
fn integers_are_bounded_exactly_and_integral_floats_count() {
    let schema = json!({"type": "object", "properties": {"n": {"type": "integer", "format": "int64"}}});
    let check = |n: &str| validate(&schema, &serde_json::from_str(&format!(r#"{{"n": {n}}}"#)).unwrap());
    assert!(check("9223372036854775807").is_ok());
    let error = check("9223372036854775808").unwrap_err().to_string();
    assert_eq!(error, "payload.n: expected a number <= 9223372036854775807, found 9223372036854775808");
    assert!(check("-9223372036854775809").unwrap_err().to_string().contains("fits int64 exactly"));
    assert!(check("2.0").is_ok(), "JSON Schema counts 2.0 as an integer");
    let mut value = json!({"n": 2.0, "list": [1e3, 0.5]});
    normalize_integers(&mut value);
    assert_eq!(value, json!({"n": 2, "list": [1000, 0.5]}));
}
