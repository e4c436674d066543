//! Turns `call` flags into a payload using the task's schema:
//! `--a 2 --b 3` → `{"a": 2, "b": 3}`.
//!
//! A value is read as JSON unless the argument is a string (then it is taken
//! as written), so `--items '[1, 2]'` and `--point '{"x": 1}'` work and a
//! value that is not JSON reaches validation as a string, whose message then
//! says what was expected. A boolean flag without a value means `true`; a
//! repeated flag collects an array. `--payload '<json>'` gives the whole
//! payload (`--payload @file.json` reads it from a file, `--payload -` from
//! standard input); flags then override its fields.

use serde_json::{Map, Value};

use crate::registry::TaskDef;

/// One flag of a task, for help texts.
pub(super) struct Flag {
    pub(super) name: String,
    pub(super) kind: String,
    pub(super) required: bool,
    pub(super) description: Option<String>,
    pub(super) default: Option<Value>,
}

/// The task's flags, in schema order.
pub(super) fn describe(def: &TaskDef) -> Vec<Flag> {
    let schema = def.args_schema();
    let required: Vec<&str> = schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    properties(def)
        .map(|(name, property)| Flag {
            name: name.clone(),
            kind: kind(schema, property),
            required: required.contains(&name.as_str()),
            description: property["description"].as_str().map(str::to_owned),
            default: property.get("default").cloned(),
        })
        .collect()
}

fn properties(def: &TaskDef) -> impl Iterator<Item = (&String, &Value)> {
    def.args_schema()["properties"].as_object().into_iter().flatten()
}

/// `integer`, `string`, `"low"|"high"`, `Item[]`: a flag's kind, for help.
fn kind(root: &Value, property: &Value) -> String {
    let property = resolve(root, property);
    if let Some(values) = property["enum"].as_array() {
        return values.iter().map(Value::to_string).collect::<Vec<_>>().join("|");
    }
    if let Some(branches) = property["oneOf"].as_array().or_else(|| property["anyOf"].as_array()) {
        let kinds: Vec<String> = branches
            .iter()
            .map(|b| match b.get("const") {
                Some(constant) => constant.to_string(),
                None => kind(root, b),
            })
            .collect();
        return kinds.join("|");
    }
    match &property["type"] {
        Value::String(t) if t == "array" => format!("{}[]", kind(root, &property["items"])),
        Value::String(t) => t.clone(),
        Value::Array(types) => {
            let names: Vec<&str> = types.iter().filter_map(Value::as_str).filter(|t| *t != "null").collect();
            names.join("|")
        }
        _ => "json".to_owned(),
    }
}

/// Follows a `$ref` into the root's `$defs`.
fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
    match schema["$ref"].as_str().and_then(|r| r.strip_prefix('#')).and_then(|p| root.pointer(p)) {
        Some(target) => target,
        None => schema,
    }
}

/// Whether a value for this property is always a string.
fn is_string(root: &Value, property: &Value) -> bool {
    let property = resolve(root, property);
    if let Some(branches) = property["oneOf"].as_array().or_else(|| property["anyOf"].as_array()) {
        return branches.iter().all(|b| is_string(root, b));
    }
    match &property["type"] {
        Value::String(t) => t == "string",
        Value::Array(types) => {
            types.iter().any(|t| t == "string") && types.iter().all(|t| t == "string" || t == "null")
        }
        _ => false,
    }
}

fn is_boolean(root: &Value, property: &Value) -> bool {
    let property = resolve(root, property);
    property["type"] == "boolean" || property["type"].as_array().is_some_and(|t| t.iter().any(|t| t == "boolean"))
}

const PAYLOAD_NEEDS: &str = "`--payload` needs a JSON object (--payload '{\"a\": 1}'), \
    a file's path after `@` (--payload @payload.json) or `-` for standard input";

/// Builds the payload from the arguments of `command` (`call` or `submit`).
pub(super) fn payload(def: &TaskDef, command: &str, args: &[String]) -> Result<Value, String> {
    let root = def.args_schema();
    let mut base: Option<Map<String, Value>> = None;
    let mut fields: Map<String, Value> = Map::new();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        i += 1;
        let Some(flag) = arg.strip_prefix("--").filter(|f| !f.is_empty()) else {
            return Err(format!(
                "unexpected argument `{arg}`; pass arguments as `--name value` (see `{command} {} --help`)",
                def.title()
            ));
        };
        let (name, inline) = match flag.split_once('=') {
            Some((name, value)) => (name, Some(value.to_owned())),
            None => (flag, None),
        };
        if name == "payload" {
            let text = match inline {
                Some(text) => text,
                None => take_value(args, &mut i).ok_or(PAYLOAD_NEEDS)?,
            };
            let (shown, text) = read_payload(text)?;
            match serde_json::from_str::<Value>(&text) {
                Ok(Value::Object(map)) => base = Some(map),
                Ok(_) => return Err(format!("{shown} must be a JSON object of arguments")),
                Err(e) => return Err(format!("{shown} is not valid JSON: {e}")),
            }
            continue;
        }
        let Some((key, property)) = properties(def).find(|(key, _)| *key == name || key.replace('_', "-") == name)
        else {
            let known: Vec<String> = properties(def).map(|(k, _)| format!("--{k}")).collect();
            let expected = if known.is_empty() {
                "it takes no arguments".to_owned()
            } else {
                format!("expected {}", known.join(", "))
            };
            return Err(format!("unknown argument `--{name}` for task `{}`; {expected}", def.title()));
        };
        let raw = match inline {
            Some(raw) => raw,
            None if is_boolean(root, property) && args.get(i).is_none_or(|next| next.starts_with("--")) => {
                "true".to_owned()
            }
            None => take_value(args, &mut i).ok_or_else(|| format!("`--{name}` needs a value"))?,
        };
        let value = if is_string(root, property) {
            Value::String(raw)
        } else {
            serde_json::from_str(&raw).unwrap_or(Value::String(raw))
        };
        let is_array = resolve(root, property)["type"] == "array";
        match fields.get_mut(key) {
            // `--tags a --tags b`: repeated values of an array argument collect.
            Some(Value::Array(items)) if is_array && !value.is_array() => items.push(value),
            Some(_) => return Err(format!("`--{name}` is given twice; give it once")),
            None if is_array && !value.is_array() => {
                fields.insert(key.clone(), Value::Array(vec![value]));
            }
            None => {
                fields.insert(key.clone(), value);
            }
        }
    }
    let mut payload = base.unwrap_or_default();
    payload.extend(fields);
    Ok(Value::Object(payload))
}

/// The text of `--payload <value>`: the value itself, the file of
/// `@<path>`, or standard input for `-`; with how to name it in a message.
fn read_payload(value: String) -> Result<(String, String), String> {
    if value == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .map_err(|e| format!("`--payload -`: reading the payload from standard input failed: {e}"))?;
        return Ok(("the payload on standard input (`--payload -`)".to_owned(), text));
    }
    match value.strip_prefix('@') {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                format!(
                    "`--payload @{path}`: cannot read the payload file `{path}`: {e}; give a JSON file's path after `@`"
                )
            })?;
            Ok((format!("the payload file `{path}`"), text))
        }
        None => Ok(("`--payload`".to_owned(), value)),
    }
}

fn take_value(args: &[String], i: &mut usize) -> Option<String> {
    let value = args.get(*i)?.clone();
    *i += 1;
    Some(value)
}

/// `call <title> --help` (or `submit`'s): the task's flags with their kinds
/// and descriptions.
pub(super) fn help(program: &str, command: &str, def: &TaskDef) -> String {
    let mut text = format!("{}\n\n", def.signature());
    if !def.description().is_empty() {
        text.push_str(def.description());
        text.push_str("\n\n");
    }
    text.push_str(&format!("Usage: {program} {command} {} [--payload <JSON>] [FLAGS]\n\nFlags:\n", def.title()));
    for flag in describe(def) {
        let mut line = format!("  --{} <{}>", flag.name, flag.kind);
        if let Some(description) = &flag.description {
            line.push_str(&format!("  {description}"));
        }
        if let Some(default) = flag.default.as_ref().filter(|d| !d.is_null()) {
            line.push_str(&format!(" [default: {default}]"));
        } else if !flag.required {
            line.push_str(" [optional]");
        }
        text.push_str(&line);
        text.push('\n');
    }
    text.push_str("  --payload <JSON>  the whole payload as a JSON object; @<file> reads a file, - standard input\n");
    text
}
