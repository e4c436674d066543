//! The form of a task, generated from its argument JSON Schema: [`FormSpec`]
//! reads the schema once into a tree of inputs, renders it as flat rows for
//! the template ([`FormSpec::rows`]), and turns a posted form back into a
//! payload ([`FormSpec::payload`]).
//!
//! Integers and numbers become number inputs with step and bounds, strings
//! text inputs, booleans checkboxes, enums selects, nested objects
//! fieldsets; arrays, maps and anything else a JSON editor (a textarea the
//! browser checks with `JSON.parse` and the server checks again). The
//! server's validator stays the judge: a value the form cannot read (`x`
//! for an integer) goes to it as a string, so its message names the field.

use std::collections::HashMap;

use serde_json::{Map, Value};

use taskflow_proto::FieldIssue;

/// How deep fieldsets nest before a JSON editor takes over.
const MAX_DEPTH: usize = 4;

/// The form of one task.
#[derive(Debug, Clone)]
pub struct FormSpec {
    root: Vec<Prop>,
}

#[derive(Debug, Clone)]
struct Prop {
    name: String,
    path: String,
    description: String,
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
    Object(Vec<Prop>),
    Json,
}

/// One row of the rendered form: a fieldset's start or end, or an input.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// `open`, `close`, `integer`, `number`, `text`, `checkbox`, `select`
    /// or `json`.
    pub kind: &'static str,
    /// The input's name: the argument's path, `address.street`.
    pub name: String,
    /// The element id.
    pub id: String,
    /// The argument's name.
    pub label: String,
    /// Its description.
    pub help: String,
    /// Whether the payload must have it.
    pub required: bool,
    /// The value shown.
    pub value: String,
    /// For checkboxes.
    pub checked: bool,
    /// Bounds of number inputs.
    pub min: String,
    /// Bounds of number inputs.
    pub max: String,
    /// `1` for integers, `any` for numbers.
    pub step: &'static str,
    /// For selects: (value, label, selected).
    pub options: Vec<(String, String, bool)>,
    /// The message beside the field.
    pub error: String,
    /// What a JSON editor expects.
    pub placeholder: String,
}

impl FormSpec {
    /// Reads the argument schema of a task.
    pub fn new(schema: &Value) -> FormSpec {
        let defs = schema.get("$defs").or_else(|| schema.get("definitions")).cloned().unwrap_or(Value::Null);
        let reader = Reader { defs: &defs };
        FormSpec { root: reader.props(schema, "", 0) }
    }

    /// The values a fresh form shows: the schema's defaults.
    pub fn defaults(&self) -> HashMap<String, String> {
        let mut values = HashMap::new();
        fn walk(props: &[Prop], values: &mut HashMap<String, String>) {
            for prop in props {
                match &prop.input {
                    Input::Object(children) => walk(children, values),
                    input => {
                        if let Some(default) = prop.default.as_ref().filter(|d| !d.is_null()) {
                            values.insert(prop.path.clone(), show(input, default));
                        }
                    }
                }
            }
        }
        walk(&self.root, &mut values);
        values
    }

    /// The values a form shows for a payload (to run it again, edited).
    pub fn values_of(&self, payload: &Value) -> HashMap<String, String> {
        let mut values = HashMap::new();
        fn walk(props: &[Prop], payload: &Value, values: &mut HashMap<String, String>) {
            for prop in props {
                let Some(value) = payload.get(&prop.name).filter(|v| !v.is_null()) else { continue };
                match &prop.input {
                    Input::Object(children) => walk(children, value, values),
                    input => {
                        values.insert(prop.path.clone(), show(input, value));
                    }
                }
            }
        }
        walk(&self.root, payload, &mut values);
        values
    }

    /// The rows to render with `values` shown and `issues` beside their
    /// fields; issues that fit no field are returned for the form's top.
    pub fn rows(&self, values: &HashMap<String, String>, issues: &[FieldIssue]) -> (Vec<Row>, Vec<String>) {
        let mut rows = Vec::new();
        let mut placed = vec![false; issues.len()];
        fn walk(
            props: &[Prop],
            values: &HashMap<String, String>,
            issues: &[FieldIssue],
            placed: &mut [bool],
            rows: &mut Vec<Row>,
        ) {
            for prop in props {
                let mut row = Row {
                    name: prop.path.clone(),
                    id: format!("f-{}", prop.path.replace(['.', '[', ']'], "-")),
                    label: prop.name.clone(),
                    help: prop.description.clone(),
                    required: prop.required,
                    value: values.get(&prop.path).cloned().unwrap_or_default(),
                    ..Row::default()
                };
                let mut messages = Vec::new();
                for (i, issue) in issues.iter().enumerate() {
                    let path = issue.path.strip_prefix("payload.").unwrap_or(&issue.path);
                    let own = path == prop.path;
                    let inside = matches!(prop.input, Input::Json)
                        && path.strip_prefix(prop.path.as_str()).is_some_and(|rest| rest.starts_with(['.', '[']));
                    if !placed[i] && (own || inside) {
                        placed[i] = true;
                        messages.push(if inside {
                            format!("{path}: {}", issue.message)
                        } else {
                            issue.message.clone()
                        });
                    }
                }
                row.error = messages.join("; ");
                match &prop.input {
                    Input::Object(children) => {
                        row.kind = "open";
                        rows.push(row);
                        walk(children, values, issues, placed, rows);
                        rows.push(Row { kind: "close", ..Row::default() });
                        continue;
                    }
                    Input::Integer { min, max } | Input::Number { min, max } => {
                        let integer = matches!(prop.input, Input::Integer { .. });
                        row.kind = if integer { "integer" } else { "number" };
                        row.step = if integer { "1" } else { "any" };
                        row.min = min.as_ref().map(Value::to_string).unwrap_or_default();
                        row.max = max.as_ref().map(Value::to_string).unwrap_or_default();
                    }
                    Input::Text => row.kind = "text",
                    Input::Checkbox => {
                        row.kind = "checkbox";
                        row.checked = row.value == "true";
                    }
                    Input::Select(choices) => {
                        row.kind = "select";
                        if !prop.required {
                            row.options.push((String::new(), "—".to_owned(), row.value.is_empty()));
                        }
                        for (value, label) in choices {
                            row.options.push((value.clone(), label.clone(), *value == row.value));
                        }
                    }
                    Input::Json => {
                        row.kind = "json";
                        row.placeholder = "JSON, e.g. [] or {}".to_owned();
                    }
                }
                rows.push(row);
            }
        }
        walk(&self.root, values, issues, &mut placed, &mut rows);
        let rest = issues.iter().zip(placed).filter(|(_, p)| !p).map(|(i, _)| format!("{}: {}", i.path, i.message));
        (rows, rest.collect())
    }

    /// The payload a posted form describes, or the fields it cannot read
    /// (malformed JSON). Values of the wrong type are passed on for the
    /// validator to name.
    pub fn payload(&self, form: &HashMap<String, String>) -> Result<Value, Vec<FieldIssue>> {
        let mut issues = Vec::new();
        let payload = collect(&self.root, form, &mut issues, true).unwrap_or_else(|| Value::Object(Map::new()));
        if issues.is_empty() { Ok(payload) } else { Err(issues) }
    }
}

/// An object's properties, present only when one of them is (or the object
/// is required).
fn collect(
    props: &[Prop],
    form: &HashMap<String, String>,
    issues: &mut Vec<FieldIssue>,
    required: bool,
) -> Option<Value> {
    let mut object = Map::new();
    for prop in props {
        let raw = form.get(&prop.path).map(String::as_str).unwrap_or("");
        let value = match &prop.input {
            Input::Object(children) => collect(children, form, issues, prop.required),
            Input::Checkbox => Some(Value::Bool(form.contains_key(&prop.path))),
            Input::Integer { .. } => {
                let raw = raw.trim();
                (!raw.is_empty()).then(|| {
                    raw.parse::<i64>()
                        .map(Value::from)
                        .or_else(|_| raw.parse::<u64>().map(Value::from))
                        .unwrap_or_else(|_| Value::String(raw.to_owned()))
                })
            }
            Input::Number { .. } => {
                let raw = raw.trim();
                (!raw.is_empty()).then(|| {
                    raw.parse::<f64>()
                        .ok()
                        .and_then(serde_json::Number::from_f64)
                        .map_or_else(|| Value::String(raw.to_owned()), Value::Number)
                })
            }
            Input::Text => (!raw.is_empty() || prop.required).then(|| Value::String(raw.to_owned())),
            Input::Select(_) | Input::Json => {
                if raw.trim().is_empty() {
                    None
                } else {
                    match serde_json::from_str::<Value>(raw) {
                        Ok(value) => Some(value),
                        Err(e) => {
                            issues.push(FieldIssue {
                                path: format!("payload.{}", prop.path),
                                message: format!("not valid JSON: {e}"),
                            });
                            None
                        }
                    }
                }
            }
        };
        if let Some(value) = value {
            object.insert(prop.name.clone(), value);
        }
    }
    (required || !object.is_empty()).then_some(Value::Object(object))
}

/// How a form shows a value of the payload.
fn show(input: &Input, value: &Value) -> String {
    match (input, value) {
        (Input::Text, Value::String(s)) => s.clone(),
        (Input::Integer { .. } | Input::Number { .. } | Input::Checkbox, v) => v.to_string(),
        (Input::Select(_), v) => v.to_string(),
        (_, v) => serde_json::to_string_pretty(v).unwrap_or_default(),
    }
}

struct Reader<'a> {
    defs: &'a Value,
}

impl Reader<'_> {
    /// `schema` with `$ref`s resolved and the referring keys laid over.
    fn resolve(&self, schema: &Value) -> Value {
        let mut schema = schema.clone();
        for _ in 0..8 {
            let Some(target) = schema.get("$ref").and_then(Value::as_str).map(str::to_owned) else { break };
            let name = target.rsplit('/').next().unwrap_or_default();
            let Some(Value::Object(def)) = self.defs.get(name) else { break };
            let mut merged = def.clone();
            if let Value::Object(own) = &schema {
                for (key, value) in own {
                    if key != "$ref" {
                        merged.insert(key.clone(), value.clone());
                    }
                }
            }
            schema = Value::Object(merged);
        }
        schema
    }

    fn props(&self, schema: &Value, prefix: &str, depth: usize) -> Vec<Prop> {
        let schema = self.resolve(schema);
        let required: Vec<&str> =
            schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        let Some(Value::Object(properties)) = schema.get("properties") else { return Vec::new() };
        properties
            .iter()
            .map(|(name, prop)| {
                let path = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
                let prop = self.resolve(prop);
                let (inner, nullable) = self.without_null(&prop);
                Prop {
                    name: name.clone(),
                    description: prop.get("description").and_then(Value::as_str).unwrap_or_default().to_owned(),
                    required: required.contains(&name.as_str()) && !nullable,
                    default: prop.get("default").cloned(),
                    input: self.input(&inner, &path, depth),
                    path,
                }
            })
            .collect()
    }

    /// The schema without its `null` alternative, and whether it had one.
    fn without_null(&self, schema: &Value) -> (Value, bool) {
        let mut schema = schema.clone();
        if let Some(Value::Array(types)) = schema.get("type") {
            let rest: Vec<Value> = types.iter().filter(|t| t.as_str() != Some("null")).cloned().collect();
            if rest.len() < types.len() {
                let single = if rest.len() == 1 { rest[0].clone() } else { Value::Array(rest) };
                schema["type"] = single;
                return (schema, true);
            }
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(Value::Array(options)) = schema.get(key) {
                let is_null = |o: &Value| o.get("type").and_then(Value::as_str) == Some("null");
                if options.len() == 2 && options.iter().any(is_null) {
                    let other = options.iter().find(|o| !is_null(o)).cloned().unwrap_or(Value::Null);
                    let mut resolved = self.resolve(&other);
                    if let (Value::Object(target), Some(d)) = (&mut resolved, schema.get("description")) {
                        target.entry("description").or_insert(d.clone());
                    }
                    return (resolved, true);
                }
            }
        }
        (schema, false)
    }

    fn input(&self, schema: &Value, path: &str, depth: usize) -> Input {
        if let Some(choices) = choices(schema) {
            return Input::Select(choices);
        }
        let bound = |key: &str| schema.get(key).filter(|v| v.is_number()).cloned();
        match schema.get("type").and_then(Value::as_str) {
            Some("integer") => Input::Integer { min: bound("minimum"), max: bound("maximum") },
            Some("number") => Input::Number { min: bound("minimum"), max: bound("maximum") },
            Some("string") => Input::Text,
            Some("boolean") => Input::Checkbox,
            Some("object") if schema.get("properties").is_some() && depth < MAX_DEPTH => {
                Input::Object(self.props(schema, path, depth + 1))
            }
            _ => Input::Json,
        }
    }
}

/// The choices of an enum: `enum: [...]`, or `oneOf` / `anyOf` of `const`s.
fn choices(schema: &Value) -> Option<Vec<(String, String)>> {
    if let Some(Value::Array(values)) = schema.get("enum") {
        return Some(values.iter().map(|v| (v.to_string(), label(v, None))).collect());
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(options)) = schema.get(key) {
            let consts: Option<Vec<(String, String)>> = options
                .iter()
                .map(|o| {
                    let value = o.get("const").or_else(|| {
                        o.get("enum")
                            .and_then(|e| e.get(0))
                            .filter(|_| o.get("enum").and_then(Value::as_array).is_some_and(|e| e.len() == 1))
                    })?;
                    Some((value.to_string(), label(value, o.get("description").and_then(Value::as_str))))
                })
                .collect();
            if consts.as_ref().is_some_and(|c| !c.is_empty()) {
                return consts;
            }
        }
    }
    if schema.get("type").and_then(Value::as_str) == Some("boolean") {
        return None;
    }
    None
}

fn label(value: &Value, description: Option<&str>) -> String {
    let shown = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
    match description {
        Some(d) if !d.is_empty() => format!("{shown} — {d}"),
        _ => shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn order_schema() -> Value {
        json!({
            "type": "object",
            "properties": {
                "address": {"$ref": "#/$defs/Address", "description": "where"},
                "shipping": {"$ref": "#/$defs/Shipping", "default": "standard"},
                "items": {"type": "array", "items": {"type": "integer"}},
                "note": {"type": ["string", "null"], "default": null},
                "count": {"type": "integer", "minimum": 0, "maximum": 9},
                "gift": {"type": "boolean"},
                "ratio": {"type": "number"}
            },
            "required": ["address", "items", "count", "gift", "ratio"],
            "$defs": {
                "Address": {"type": "object", "properties": {"street": {"type": "string"}}, "required": ["street"]},
                "Shipping": {"oneOf": [{"type": "string", "const": "standard", "description": "slow"}, {"const": "express"}]}
            }
        })
    }

    #[test]
    fn rows_follow_the_schema() {
        let spec = FormSpec::new(&order_schema());
        let (rows, rest) = spec.rows(&spec.defaults(), &[]);
        assert!(rest.is_empty());
        let kinds: Vec<(&str, &str)> = rows.iter().map(|r| (r.kind, r.name.as_str())).collect();
        assert_eq!(
            kinds,
            vec![
                ("open", "address"),
                ("text", "address.street"),
                ("close", ""),
                ("select", "shipping"),
                ("json", "items"),
                ("text", "note"),
                ("integer", "count"),
                ("checkbox", "gift"),
                ("number", "ratio"),
            ]
        );
        let shipping = &rows[3];
        assert_eq!(shipping.options[1], ("\"standard\"".to_owned(), "standard — slow".to_owned(), true));
        assert_eq!((rows[6].min.as_str(), rows[6].max.as_str(), rows[6].step), ("0", "9", "1"));
        assert!(!rows[5].required, "an Option is optional");
    }

    #[test]
    fn a_posted_form_becomes_a_payload() {
        let spec = FormSpec::new(&order_schema());
        let form: HashMap<String, String> = [
            ("address.street", "Main 1"),
            ("shipping", "\"express\""),
            ("items", "[1, 2]"),
            ("note", ""),
            ("count", "x"),
            ("gift", "true"),
            ("ratio", "0.5"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            spec.payload(&form).unwrap(),
            json!({"address": {"street": "Main 1"}, "shipping": "express", "items": [1, 2], "count": "x", "gift": true, "ratio": 0.5})
        );
        let mut bad = form.clone();
        bad.insert("items".into(), "[1,".into());
        let issues = spec.payload(&bad).unwrap_err();
        assert_eq!(issues[0].path, "payload.items");
        assert!(issues[0].message.starts_with("not valid JSON"), "{}", issues[0].message);
    }

    #[test]
    fn issues_land_beside_their_fields() {
        let spec = FormSpec::new(&order_schema());
        let issues = vec![
            FieldIssue { path: "payload.count".into(), message: "expected integer".into() },
            FieldIssue { path: "payload.items[1]".into(), message: "expected integer".into() },
            FieldIssue { path: "payload.zzz".into(), message: "unknown field".into() },
        ];
        let (rows, rest) = spec.rows(&HashMap::new(), &issues);
        let error = |name: &str| rows.iter().find(|r| r.name == name).unwrap().error.clone();
        assert_eq!(error("count"), "expected integer");
        assert_eq!(error("items"), "items[1]: expected integer");
        assert_eq!(rest, vec!["payload.zzz: unknown field".to_owned()]);
    }

    #[test]
    fn a_payload_fills_the_form_again() {
        let spec = FormSpec::new(&order_schema());
        let values =
            spec.values_of(&json!({"address": {"street": "S"}, "items": [3], "count": 2, "shipping": "express"}));
        assert_eq!(values["address.street"], "S");
        assert_eq!(values["count"], "2");
        assert_eq!(values["shipping"], "\"express\"");
        assert_eq!(serde_json::from_str::<Value>(&values["items"]).unwrap(), json!([3]));
    }
}
