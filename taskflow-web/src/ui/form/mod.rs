//! The form of a task, generated from its argument JSON Schema: [`FormSpec`]
//! reads the schema once into a tree of inputs (`schema.rs`), renders it as
//! flat rows for the template (`render.rs`, [`FormSpec::rows`]), and turns
//! a posted form back into a payload (`decode.rs`, [`FormSpec::payload`]).
//!
//! Integers and numbers become number inputs with step and bounds, strings
//! text inputs, booleans checkboxes, plain enums selects, structs
//! fieldsets, an `Option` of a struct a fieldset with an "include"
//! checkbox, enums with data a variant selector over one fieldset per
//! variant, lists repeatable rows, maps key/value rows, unit structs
//! nothing (sent as `null`). Every composite field also takes raw JSON,
//! which wins when filled. Anything else is a JSON editor.
//!
//! Field names alone say where a value goes, so the server decodes a form
//! posted without JavaScript: `address.street`, `items[0].sku`, `tags[2]`,
//! `headers[0].key` / `headers[0].value`, `delivery.$variant` (the chosen
//! variant) and `delivery.Courier.zone` (its fields), `gift.$include`,
//! `items.$json`, `tags.$spare` (which row is the spare one a form without
//! the script ends in; left empty, it is no item). Decoding walks the spec, never trusts a name to make
//! structure, and records which field made each payload path, so the
//! validator's issues (`payload.items[1].sku`) land beside their field.
//!
//! The server's validator stays the judge: a value the form cannot read
//! (`x` for an integer) goes to it as a string, so its message names the
//! field.

mod decode;
mod render;
mod schema;
#[cfg(test)]
mod tests;

use std::collections::HashMap;

use serde_json::Value;

use taskflow_proto::FieldIssue;

pub use render::Row;

/// How deep composite fields nest before a JSON editor takes over.
const MAX_DEPTH: usize = 6;

/// The form of one task.
#[derive(Debug, Clone)]
pub struct FormSpec {
    root: Vec<Prop>,
}

/// A named property of an object.
#[derive(Debug, Clone)]
struct Prop {
    name: String,
    node: Node,
}

/// One value of the payload and how it is entered.
#[derive(Debug, Clone)]
struct Node {
    title: Option<String>,
    description: String,
    /// The payload must have it (in its parent).
    required: bool,
    default: Option<Value>,
    input: Input,
}

#[derive(Debug, Clone)]
enum Input {
    Integer {
        min: Option<Value>,
        max: Option<Value>,
    },
    Number {
        min: Option<Value>,
        max: Option<Value>,
    },
    Text,
    Checkbox,
    /// Each choice as its JSON text and its label.
    Select(Vec<(String, String)>),
    /// A unit struct: no input, always `null`.
    Null,
    /// A fieldset; an optional one has an "include" checkbox.
    Object(Vec<Prop>),
    /// Repeatable rows of the item.
    List(Box<Node>),
    /// Key/value rows, the value of this kind.
    Map(Box<Node>),
    /// A selector and one fieldset per variant.
    Variants(Vec<Variant>),
    Json,
}

impl Input {
    /// Fields that take raw JSON too.
    fn composite(&self) -> bool {
        matches!(self, Input::Object(_) | Input::List(_) | Input::Map(_) | Input::Variants(_))
    }
}

/// One variant of an enum.
#[derive(Debug, Clone)]
struct Variant {
    /// Its name in field names and in the selector: `Courier`.
    key: String,
    label: String,
    wrap: Wrap,
    /// What the user fills in; none for a unit variant.
    body: Option<Node>,
}

/// How a variant's value sits in the payload.
#[derive(Debug, Clone)]
enum Wrap {
    /// Always this value (`"Pickup"`).
    Const(Value),
    /// `{key: body}` (externally tagged).
    Keyed(String),
    /// `{tag: value, ..body}` (internally and adjacently tagged: the
    /// adjacent content is a field of the body).
    Tagged(String, Value),
    /// The body itself (untagged).
    Bare,
}

impl FormSpec {
    /// Reads the argument schema of a task.
    pub fn new(schema: &Value) -> FormSpec {
        FormSpec { root: schema::read(schema) }
    }

    /// The values a fresh form shows: the schema's defaults.
    pub fn defaults(&self) -> HashMap<String, String> {
        let mut values = HashMap::new();
        decode::defaults(&self.root, "", &mut values);
        values
    }

    /// The values a form shows for a payload (to run it again, edited).
    pub fn values_of(&self, payload: &Value) -> HashMap<String, String> {
        let mut values = HashMap::new();
        decode::encode_props(&self.root, "", payload, &mut values);
        values
    }

    /// The rows to render with `values` shown and `issues` beside their
    /// fields; issues that fit no field are returned for the form's top.
    pub fn rows(&self, values: &HashMap<String, String>, issues: &[FieldIssue]) -> (Vec<Row>, Vec<String>) {
        let trace = decode::decode(&self.root, values).trace;
        render::rows(&self.root, values, issues, &trace)
    }

    /// The payload a posted form describes, or the fields it cannot read
    /// (malformed JSON, an unknown variant, a map row without a key).
    /// Values of the wrong type are passed on for the validator to name.
    pub fn payload(&self, form: &HashMap<String, String>) -> Result<Value, Vec<FieldIssue>> {
        let decoded = decode::decode(&self.root, form);
        if decoded.issues.is_empty() { Ok(decoded.payload) } else { Err(decoded.issues) }
    }
}

/// `parent.key` as the validator prints paths: `payload.items`,
/// `payload.headers["x-id"]`.
fn key_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty()
        && key.chars().all(|c| c.is_alphanumeric() || c == '_')
        && !key.starts_with(|c: char| c.is_ascii_digit());
    if plain { format!("{parent}.{key}") } else { format!("{parent}[{}]", Value::String(key.to_owned())) }
}

/// The field name of `key` inside `prefix`.
fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() { key.to_owned() } else { format!("{prefix}.{key}") }
}
