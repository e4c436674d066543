//! Checks a payload against a task's JSON Schema, with messages that name the
//! path and the expectation: `payload.b: expected integer, found string "x"`.
//!
//! The schemas come from `schemars` (draft 2020-12), so this validator covers
//! the keywords it emits: `type`, `properties`, `required`,
//! `additionalProperties`, `items`, `prefixItems`, `enum`, `const`, `$ref` to
//! `$defs`, `anyOf` / `oneOf` / `allOf`, numeric bounds and the integer
//! `format`s, string and array lengths. Keywords it does not know are
//! ignored; deserialization into the task's argument types runs after it and
//! remains the final word, so a gap here is a less precise message, never an
//! accepted bad payload.

use serde_json::{Map, Value};

use crate::error::{PayloadError, PayloadIssue};

/// At most this many issues are reported for one payload.
const MAX_ISSUES: usize = 20;

/// Validates `instance` against `schema`, the root holding any `$defs`.
pub(crate) fn validate(schema: &Value, instance: &Value) -> Result<(), PayloadError> {
    let mut issues = Vec::new();
    Validator { root: schema }.check(schema, instance, &mut Path::root(), &mut issues);
    if issues.is_empty() {
        Ok(())
    } else {
        issues.truncate(MAX_ISSUES);
        Err(PayloadError { issues })
    }
}

/// A location in the payload, printed as `payload.items[2].name`.
#[derive(Clone)]
pub(crate) struct Path(String);

impl Path {
    pub(crate) fn root() -> Path {
        Path("payload".to_owned())
    }

    pub(crate) fn key(&self, key: &str) -> Path {
        let plain = !key.is_empty()
            && key.chars().all(|c| c.is_alphanumeric() || c == '_')
            && !key.starts_with(|c: char| c.is_ascii_digit());
        if plain {
            Path(format!("{}.{key}", self.0))
        } else {
            Path(format!("{}[{}]", self.0, Value::String(key.to_owned())))
        }
    }

    fn index(&self, index: usize) -> Path {
        Path(format!("{}[{index}]", self.0))
    }

    pub(crate) fn issue(&self, message: impl Into<String>) -> PayloadIssue {
        PayloadIssue { path: self.0.clone(), message: message.into() }
    }
}

struct Validator<'a> {
    root: &'a Value,
}

impl<'a> Validator<'a> {
    fn resolve(&self, reference: &str) -> Option<&'a Value> {
        let pointer = reference.strip_prefix('#')?;
        self.root.pointer(pointer)
    }

    fn check(&self, schema: &'a Value, value: &Value, path: &mut Path, issues: &mut Vec<PayloadIssue>) {
        if issues.len() >= MAX_ISSUES {
            return;
        }
        let schema = match schema {
            Value::Bool(true) => return,
            Value::Bool(false) => {
                issues.push(path.issue(format!("no value is allowed here, found {}", describe(value))));
                return;
            }
            Value::Object(schema) => schema,
            _ => return,
        };
        if let Some(Value::String(reference)) = schema.get("$ref") {
            match self.resolve(reference) {
                Some(target) => self.check(target, value, path, issues),
                None => issues.push(path.issue(format!("the schema refers to `{reference}`, which it lacks"))),
            }
        }
        if let Some(expected) = schema.get("type") {
            if !type_matches(expected, value) {
                issues.push(path.issue(format!("expected {}, found {}", type_names(expected), describe(value))));
                return;
            }
        }
        if let Some(Value::Array(allowed)) = schema.get("enum") {
            if !allowed.iter().any(|a| json_eq(a, value)) {
                issues.push(path.issue(format!("expected one of {}, found {}", list(allowed), describe(value))));
                return;
            }
        }
        if let Some(constant) = schema.get("const") {
            if !json_eq(constant, value) {
                issues.push(path.issue(format!("expected {constant}, found {}", describe(value))));
                return;
            }
        }
        match value {
            Value::Number(_) => check_number(schema, value, path, issues),
            Value::String(s) => check_length(schema, s.chars().count(), "characters", path, issues),
            Value::Array(items) => self.check_array(schema, items, path, issues),
            Value::Object(object) => self.check_object(schema, object, path, issues),
            _ => {}
        }
        if let Some(Value::Array(all)) = schema.get("allOf") {
            for sub in all {
                self.check(sub, value, path, issues);
            }
        }
        for keyword in ["anyOf", "oneOf"] {
            if let Some(Value::Array(branches)) = schema.get(keyword) {
                self.check_alternatives(branches, value, path, issues);
            }
        }
    }

    /// Passes when one branch matches; otherwise reports the issues of the
    /// branch the value most looks like, or what the branches accept.
    fn check_alternatives(
        &self,
        branches: &'a [Value],
        value: &Value,
        path: &mut Path,
        issues: &mut Vec<PayloadIssue>,
    ) {
        let mut plausible = Vec::new();
        for branch in branches {
            let mut branch_issues = Vec::new();
            self.check(branch, value, path, &mut branch_issues);
            if branch_issues.is_empty() {
                return;
            }
            if self.shape_matches(branch, value) {
                plausible.push(branch_issues);
            }
        }
        if plausible.len() == 1 {
            issues.extend(plausible.pop().into_iter().flatten());
            return;
        }
        let accepted: Vec<String> = branches.iter().map(|b| self.summarize(b)).collect();
        issues.push(path.issue(format!("expected {}, found {}", accepted.join(" or "), describe(value))));
    }

    /// Whether the branch accepts the value's JSON type and, for objects
    /// with a single required key (an externally tagged enum variant), that
    /// key.
    fn shape_matches(&self, schema: &'a Value, value: &Value) -> bool {
        let Some(schema) = self.deref(schema).as_object() else { return true };
        if let Some(expected) = schema.get("type") {
            if !type_matches(expected, value) {
                return false;
            }
        }
        if let (Some(Value::Array(required)), Value::Object(object)) = (schema.get("required"), value) {
            if !required.iter().filter_map(Value::as_str).all(|k| object.contains_key(k)) {
                return false;
            }
        }
        if let Some(Value::Array(allowed)) = schema.get("enum") {
            return allowed.iter().any(|a| same_type(a, value));
        }
        if let Some(constant) = schema.get("const") {
            return same_type(constant, value);
        }
        true
    }

    fn deref(&self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str).and_then(|r| self.resolve(r)) {
            Some(target) => target,
            None => schema,
        }
    }

    /// A short description of what a schema accepts, for messages.
    fn summarize(&self, schema: &'a Value) -> String {
        let schema = self.deref(schema);
        if let Some(Value::Array(allowed)) = schema.get("enum") {
            return list(allowed);
        }
        if let Some(constant) = schema.get("const") {
            return constant.to_string();
        }
        if let (Some("object"), Some(Value::Array(required))) =
            (schema.get("type").and_then(Value::as_str), schema.get("required"))
        {
            if required.len() == 1 {
                return format!("an object with key {}", required[0]);
            }
        }
        match schema.get("type") {
            Some(expected) => type_names(expected),
            None => "another value".to_owned(),
        }
    }

    fn check_array(
        &self,
        schema: &'a Map<String, Value>,
        items: &[Value],
        path: &mut Path,
        issues: &mut Vec<PayloadIssue>,
    ) {
        check_count(schema, "minItems", "maxItems", items.len(), "items", path, issues);
        let prefix = match schema.get("prefixItems") {
            Some(Value::Array(prefix)) => prefix.as_slice(),
            _ => &[],
        };
        for (index, item) in items.iter().enumerate() {
            let sub = match prefix.get(index) {
                Some(sub) => Some(sub),
                None => schema.get("items"),
            };
            if let Some(sub) = sub {
                self.check(sub, item, &mut path.index(index), issues);
            }
        }
    }

    fn check_object(
        &self,
        schema: &'a Map<String, Value>,
        object: &Map<String, Value>,
        path: &mut Path,
        issues: &mut Vec<PayloadIssue>,
    ) {
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(Value::Array(required)) = schema.get("required") {
            for key in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(key) {
                    issues.push(path.key(key).issue("required field is missing"));
                }
            }
        }
        for (key, item) in object {
            let mut item_path = path.key(key);
            match properties.and_then(|p| p.get(key)) {
                Some(sub) => self.check(sub, item, &mut item_path, issues),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => {
                        let known: Vec<&str> =
                            properties.map(|p| p.keys().map(String::as_str).collect()).unwrap_or_default();
                        let hint = if known.is_empty() {
                            "this task takes no arguments".to_owned()
                        } else {
                            format!("expected one of {}", known.join(", "))
                        };
                        issues.push(item_path.issue(format!("unknown field; {hint}")));
                    }
                    Some(sub @ Value::Object(_)) => self.check(sub, item, &mut item_path, issues),
                    _ => {}
                },
            }
        }
    }
}

fn check_number(schema: &Map<String, Value>, value: &Value, path: &Path, issues: &mut Vec<PayloadIssue>) {
    let Some(n) = value.as_f64() else { return };
    let format = schema.get("format").and_then(Value::as_str);
    if format.and_then(integer_range_exact).is_some() && exact_integer(value).is_none() && n.fract() == 0.0 {
        let format = format.unwrap_or_default();
        return issues.push(path.issue(format!(
            "expected an integer that fits {format} exactly, found {value}; write it without a fraction or exponent"
        )));
    }
    // Integers are compared exactly: as floats, i64::MAX + 1 equals i64::MAX.
    if let Some(exact) = exact_integer(value) {
        for (key, below) in [("minimum", true), ("maximum", false)] {
            let bound = schema.get(key).and_then(exact_integer);
            let format = schema.get("format").and_then(Value::as_str).and_then(integer_range_exact);
            let bound = match (bound, format) {
                (Some(b), Some((lo, hi))) => Some(if below { b.max(lo) } else { b.min(hi) }),
                (Some(b), None) => Some(b),
                (None, Some((lo, hi))) => Some(if below { lo } else { hi }),
                (None, None) => None,
            };
            match bound {
                Some(b) if below && exact < b => {
                    return issues.push(path.issue(format!("expected a number >= {b}, found {value}")));
                }
                Some(b) if !below && exact > b => {
                    return issues.push(path.issue(format!("expected a number <= {b}, found {value}")));
                }
                _ => {}
            }
        }
    }
    let bound = |key: &str| schema.get(key).and_then(Value::as_f64);
    let format_range = schema.get("format").and_then(Value::as_str).and_then(integer_range);
    let (mut min, mut max) = (bound("minimum"), bound("maximum"));
    if let Some((lo, hi)) = format_range {
        min = Some(min.map_or(lo, |m| m.max(lo)));
        max = Some(max.map_or(hi, |m| m.min(hi)));
    }
    if let Some(min) = min {
        if n < min {
            issues.push(path.issue(format!("expected a number >= {}, found {value}", number(min))));
            return;
        }
    }
    if let Some(max) = max {
        if n > max {
            issues.push(path.issue(format!("expected a number <= {}, found {value}", number(max))));
            return;
        }
    }
    if let Some(min) = bound("exclusiveMinimum") {
        if n <= min {
            issues.push(path.issue(format!("expected a number > {}, found {value}", number(min))));
        }
    }
    if let Some(max) = bound("exclusiveMaximum") {
        if n >= max {
            issues.push(path.issue(format!("expected a number < {}, found {value}", number(max))));
        }
    }
}

/// The largest integer every larger one of which a float may have rounded
/// to: 2^53.
const MAX_EXACT_FLOAT: f64 = 9_007_199_254_740_992.0;

/// An integral JSON number exactly, whether written `5` or `5.0`.
fn exact_integer(value: &Value) -> Option<i128> {
    let Value::Number(n) = value else { return None };
    if let Some(i) = n.as_i64() {
        return Some(i128::from(i));
    }
    if let Some(u) = n.as_u64() {
        return Some(i128::from(u));
    }
    // Floats are exact integers only up to 2^53.
    n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() <= MAX_EXACT_FLOAT).map(|f| f as i128)
}

/// The range of schemars' integer formats, exactly.
fn integer_range_exact(format: &str) -> Option<(i128, i128)> {
    Some(match format {
        "int8" => (i8::MIN.into(), i8::MAX.into()),
        "int16" => (i16::MIN.into(), i16::MAX.into()),
        "int32" => (i32::MIN.into(), i32::MAX.into()),
        "int64" => (i64::MIN.into(), i64::MAX.into()),
        "uint8" => (0, u8::MAX.into()),
        "uint16" => (0, u16::MAX.into()),
        "uint32" => (0, u32::MAX.into()),
        "uint64" | "uint" => (0, u64::MAX.into()),
        _ => return None,
    })
}

/// Integral floats written as integers (`2.0` → `2`), exactly when they
/// fit `i64` or `u64`: JSON Schema counts `2.0` as an integer, serde does
/// not, so a payload the schema accepts must deserialize too.
///
/// Only up to 2^53: beyond, a float may already be a rounded neighbour of
/// the number that was written (`-9223372036854775809` parses as
/// `i64::MIN`), and the validator refuses it for integer formats instead.
pub(crate) fn normalize_integers(value: &mut Value) {
    match value {
        Value::Number(n) if !n.is_i64() && !n.is_u64() => {
            if let Some(f) = n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() <= MAX_EXACT_FLOAT) {
                *value = Value::from(f as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_integers),
        Value::Object(map) => map.values_mut().for_each(normalize_integers),
        _ => {}
    }
}

/// The range of schemars' integer formats, as floats.
fn integer_range(format: &str) -> Option<(f64, f64)> {
    integer_range_exact(format).map(|(lo, hi)| (lo as f64, hi as f64))
}

fn number(n: f64) -> String {
    Value::from(n).to_string().trim_end_matches(".0").to_owned()
}

fn check_length(schema: &Map<String, Value>, len: usize, unit: &str, path: &Path, issues: &mut Vec<PayloadIssue>) {
    check_count(schema, "minLength", "maxLength", len, unit, path, issues);
}

fn check_count(
    schema: &Map<String, Value>,
    min_key: &str,
    max_key: &str,
    len: usize,
    unit: &str,
    path: &Path,
    issues: &mut Vec<PayloadIssue>,
) {
    if let Some(min) = schema.get(min_key).and_then(Value::as_u64) {
        if (len as u64) < min {
            issues.push(path.issue(format!("expected at least {min} {unit}, found {len}")));
        }
    }
    if let Some(max) = schema.get(max_key).and_then(Value::as_u64) {
        if (len as u64) > max {
            issues.push(path.issue(format!("expected at most {max} {unit}, found {len}")));
        }
    }
}

fn type_matches(expected: &Value, value: &Value) -> bool {
    match expected {
        Value::String(name) => is_type(name, value),
        Value::Array(names) => names.iter().filter_map(Value::as_str).any(|name| is_type(name, value)),
        _ => true,
    }
}

fn is_type(name: &str, value: &Value) -> bool {
    match name {
        "null" => value.is_null(),
        "boolean" => value.is_boolean(),
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "number" => value.is_number(),
        "integer" => match value {
            Value::Number(n) => n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0),
            _ => false,
        },
        _ => true,
    }
}

fn same_type(a: &Value, b: &Value) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// Equality where `1` and `1.0` are the same number, as JSON Schema says.
fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y || x.as_f64() == y.as_f64(),
        _ => a == b,
    }
}

fn type_names(expected: &Value) -> String {
    match expected {
        Value::String(name) => name.clone(),
        Value::Array(names) => {
            let names: Vec<&str> = names.iter().filter_map(Value::as_str).collect();
            names.join(" or ")
        }
        other => other.to_string(),
    }
}

fn list(values: &[Value]) -> String {
    let shown: Vec<String> = values.iter().map(Value::to_string).collect();
    shown.join(", ")
}

/// `string "x"`, `integer 5`, `an object`: what a value is, for messages.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("boolean {b}"),
        Value::Number(n) if n.is_i64() || n.is_u64() => format!("integer {n}"),
        Value::Number(n) => format!("number {n}"),
        Value::String(s) => {
            let shown: String = s.chars().take(40).collect();
            let ellipsis = if shown.len() < s.len() { "…" } else { "" };
            format!("string {}{ellipsis}", Value::String(shown))
        }
        Value::Array(items) => format!("an array of {} items", items.len()),
        Value::Object(_) => "an object".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{normalize_integers, validate};

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
        assert_eq!(
            messages(add_schema(), json!({"a": 1, "b": "x"})),
            ["payload.b: expected integer, found string \"x\""]
        );
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
        assert_eq!(
            messages(schema, json!({"my key": "v"})),
            ["payload[\"my key\"]: expected integer, found string \"v\""]
        );
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
}
