//! Builds the JSON Schemas of a task's arguments and result from `schemars`,
//! and adds what only the task knows: its title and description, argument
//! descriptions from the doc comment, and defaults.

use schemars::JsonSchema;
use serde_json::{Map, Value};

/// The schema of `T` (draft 2020-12, user types under `$defs`).
pub(crate) fn schema_of<T: JsonSchema>() -> Value {
    Value::from(schemars::schema_for!(T))
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
