//! From posted field names to the payload, and back (a payload's fields,
//! to edit and run it again).

use std::collections::{BTreeSet, HashMap};

use serde_json::{Map, Value};

use taskflow_proto::FieldIssue;

use super::{Input, Node, Prop, Variant, Wrap, join, key_path};

/// A decoded form.
pub(super) struct Decoded {
    pub(super) payload: Value,
    /// What the form could not read, at payload paths.
    pub(super) issues: Vec<FieldIssue>,
    /// The field that made each payload path: `payload.items[0].sku` →
    /// `items[0].sku`.
    pub(super) trace: HashMap<String, String>,
}

pub(super) fn decode(root: &[Prop], form: &HashMap<String, String>) -> Decoded {
    let mut decoder = Decoder { form, issues: Vec::new(), trace: HashMap::new() };
    let payload = Value::Object(decoder.props(root, "", "payload"));
    Decoded { payload, issues: decoder.issues, trace: decoder.trace }
}

struct Decoder<'a> {
    form: &'a HashMap<String, String>,
    issues: Vec<FieldIssue>,
    trace: HashMap<String, String>,
}

impl Decoder<'_> {
    fn raw(&self, name: &str) -> &str {
        self.form.get(name).map_or("", String::as_str)
    }

    fn issue(&mut self, path: &str, message: String) {
        self.issues.push(FieldIssue { path: path.to_owned(), message });
    }

    fn props(&mut self, props: &[Prop], name: &str, path: &str) -> Map<String, Value> {
        let mut object = Map::new();
        for prop in props {
            if let Some(value) = self.node(&prop.node, &join(name, &prop.name), &key_path(path, &prop.name)) {
                object.insert(prop.name.clone(), value);
            }
        }
        object
    }

    /// The value of `node` from the fields under `name`, or none to leave
    /// it out.
    fn node(&mut self, node: &Node, name: &str, path: &str) -> Option<Value> {
        self.trace.entry(path.to_owned()).or_insert_with(|| name.to_owned());
        if node.input.composite() {
            let raw_name = format!("{name}.$json");
            if !self.raw(&raw_name).trim().is_empty() {
                self.trace.insert(path.to_owned(), raw_name.clone());
                return self.json(&raw_name, path);
            }
        }
        self.value(node, name, path)
    }

    fn json(&mut self, name: &str, path: &str) -> Option<Value> {
        let raw = self.raw(name);
        if raw.trim().is_empty() {
            return None;
        }
        match serde_json::from_str::<Value>(raw) {
            Ok(value) => Some(value),
            Err(e) => {
                self.issue(path, format!("not valid JSON: {e}"));
                None
            }
        }
    }

    fn value(&mut self, node: &Node, name: &str, path: &str) -> Option<Value> {
        let raw = self.raw(name).trim();
        match &node.input {
            Input::Checkbox => Some(Value::Bool(self.form.get(name).is_some_and(|v| v != "false"))),
            Input::Integer { .. } => (!raw.is_empty()).then(|| {
                raw.parse::<i64>()
                    .map(Value::from)
                    .or_else(|_| raw.parse::<u64>().map(Value::from))
                    .unwrap_or_else(|_| Value::String(raw.to_owned()))
            }),
            Input::Number { .. } => (!raw.is_empty()).then(|| {
                raw.parse::<f64>()
                    .ok()
                    .and_then(serde_json::Number::from_f64)
                    .map_or_else(|| Value::String(raw.to_owned()), Value::Number)
            }),
            Input::Text => {
                let raw = self.raw(name);
                (!raw.is_empty() || node.required).then(|| Value::String(raw.to_owned()))
            }
            Input::Select(_) | Input::Json => self.json(name, path),
            Input::Null => node.required.then_some(Value::Null),
            Input::Object(props) => {
                if !node.required && !self.form.contains_key(&format!("{name}.$include")) {
                    return None;
                }
                Some(Value::Object(self.props(props, name, path)))
            }
            Input::List(item) => {
                let mut items = Vec::new();
                for (n, index) in rows(self.form, name).into_iter().enumerate() {
                    let row = format!("{name}[{index}]");
                    let at = format!("{path}[{}]", items.len());
                    if filled(self.form, &row) || matches!(item.input, Input::Text) {
                        // A row of a list of strings is an item, empty or
                        // not: `""` (`null` if the items are optional).
                        items.push(self.node(item, &row, &at).unwrap_or(Value::Null));
                    } else if !item.input.composite() {
                        // No empty number, choice or JSON: say so rather
                        // than guess or drop a row the user added.
                        self.trace.entry(at.clone()).or_insert(row);
                        self.issue(&at, format!("row {} is empty: fill it in or remove it", n + 1));
                    }
                    // An empty row of a composite (all its fields empty)
                    // is left out, as a spare row.
                }
                (node.required || !items.is_empty()).then_some(Value::Array(items))
            }
            Input::Map(value) => {
                let mut map = Map::new();
                for (n, index) in rows(self.form, name).into_iter().enumerate() {
                    let row = format!("{name}[{index}]");
                    if !filled(self.form, &row) {
                        continue;
                    }
                    let key = self.raw(&format!("{row}.key")).to_owned();
                    if key.is_empty() {
                        self.issue(path, format!("row {} has a value but no key: give it one or clear it", n + 1));
                    } else if map.contains_key(&key) {
                        self.issue(path, format!("the key `{key}` appears twice: keep one row of it"));
                    } else {
                        let at = key_path(path, &key);
                        let entry = self.node(value, &format!("{row}.value"), &at).unwrap_or(Value::Null);
                        map.insert(key, entry);
                    }
                }
                (node.required || !map.is_empty()).then_some(Value::Object(map))
            }
            Input::Variants(variants) => {
                let chosen = self.raw(&format!("{name}.$variant")).trim().to_owned();
                if chosen.is_empty() {
                    return None;
                }
                let Some(variant) = variants.iter().find(|v| v.key == chosen) else {
                    let known: Vec<&str> = variants.iter().map(|v| v.key.as_str()).collect();
                    self.issue(path, format!("there is no variant `{chosen}`; choose one of {}", known.join(", ")));
                    return None;
                };
                Some(self.variant(variant, name, path))
            }
        }
    }

    fn variant(&mut self, variant: &Variant, name: &str, path: &str) -> Value {
        let body_name = join(name, &variant.key);
        match (&variant.wrap, &variant.body) {
            (Wrap::Const(value), _) => value.clone(),
            (Wrap::Keyed(key), body) => {
                let at = key_path(path, key);
                let value = body.as_ref().and_then(|b| self.value(b, &body_name, &at)).unwrap_or(Value::Null);
                self.trace.entry(at).or_insert(body_name);
                Value::Object(Map::from_iter([(key.clone(), value)]))
            }
            (Wrap::Tagged(tag, value), body) => {
                self.trace.insert(key_path(path, tag), format!("{name}.$variant"));
                let mut object = Map::from_iter([(tag.clone(), value.clone())]);
                if let Some(Value::Object(fields)) = body.as_ref().and_then(|b| self.value(b, &body_name, path)) {
                    object.extend(fields);
                }
                Value::Object(object)
            }
            (Wrap::Bare, body) => body.as_ref().and_then(|b| self.value(b, &body_name, path)).unwrap_or(Value::Null),
        }
    }
}

/// The row indices posted under `name`: 0 and 2 for `tags[0]`, `tags[2]`;
/// without the spare row a form without the script ends in (named by
/// `tags.$spare`) when it was left empty.
pub(super) fn rows(form: &HashMap<String, String>, name: &str) -> BTreeSet<usize> {
    let open = format!("{name}[");
    let mut indices: BTreeSet<usize> = form
        .keys()
        .filter_map(|key| key.strip_prefix(open.as_str()))
        .filter_map(|rest| rest.split_once(']'))
        .filter_map(|(index, _)| index.parse().ok())
        .collect();
    let spare = form.get(&format!("{name}.{SPARE}")).and_then(|i| i.trim().parse::<usize>().ok());
    if let Some(spare) = spare.filter(|i| !filled(form, &format!("{name}[{i}]"))) {
        indices.remove(&spare);
    }
    indices
}

/// The field naming a list's spare row: `tags.$spare`.
pub(super) const SPARE: &str = "$spare";

/// Whether any field under `name` has something in it (an empty row of a
/// list of composites is left out); a nested list's spare marker is not
/// something.
fn filled(form: &HashMap<String, String>, name: &str) -> bool {
    form.iter().any(|(key, value)| {
        key.strip_prefix(name).is_some_and(|rest| rest.is_empty() || rest.starts_with(['.', '[']))
            && !key.ends_with(SPARE)
            && !value.trim().is_empty()
    })
}

/// The schema's defaults, as field values.
pub(super) fn defaults(props: &[Prop], prefix: &str, values: &mut HashMap<String, String>) {
    for prop in props {
        let name = join(prefix, &prop.name);
        match (&prop.node.default, &prop.node.input) {
            (Some(default), _) if !default.is_null() => encode(&prop.node, &name, default, values),
            (_, Input::Object(children)) if prop.node.required => defaults(children, &name, values),
            _ => {}
        }
    }
}

pub(super) fn encode_props(props: &[Prop], prefix: &str, object: &Value, values: &mut HashMap<String, String>) {
    for prop in props {
        if let Some(value) = object.get(&prop.name).filter(|v| !v.is_null()) {
            encode(&prop.node, &join(prefix, &prop.name), value, values);
        }
    }
}

/// The fields that decode to `value`; raw JSON for a composite value the
/// fields cannot say exactly (an unknown key, a `null` in a list of
/// numbers).
fn encode(node: &Node, name: &str, value: &Value, values: &mut HashMap<String, String>) {
    if !node.input.composite() {
        if !matches!((&node.input, value), (Input::Checkbox, Value::Bool(false))) {
            values.insert(name.to_owned(), show(&node.input, value));
        }
        return;
    }
    let mut fields = HashMap::new();
    encode_composite(node, name, value, &mut fields);
    let mut decoder = Decoder { form: &fields, issues: Vec::new(), trace: HashMap::new() };
    let back = decoder.value(node, name, "payload");
    if back.as_ref().is_some_and(|back| same(back, value)) {
        values.extend(fields);
    } else {
        values.insert(format!("{name}.$json"), serde_json::to_string_pretty(value).unwrap_or_default());
    }
}

fn encode_composite(node: &Node, name: &str, value: &Value, values: &mut HashMap<String, String>) {
    match (&node.input, value) {
        (Input::Object(props), Value::Object(_)) => {
            if !node.required {
                values.insert(format!("{name}.$include"), "true".to_owned());
            }
            encode_props(props, name, value, values);
        }
        (Input::List(item), Value::Array(items)) => {
            for (i, v) in items.iter().enumerate() {
                encode(item, &format!("{name}[{i}]"), v, values);
            }
        }
        (Input::Map(entry), Value::Object(map)) => {
            for (i, (k, v)) in map.iter().enumerate() {
                values.insert(format!("{name}[{i}].key"), k.clone());
                encode(entry, &format!("{name}[{i}].value"), v, values);
            }
        }
        (Input::Variants(variants), value) => {
            let Some(variant) = variants.iter().find(|v| selects(v, value)) else { return };
            values.insert(format!("{name}.$variant"), variant.key.clone());
            let body_name = join(name, &variant.key);
            let inner = match &variant.wrap {
                Wrap::Const(_) => None,
                Wrap::Keyed(key) => value.get(key).cloned(),
                Wrap::Tagged(tag, _) => {
                    let mut rest = value.clone();
                    if let Some(fields) = rest.as_object_mut() {
                        fields.remove(tag);
                    }
                    Some(rest)
                }
                Wrap::Bare => Some(value.clone()),
            };
            if let (Some(body), Some(inner)) = (&variant.body, inner) {
                match &body.input {
                    Input::Object(props) => encode_props(props, &body_name, &inner, values),
                    _ if inner.is_null() => {}
                    _ => encode(body, &body_name, &inner, values),
                }
            }
        }
        _ => {}
    }
}

/// Whether `value` is of `variant`.
fn selects(variant: &Variant, value: &Value) -> bool {
    match &variant.wrap {
        Wrap::Const(c) => value == c,
        Wrap::Keyed(key) => value.as_object().is_some_and(|o| o.len() == 1 && o.contains_key(key)),
        Wrap::Tagged(tag, v) => value.get(tag) == Some(v),
        Wrap::Bare => variant.body.as_ref().is_some_and(|body| fits(&body.input, value)),
    }
}

/// Whether `value` has the shape `input` makes (to tell untagged variants
/// apart).
fn fits(input: &Input, value: &Value) -> bool {
    match (input, value) {
        (Input::Integer { .. }, Value::Number(n)) => n.is_i64() || n.is_u64(),
        (Input::Number { .. }, Value::Number(_))
        | (Input::Text, Value::String(_))
        | (Input::Checkbox, Value::Bool(_))
        | (Input::Null, Value::Null)
        | (Input::List(_), Value::Array(_))
        | (Input::Map(_), Value::Object(_))
        | (Input::Json, _) => true,
        (Input::Select(choices), v) => {
            let text = v.to_string();
            choices.iter().any(|(c, _)| *c == text)
        }
        (Input::Object(props), Value::Object(o)) => {
            props.iter().all(|p| !p.node.required || o.contains_key(&p.name))
                && o.keys().all(|k| props.iter().any(|p| p.name == *k))
        }
        (Input::Variants(variants), v) => variants.iter().any(|variant| selects(variant, v)),
        _ => false,
    }
}

/// Equal as JSON, numbers by value (`2` is `2.0`).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same(x, y)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

/// How a form shows a scalar value of the payload.
fn show(input: &Input, value: &Value) -> String {
    match (input, value) {
        (Input::Text, Value::String(s)) => s.clone(),
        (Input::Integer { .. } | Input::Number { .. } | Input::Checkbox | Input::Select(_), v) => v.to_string(),
        (_, v) => serde_json::to_string_pretty(v).unwrap_or_default(),
    }
}
