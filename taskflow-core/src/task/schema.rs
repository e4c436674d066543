//! Builds the JSON Schemas of a task's arguments and result from `schemars`,
//! and adds what only the task knows: its title and description, argument
//! descriptions from the doc comment, and defaults.

use schemars::JsonSchema;
use serde_json::{Map, Value};

/// The schema of `T` (draft 2020-12, user types under `$defs`), with the
/// range of each integer `format` written out as `minimum` / `maximum`, so
/// the schema states every bound the validator enforces (`uint32` says
/// nothing of its maximum to a client that does not know schemars).
pub(crate) fn schema_of<T: JsonSchema>() -> Value {
    let mut schema = Value::from(schemars::schema_for!(T));
    bound_integer_formats(&mut schema);
    schema
}

fn bound_integer_formats(schema: &mut Value) {
    match schema {
        Value::Object(map) => {
            if let Some((lo, hi)) = map.get("format").and_then(Value::as_str).and_then(integer_format_range) {
                if !map.contains_key("minimum") {
                    map.insert("minimum".to_owned(), lo);
                }
                if !map.contains_key("maximum") {
                    map.insert("maximum".to_owned(), hi);
                }
            }
            map.values_mut().for_each(bound_integer_formats);
        }
        Value::Array(items) => items.iter_mut().for_each(bound_integer_formats),
        _ => {}
    }
}

/// The range of schemars' integer formats, as JSON numbers.
pub(crate) fn integer_format_range(format: &str) -> Option<(Value, Value)> {
    Some(match format {
        "int8" => (i8::MIN.into(), i8::MAX.into()),
        "int16" => (i16::MIN.into(), i16::MAX.into()),
        "int32" => (i32::MIN.into(), i32::MAX.into()),
        "int64" => (i64::MIN.into(), i64::MAX.into()),
        "uint8" => (0.into(), u8::MAX.into()),
        "uint16" => (0.into(), u16::MAX.into()),
        "uint32" => (0.into(), u32::MAX.into()),
        "uint64" | "uint" => (0.into(), u64::MAX.into()),
        _ => return None,
    })
}

/// Adds the task's title, description, argument descriptions and defaults
/// to the schema of its argument struct. An argument with a default is no
/// longer required.
pub(crate) fn describe_args(
    schema: &mut Value,
    title: &str,
    description: &str,
    arg_docs: &[(&str, &str)],
    defaults: &Map<String, Value>,
) {
    let Some(root) = schema.as_object_mut() else { return };
    root.insert("title".to_owned(), Value::from(title));
    if description.is_empty() {
        root.remove("description");
    } else {
        root.insert("description".to_owned(), Value::from(description));
    }
    if let Some(Value::Object(properties)) = root.get_mut("properties") {
        for (name, text) in arg_docs {
            if let Some(Value::Object(property)) = properties.get_mut(*name) {
                property.entry("description").or_insert_with(|| Value::from(*text));
            }
        }
        for (name, value) in defaults {
            if let Some(Value::Object(property)) = properties.get_mut(name) {
                property.insert("default".to_owned(), value.clone());
            }
        }
    }
    if let Some(Value::Array(required)) = root.get_mut("required") {
        required.retain(|name| !name.as_str().is_some_and(|n| defaults.contains_key(n)));
    }
}
