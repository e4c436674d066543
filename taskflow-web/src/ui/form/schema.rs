//! Reading a JSON Schema (as `schemars` writes it) into the form's tree.

use serde_json::{Map, Value};

use super::{Input, MAX_DEPTH, Node, Prop, Variant, Wrap};

/// The root's properties.
pub(super) fn read(schema: &Value) -> Vec<Prop> {
    let defs = schema.get("$defs").or_else(|| schema.get("definitions")).cloned().unwrap_or(Value::Null);
    Reader { defs: &defs }.props(schema, 0)
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

    fn props(&self, schema: &Value, depth: usize) -> Vec<Prop> {
        let schema = self.resolve(schema);
        let required: Vec<&str> =
            schema.get("required").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str).collect();
        let Some(Value::Object(properties)) = schema.get("properties") else { return Vec::new() };
        properties
            .iter()
            .map(|(name, prop)| Prop {
                name: name.clone(),
                node: self.node(prop, required.contains(&name.as_str()), depth),
            })
            .collect()
    }

    fn node(&self, schema: &Value, required: bool, depth: usize) -> Node {
        let schema = self.resolve(schema);
        let (inner, nullable) = self.without_null(&schema);
        let text = |key: &str| schema.get(key).or_else(|| inner.get(key)).and_then(Value::as_str).map(str::to_owned);
        Node {
            title: text("title"),
            description: text("description").unwrap_or_default(),
            required: required && !nullable,
            default: schema.get("default").cloned(),
            input: self.input(&inner, depth),
        }
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
                    return (self.resolve(&other), true);
                }
            }
        }
        (schema, false)
    }

    fn input(&self, schema: &Value, depth: usize) -> Input {
        if let Some(choices) = choices(schema) {
            return Input::Select(choices);
        }
        let deeper = depth < MAX_DEPTH;
        if let Some(Value::Array(branches)) = schema.get("oneOf").or_else(|| schema.get("anyOf")) {
            return match self.variants(branches, depth + 1) {
                Some(variants) if deeper => Input::Variants(variants),
                _ => Input::Json,
            };
        }
        let bound = |key: &str| schema.get(key).filter(|v| v.is_number()).cloned();
        match schema.get("type").and_then(Value::as_str) {
            Some("integer") => Input::Integer { min: bound("minimum"), max: bound("maximum") },
            Some("number") => Input::Number { min: bound("minimum"), max: bound("maximum") },
            Some("string") => Input::Text,
            Some("boolean") => Input::Checkbox,
            Some("null") => Input::Null,
            Some("object") if deeper && schema.get("properties").is_some() => {
                Input::Object(self.props(schema, depth + 1))
            }
            Some("object") if deeper && schema.get("additionalProperties").is_some_and(Value::is_object) => {
                Input::Map(Box::new(self.node(&schema["additionalProperties"], true, depth + 1)))
            }
            Some("object")
                if deeper && schema.get("properties").is_none() && schema.get("additionalProperties").is_none() =>
            {
                // `{"type": "object"}` alone: any map, of any values.
                Input::Json
            }
            Some("array")
                if deeper
                    && schema.get("items").is_some_and(Value::is_object)
                    && schema.get("prefixItems").is_none() =>
            {
                Input::List(Box::new(self.node(&schema["items"], true, depth + 1)))
            }
            _ => Input::Json,
        }
    }

    /// The variants of a `oneOf` / `anyOf` (a serde enum), or `None` when
    /// it is none the form can offer.
    fn variants(&self, branches: &[Value], depth: usize) -> Option<Vec<Variant>> {
        let branches: Vec<Value> = branches.iter().map(|b| self.resolve(b)).collect();
        let tag = tag_key(&branches);
        let mut variants = Vec::new();
        for (i, branch) in branches.iter().enumerate() {
            let description = branch.get("description").and_then(Value::as_str).unwrap_or_default();
            let properties = branch.get("properties").and_then(Value::as_object);
            if let (Some(Value::Array(values)), None) = (branch.get("enum"), properties) {
                for value in values {
                    variants.push(unit(value, description));
                }
            } else if let (Some(value), None) = (branch.get("const"), properties) {
                variants.push(unit(value, description));
            } else if let (Some(tag), Some(properties)) = (&tag, properties) {
                let value = pinned(&properties[tag.as_str()])?.clone();
                let mut rest = branch.clone();
                rest["properties"].as_object_mut()?.remove(tag.as_str());
                let body = (properties.len() > 1).then(|| Node {
                    title: None,
                    description: String::new(),
                    required: true,
                    default: None,
                    input: Input::Object(self.props(&rest, depth)),
                });
                let name = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
                variants.push(Variant {
                    key: name.clone(),
                    label: label(&name, description),
                    wrap: Wrap::Tagged(tag.clone(), value),
                    body,
                });
            } else if let Some(key) = keyed(branch) {
                let body = self.node(&branch["properties"][key], true, depth);
                variants.push(Variant {
                    key: key.to_owned(),
                    label: label(key, description),
                    wrap: Wrap::Keyed(key.to_owned()),
                    body: Some(body),
                });
            } else {
                let body = self.node(branch, true, depth);
                let name = body
                    .title
                    .clone()
                    .or_else(|| branch.get("type").and_then(Value::as_str).map(str::to_owned))
                    .unwrap_or_else(|| format!("variant {}", i + 1));
                variants.push(Variant {
                    key: name.clone(),
                    label: label(&name, description),
                    wrap: Wrap::Bare,
                    body: Some(body),
                });
            }
        }
        // Keys name fields: plain and unique, or the variant's position.
        let mut seen = Vec::new();
        for (i, variant) in variants.iter_mut().enumerate() {
            let plain =
                !variant.key.is_empty() && variant.key.chars().all(|c| c.is_alphanumeric() || c == '_' || c == '-');
            if !plain || seen.contains(&variant.key) {
                variant.key = format!("v{i}");
            }
            seen.push(variant.key.clone());
        }
        (!variants.is_empty()).then_some(variants)
    }
}

fn unit(value: &Value, description: &str) -> Variant {
    let name = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
    Variant { key: name.clone(), label: label(&name, description), wrap: Wrap::Const(value.clone()), body: None }
}

/// The value a property pins: `const`, or an `enum` of one.
fn pinned(schema: &Value) -> Option<&Value> {
    schema.get("const").or_else(|| match schema.get("enum") {
        Some(Value::Array(values)) if values.len() == 1 => values.first(),
        _ => None,
    })
}

/// The property every object branch pins to a value of its own: the tag
/// of an internally or adjacently tagged enum.
fn tag_key(branches: &[Value]) -> Option<String> {
    let objects: Vec<&Map<String, Value>> = branches.iter().filter_map(|b| b.get("properties")?.as_object()).collect();
    let first = objects.first()?;
    first
        .iter()
        .filter(|(_, schema)| pinned(schema).is_some())
        .map(|(key, _)| key)
        .find(|key| objects.iter().all(|o| o.get(key.as_str()).and_then(pinned).is_some()))
        .cloned()
}

/// The one key of an externally tagged variant, `{"Courier": {...}}`.
fn keyed(branch: &Value) -> Option<&str> {
    if branch.get("additionalProperties") != Some(&Value::Bool(false)) {
        return None;
    }
    let properties = branch.get("properties")?.as_object()?;
    let required = branch.get("required")?.as_array()?;
    match (properties.keys().next(), properties.len(), required.len()) {
        (Some(key), 1, 1) if required[0] == key.as_str() => Some(key),
        _ => None,
    }
}

/// The choices of a plain enum: `enum: [...]`, or `oneOf` / `anyOf` of
/// `const`s.
fn choices(schema: &Value) -> Option<Vec<(String, String)>> {
    if let Some(Value::Array(values)) = schema.get("enum") {
        return Some(values.iter().map(|v| (v.to_string(), choice_label(v, None))).collect());
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(Value::Array(options)) = schema.get(key) {
            let consts: Option<Vec<(String, String)>> = options
                .iter()
                .map(|o| {
                    let value = pinned(o).filter(|_| o.get("properties").is_none())?;
                    Some((value.to_string(), choice_label(value, o.get("description").and_then(Value::as_str))))
                })
                .collect();
            if consts.as_ref().is_some_and(|c| !c.is_empty()) {
                return consts;
            }
        }
    }
    None
}

fn choice_label(value: &Value, description: Option<&str>) -> String {
    let shown = value.as_str().map_or_else(|| value.to_string(), str::to_owned);
    label(&shown, description.unwrap_or_default())
}

fn label(name: &str, description: &str) -> String {
    if description.is_empty() { name.to_owned() } else { format!("{name} — {description}") }
}
