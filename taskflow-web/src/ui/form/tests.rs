//! The form of every schema shape, from real `schemars` schemas: the inputs
//! it gets, the payload its posted names decode to, the round trip from a
//! payload through its fields, and where issues land.

use std::collections::HashMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};

use super::*;

/// How an order is delivered (externally tagged, with a unit variant).
#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
enum Delivery {
    Pickup,
    Courier { zone: String, express: bool },
    Post(String),
}

#[derive(Deserialize, JsonSchema)]
#[serde(tag = "type")]
#[allow(dead_code)]
enum Payment {
    Cash,
    Card { last4: String },
}

#[derive(Deserialize, JsonSchema)]
#[serde(tag = "t", content = "c")]
#[allow(dead_code)]
enum Adjacent {
    A,
    B { x: i32 },
}

#[derive(Deserialize, JsonSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum Loose {
    Count(i64),
    Named { name: String },
}

#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
struct Item {
    sku: String,
    quantity: u32,
}

#[derive(Deserialize, JsonSchema)]
struct Marker;

#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
struct Gift {
    message: String,
}

#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
struct Order {
    delivery: Delivery,
    payment: Payment,
    adjacent: Adjacent,
    loose: Loose,
    items: Vec<Item>,
    tags: Vec<String>,
    headers: HashMap<String, String>,
    marker: Marker,
    gift: Option<Gift>,
    #[schemars(title = "Unit price")]
    unit_price_cents: u64,
}

fn spec() -> FormSpec {
    FormSpec::new(&serde_json::to_value(schemars::schema_for!(Order)).unwrap())
}

fn form(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn full() -> Value {
    json!({
        "delivery": {"Courier": {"zone": "north", "express": true}},
        "payment": {"type": "Card", "last4": "4242"},
        "adjacent": {"t": "B", "c": {"x": 7}},
        "loose": {"name": "n"},
        "items": [{"sku": "tea", "quantity": 2}, {"sku": "cake", "quantity": 1}],
        "tags": ["a", "b"],
        "headers": {"x-id": "1", "accept": "json"},
        "marker": null,
        "gift": {"message": "hi"},
        "unit_price_cents": 350
    })
}

#[test]
fn each_shape_gets_its_input() {
    let spec = spec();
    let kind = |name: &str| match &spec.root.iter().find(|p| p.name == name).unwrap().node.input {
        Input::Variants(v) => format!("variants {}", v.iter().map(|v| v.key.as_str()).collect::<Vec<_>>().join(",")),
        Input::List(item) => {
            format!("list of {}", if matches!(item.input, Input::Object(_)) { "objects" } else { "scalars" })
        }
        Input::Map(_) => "map".to_owned(),
        Input::Null => "null".to_owned(),
        Input::Object(_) => "object".to_owned(),
        other => format!("{other:?}"),
    };
    assert_eq!(kind("delivery"), "variants Pickup,Courier,Post");
    assert_eq!(kind("payment"), "variants Cash,Card");
    assert_eq!(kind("adjacent"), "variants A,B");
    assert_eq!(kind("loose"), "variants integer,object");
    assert_eq!(kind("items"), "list of objects");
    assert_eq!(kind("tags"), "list of scalars");
    assert_eq!(kind("headers"), "map");
    assert_eq!(kind("marker"), "null");
    assert_eq!(kind("gift"), "object");
    assert!(!spec.root.iter().find(|p| p.name == "gift").unwrap().node.required, "an Option is optional");
}

#[test]
fn a_posted_form_decodes_by_its_names() {
    let posted = form(&[
        ("delivery.$variant", "Courier"),
        ("delivery.Courier.zone", "north"),
        ("delivery.Courier.express", "true"),
        // Another variant's fields, posted without JavaScript, are unused.
        ("delivery.Post", "ignored"),
        ("payment.$variant", "Card"),
        ("payment.Card.last4", "4242"),
        ("adjacent.$variant", "B"),
        ("adjacent.B.c.x", "7"),
        ("loose.$variant", "object"),
        ("loose.object.name", "n"),
        ("items[0].sku", "tea"),
        ("items[0].quantity", "2"),
        // A gap (a removed row) and an empty spare row.
        ("items[2].sku", "cake"),
        ("items[2].quantity", "1"),
        ("items[3].sku", ""),
        ("items[3].quantity", ""),
        ("tags[0]", "a"),
        ("tags[2]", "b"),
        ("tags[3]", ""),
        ("tags.$spare", "3"),
        ("headers[0].key", "x-id"),
        ("headers[0].value", "1"),
        ("headers[1].key", "accept"),
        ("headers[1].value", "json"),
        ("headers[2].key", ""),
        ("gift.$include", "true"),
        ("gift.message", "hi"),
        ("unit_price_cents", "350"),
    ]);
    assert_eq!(spec().payload(&posted).unwrap(), full());
}

#[test]
fn every_shape_round_trips_through_its_fields() {
    let spec = spec();
    let values = spec.values_of(&full());
    assert_eq!(values["delivery.$variant"], "Courier");
    assert_eq!(values["items[1].sku"], "cake");
    assert_eq!(values["headers[0].key"], "x-id");
    assert!(!values.keys().any(|k| k.ends_with("$json")), "no raw JSON needed: {values:?}");
    assert_eq!(spec.payload(&values).unwrap(), full());
    let mut other = full();
    other["delivery"] = json!("Pickup");
    other["payment"] = json!({"type": "Cash"});
    other["adjacent"] = json!({"t": "A"});
    other["loose"] = json!(3);
    other["tags"] = json!([]);
    other.as_object_mut().unwrap().remove("gift");
    assert_eq!(spec.payload(&spec.values_of(&other)).unwrap(), other);
    // An empty string is a row left empty.
    other["tags"] = json!(["", "b"]);
    let values = spec.values_of(&other);
    assert_eq!(values["tags[0]"], "", "{values:?}");
    assert_eq!(spec.payload(&values).unwrap(), other);
    // What the fields cannot say exactly goes as raw JSON.
    other["tags"] = json!([1, "b"]);
    let values = spec.values_of(&other);
    assert!(values.contains_key("tags.$json"), "{values:?}");
    assert_eq!(spec.payload(&values).unwrap(), other);
}

#[test]
fn empty_optional_parts_are_left_out_and_raw_json_wins() {
    let spec = spec();
    let posted =
        form(&[("gift.message", "not included"), ("unit_price_cents", ""), ("items.$json", "[{\"sku\": \"x\"}]")]);
    let payload = spec.payload(&posted).unwrap();
    assert_eq!(payload, json!({"items": [{"sku": "x"}], "tags": [], "headers": {}, "marker": null}));
}

#[test]
fn a_malformed_post_says_what_to_fix() {
    let spec = spec();
    let issues = spec
        .payload(&form(&[
            ("delivery.$variant", "Drone"),
            ("headers[0].value", "v"),
            ("tags.$json", "[1,"),
            ("items[99999999999999999999999].sku", "ignored"),
        ]))
        .unwrap_err();
    let messages: Vec<String> = issues.iter().map(|i| format!("{}: {}", i.path, i.message)).collect();
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert!(
        messages[0].starts_with("payload.delivery: there is no variant `Drone`; choose one of Pickup"),
        "{messages:?}"
    );
    assert!(messages.iter().any(|m| m.starts_with("payload.headers: row 1 has a value but no key")), "{messages:?}");
    assert!(messages.iter().any(|m| m.starts_with("payload.tags: not valid JSON")), "{messages:?}");
    // The page again: each message beside its field.
    let (rows, top) = spec.rows(&form(&[("tags.$json", "[1,")]), &issues);
    assert!(top.is_empty(), "{top:?}");
    let error = |name: &str| rows.iter().find(|r| r.name == name).unwrap().error.clone();
    assert!(error("delivery").starts_with("there is no variant"));
    assert!(error("tags").starts_with("not valid JSON"), "{}", error("tags"));
}

#[test]
fn issues_land_beside_their_fields_at_any_depth() {
    let spec = spec();
    let mut values = spec.values_of(&full());
    values.insert("tags.$json".into(), "[1, \"x\"]".into());
    let issue = |path: &str| FieldIssue { path: path.into(), message: "bad".into() };
    let issues = [
        "payload.payment.last4",
        "payload.payment.type",
        "payload.delivery.Courier.zone",
        "payload.adjacent.c.x",
        "payload.items[1].quantity",
        "payload.headers[\"x-id\"]",
        "payload.tags[0]",
        "payload.gift.message",
        "payload.unit_price_cents",
        "payload.zzz",
    ]
    .map(issue);
    let (rows, top) = spec.rows(&values, &issues);
    let error =
        |name: &str| rows.iter().find(|r| r.name == name).unwrap_or_else(|| panic!("no row {name}")).error.clone();
    assert_eq!(error("payment.Card.last4"), "bad");
    assert_eq!(error("payment.$variant"), "bad");
    assert_eq!(error("delivery.Courier.zone"), "bad");
    assert_eq!(error("adjacent.B.c.x"), "bad");
    assert_eq!(error("items[1].quantity"), "bad");
    assert_eq!(error("headers[0].value"), "bad");
    assert_eq!(error("tags"), "tags[0]: bad", "inside raw JSON, with the path");
    assert_eq!(error("gift.message"), "bad");
    assert_eq!(error("unit_price_cents"), "bad");
    assert_eq!(top, vec!["payload.zzz: bad".to_owned()]);
}

#[test]
fn rows_label_name_and_nest_every_shape() {
    let spec = spec();
    let (rows, _) = spec.rows(&spec.values_of(&full()), &[]);
    let shown: Vec<(&str, &str)> =
        rows.iter().filter(|r| !r.name.is_empty()).map(|r| (r.kind, r.name.as_str())).collect();
    let has = |kind: &str, name: &str| assert!(shown.contains(&(kind, name)), "no {kind} {name} in {shown:?}");
    has("group", "delivery");
    has("select", "delivery.$variant");
    has("text", "delivery.Courier.zone");
    has("text", "delivery.Post");
    has("list", "items");
    has("item", "items[0]");
    has("item", "items[2]");
    has("text", "items[__i0__].sku");
    has("text", "tags[1]");
    has("text", "headers[1].key");
    has("group", "gift");
    assert!(!shown.iter().any(|(_, n)| *n == "marker"), "a unit struct shows nothing");
    let row = |name: &str| rows.iter().find(|r| r.name == name).unwrap();
    assert!(row("items[2]").spare, "existing rows and one empty");
    assert_eq!((row("items[2]").spare_name.as_str(), row("items[2]").value.as_str()), ("items.$spare", "2"));
    assert_eq!(row("items").next, 2, "the spare row's index: the script drops it");
    assert_eq!(row("gift").include_name, "gift.$include");
    assert!(row("gift").included);
    let variant = row("delivery.$variant");
    assert!(variant.switch && variant.options.iter().any(|(k, _, selected)| k == "Courier" && *selected));
    assert_eq!(
        (row("unit_price_cents").label.as_str(), row("unit_price_cents").wire.as_str()),
        ("Unit price", "unit_price_cents")
    );
    assert_eq!(row("tags").label, "Tags");
    assert!(row("unit_price_cents").enforce && !row("items[0].sku").enforce, "only the form's own fields insist");
    // All unit variants: just the selector.
    let units = rows.iter().filter(|r| r.kind == "variant" && r.id.starts_with("f-payment")).count();
    assert_eq!(units, 1, "Cash has no fields, Card has");
}

#[test]
fn defaults_fill_a_fresh_form() {
    let schema = json!({
        "type": "object",
        "properties": {
            "shipping": {"type": "string", "enum": ["standard", "express"], "default": "standard"},
            "tags": {"type": "array", "items": {"type": "string"}, "default": ["x"]},
            "count": {"type": "integer", "minimum": 0, "maximum": 9}
        },
        "required": ["count"]
    });
    let spec = FormSpec::new(&schema);
    let values = spec.defaults();
    assert_eq!(values["shipping"], "\"standard\"");
    assert_eq!(values["tags[0]"], "x");
    let (rows, _) = spec.rows(&values, &[]);
    let count = rows.iter().find(|r| r.name == "count").unwrap();
    assert_eq!((count.min.as_str(), count.max.as_str(), count.step), ("0", "9", "1"));
}

#[derive(Deserialize, JsonSchema)]
#[allow(dead_code)]
struct Lists {
    tags: Vec<String>,
    notes: Vec<Option<String>>,
    counts: Vec<u32>,
}

#[test]
fn a_row_of_strings_left_empty_is_an_empty_string_and_of_numbers_an_error() {
    let spec = FormSpec::new(&serde_json::to_value(schemars::schema_for!(Lists)).unwrap());
    let strings = form(&[
        ("tags[0]", ""),
        ("tags[1]", "b"),
        ("tags[4]", ""),
        // The spare row of a form without the script: an item once filled.
        ("tags[5]", "c"),
        ("tags.$spare", "5"),
        ("notes[0]", ""),
        ("notes[1]", "n"),
        // Left empty, it is none.
        ("notes[2]", ""),
        ("notes.$spare", "2"),
        ("counts[0]", "1"),
        ("counts[1]", ""),
        ("counts.$spare", "1"),
    ]);
    assert_eq!(
        spec.payload(&strings).unwrap(),
        json!({"tags": ["", "b", "", "c"], "notes": [null, "n"], "counts": [1]})
    );
    let numbers = form(&[("counts[0]", "1"), ("counts[3]", " "), ("counts[4]", "5")]);
    let issues = spec.payload(&numbers).unwrap_err();
    let messages: Vec<String> = issues.iter().map(|i| format!("{}: {}", i.path, i.message)).collect();
    assert_eq!(messages, ["payload.counts[1]: row 2 is empty: fill it in or remove it"]);
    // Beside that row, on the page again.
    let (rows, top) = spec.rows(&numbers, &issues);
    assert!(top.is_empty(), "{top:?}");
    let row = rows.iter().find(|r| r.name == "counts[3]" && r.kind == "item").unwrap();
    assert_eq!(row.error, "row 2 is empty: fill it in or remove it");
}
