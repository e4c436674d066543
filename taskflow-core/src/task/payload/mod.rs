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
//!
//! A value that fails every branch of an `anyOf` / `oneOf` (a serde enum) is
//! reported inside the branch it selects, by its tag, its key or its shape,
//! so that the message names the field to fix; when it selects none, the
//! message lists every variant's name.

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

    /// Passes when one branch matches. Otherwise reports the issues inside
    /// the branch the value selects (by its tag, its key, or its shape), so
    /// that the message names the field to fix rather than every variant;
    /// when the value names no branch, says which names there are.
    fn check_alternatives(
        &self,
        branches: &'a [Value],
        value: &Value,
        path: &mut Path,
        issues: &mut Vec<PayloadIssue>,
    ) {
        let mut failures = Vec::with_capacity(branches.len());
        for branch in branches {
            let mut branch_issues = Vec::new();
            self.check(branch, value, path, &mut branch_issues);
            if branch_issues.is_empty() {
                return;
            }
            failures.push(branch_issues);
        }
        match self.select(branches, value, path) {
            Selection::Branch(index) => issues.append(&mut failures[index]),
            Selection::Unmatched(issue) => issues.push(issue),
            Selection::Unnamed => self.report_closest(branches, failures, value, path, issues),
        }
    }

    /// The branch a value names: by the tag of an internally or adjacently
    /// tagged enum, or by the key (or string) of an externally tagged one.
    fn select(&self, branches: &'a [Value], value: &Value, path: &Path) -> Selection {
        if let (Value::Object(object), Some(tag)) = (value, self.discriminator(branches)) {
            return tag.select(object, path);
        }
        match self.external_variants(branches) {
            Some(variants) => self.select_by_name(&variants, branches, value, path),
            None => Selection::Unnamed,
        }
    }

    /// The property that every object branch pins to one value, such as
    /// `"type": {"const": "Card"}`: the tag serde reads to pick the variant.
    fn discriminator(&self, branches: &'a [Value]) -> Option<Discriminator<'a>> {
        let objects: Vec<(usize, &'a Map<String, Value>)> = branches
            .iter()
            .enumerate()
            .filter_map(|(index, branch)| Some((index, object_schema(self.deref(branch))?)))
            .collect();
        let (_, first) = objects.first()?;
        first.get("properties")?.as_object()?.keys().find_map(|tag| {
            let values = objects
                .iter()
                .map(|(index, branch)| Some((*index, self.pinned(branch, tag)?)))
                .collect::<Option<Vec<_>>>()?;
            Some(Discriminator { tag, values })
        })
    }

    /// The one value a branch allows for `key`, from a `const` or a
    /// one-element `enum`.
    fn pinned(&self, branch: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
        let property = self.deref(branch.get("properties")?.get(key)?);
        if let Some(constant) = property.get("const") {
            return Some(constant);
        }
        match property.get("enum")?.as_array()?.as_slice() {
            [only] => Some(only),
            _ => None,
        }
    }

    /// The variants of an externally tagged enum, when every branch is one:
    /// a unit variant is a string, a variant with data an object whose only
    /// key is the variant's name.
    fn external_variants(&self, branches: &'a [Value]) -> Option<Variants<'a>> {
        let mut variants = Variants::default();
        for (index, branch) in branches.iter().enumerate() {
            let branch = self.deref(branch).as_object()?;
            if let Some(units) = unit_names(branch) {
                variants.names.extend(units.iter().map(|name| Value::String((*name).to_owned())));
                variants.units.extend(units);
            } else {
                let key = variant_key(branch)?;
                variants.names.push(Value::String(key.to_owned()));
                variants.keyed.push((index, key));
            }
        }
        Some(variants)
    }

    /// The variant an externally tagged value names: a string for a unit
    /// variant, an object's only key for a variant with data.
    fn select_by_name(&self, variants: &Variants<'a>, branches: &'a [Value], value: &Value, path: &Path) -> Selection {
        match value {
            // `"Courier"` names a variant that carries data: say how to write it.
            Value::String(name) => match variants.keyed_branch(name) {
                Some(index) => unmatched(path, self.summarize(&branches[index]), describe(value)),
                None => unmatched(path, variants.one_of(), describe(value)),
            },
            _ if variants.keyed.is_empty() => unmatched(path, variants.one_of(), describe(value)),
            Value::Object(object) => variants.select_by_key(object, path),
            _ => Selection::Unnamed,
        }
    }

    /// Reports the issues of the one branch the value's shape fits best, or
    /// else what each branch accepts: the value names no branch.
    fn report_closest(
        &self,
        branches: &'a [Value],
        mut failures: Vec<Vec<PayloadIssue>>,
        value: &Value,
        path: &Path,
        issues: &mut Vec<PayloadIssue>,
    ) {
        let plausible: Vec<usize> =
            (0..branches.len()).filter(|&index| self.shape_matches(&branches[index], value)).collect();
        let fewest = plausible.iter().map(|&index| failures[index].len()).min();
        let closest: Vec<usize> =
            plausible.into_iter().filter(|&index| Some(failures[index].len()) == fewest).collect();
        if let [only] = closest.as_slice() {
            issues.append(&mut failures[*only]);
            return;
        }
        let expected = self.summarize_alternatives(branches, MAX_DEPTH);
        issues.push(path.issue(format!("expected {expected}, found {}", describe(value))));
    }

    /// Whether the branch accepts the value's JSON type and, for objects,
    /// has every key the branch requires.
    fn shape_matches(&self, schema: &'a Value, value: &Value) -> bool {
        if !self.type_fits(schema, value, MAX_DEPTH) {
            return false;
        }
        match (self.deref(schema).get("required"), value) {
            (Some(Value::Array(required)), Value::Object(object)) => {
                required.iter().filter_map(Value::as_str).all(|key| object.contains_key(key))
            }
            _ => true,
        }
    }

    /// Whether the schema accepts the value's JSON type at all, looking
    /// through nested choices without asking for their required keys: the
    /// enum in `Option<Enum>` has already reported which of its keys is
    /// missing, and that report is the one to pass on.
    fn type_fits(&self, schema: &'a Value, value: &Value, depth: usize) -> bool {
        let Some(schema) = self.deref(schema).as_object() else { return true };
        if let Some(expected) = schema.get("type") {
            return type_matches(expected, value);
        }
        if let Some(Value::Array(allowed)) = schema.get("enum") {
            return allowed.iter().any(|a| same_type(a, value));
        }
        if let Some(constant) = schema.get("const") {
            return same_type(constant, value);
        }
        match alternatives(schema) {
            Some(branches) => depth == 0 || branches.iter().any(|branch| self.type_fits(branch, value, depth - 1)),
            None => true,
        }
    }

    fn deref(&self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str).and_then(|r| self.resolve(r)) {
            Some(target) => target,
            None => schema,
        }
    }

    /// A short description of what a schema accepts, for messages.
    fn summarize(&self, schema: &'a Value) -> String {
        self.summarize_within(schema, MAX_DEPTH)
    }

    fn summarize_within(&self, schema: &'a Value, depth: usize) -> String {
        let schema = self.deref(schema);
        if let Some(Value::Array(allowed)) = schema.get("enum") {
            return list(allowed);
        }
        if let Some(constant) = schema.get("const") {
            return constant.to_string();
        }
        if let Some(required) = object_schema(schema).and_then(|s| s.get("required")).and_then(Value::as_array) {
            match required.as_slice() {
                [] => {}
                [key] => return format!("an object with key {key}"),
                keys => return format!("an object with keys {}", list(keys)),
            }
        }
        match (schema.get("type"), schema.as_object().and_then(alternatives)) {
            (Some(expected), _) => type_names(expected),
            (None, Some(branches)) if depth > 0 => self.summarize_alternatives(branches, depth - 1),
            (None, _) => "another value".to_owned(),
        }
    }

    /// What a choice accepts: the tag's values when it has one, else each
    /// branch's summary, once each.
    fn summarize_alternatives(&self, branches: &'a [Value], depth: usize) -> String {
        if let Some(tag) = self.discriminator(branches) {
            if tag.values.len() == branches.len() {
                return format!("an object with {} one of {}", quote(tag.tag), list(tag.values()));
            }
        }
        let mut accepted: Vec<String> = Vec::new();
        for summary in branches.iter().map(|branch| self.summarize_within(branch, depth)) {
            if !accepted.contains(&summary) {
                accepted.push(summary);
            }
        }
        accepted.join(" or ")
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

/// How deep summaries and shape checks follow choices nested in choices,
/// so that a recursive schema cannot loop.
const MAX_DEPTH: usize = 8;

/// Which branch of an `anyOf` / `oneOf` a failing value meant.
enum Selection {
    /// The value names this branch by its tag or key: its issues are the ones to fix.
    Branch(usize),
    /// The value names no branch: this issue says which names there are.
    Unmatched(PayloadIssue),
    /// The branches carry no names (an untagged enum, an `Option`, a choice
    /// of types): the closest one by shape is reported.
    Unnamed,
}

/// The tag of an internally or adjacently tagged enum and the value each
/// object branch requires for it.
struct Discriminator<'a> {
    tag: &'a str,
    values: Vec<(usize, &'a Value)>,
}

impl<'a> Discriminator<'a> {
    fn values(&self) -> impl Iterator<Item = &'a Value> + '_ {
        self.values.iter().map(|(_, value)| *value)
    }

    fn select(&self, object: &Map<String, Value>, path: &Path) -> Selection {
        let tag_path = path.key(self.tag);
        let every = list(self.values());
        let Some(given) = object.get(self.tag) else {
            return Selection::Unmatched(tag_path.issue(format!("required field is missing; expected one of {every}")));
        };
        match self.values.iter().find(|(_, value)| json_eq(value, given)) {
            Some((index, _)) => Selection::Branch(*index),
            None => Selection::Unmatched(tag_path.issue(format!("expected one of {every}, found {}", describe(given)))),
        }
    }
}

/// The variants of an externally tagged enum.
#[derive(Default)]
struct Variants<'a> {
    /// Every variant's name, in the schema's order.
    names: Vec<Value>,
    /// The unit variants, written as strings.
    units: Vec<&'a str>,
    /// The variants with data, written `{"Name": data}`: branch and name.
    keyed: Vec<(usize, &'a str)>,
}

impl Variants<'_> {
    fn keyed_branch(&self, name: &str) -> Option<usize> {
        self.keyed.iter().find(|(_, key)| *key == name).map(|(index, _)| *index)
    }

    /// `one of "Pickup", "Courier", "Freight"`: every name, unit or keyed.
    fn one_of(&self) -> String {
        format!("one of {}", list(&self.names))
    }

    fn select_by_key(&self, object: &Map<String, Value>, path: &Path) -> Selection {
        let keys: Vec<&String> = object.keys().collect();
        let [key] = keys.as_slice() else {
            let keyed: Vec<Value> = self.keyed.iter().map(|(_, key)| Value::String((*key).to_owned())).collect();
            let expected = format!("an object with exactly one of the keys {}", list(&keyed));
            return unmatched(path, expected, describe_keys(object));
        };
        match self.keyed_branch(key) {
            Some(index) => Selection::Branch(index),
            // `{"Pickup": …}` for a unit variant, which is written as a string.
            None if self.units.contains(&key.as_str()) => unmatched(path, quote(key), describe_keys(object)),
            None => unmatched(path, self.one_of(), describe_keys(object)),
        }
    }
}

/// `expected <expected>, found <found>` at `path`: the value names no branch.
fn unmatched(path: &Path, expected: String, found: String) -> Selection {
    Selection::Unmatched(path.issue(format!("expected {expected}, found {found}")))
}

/// The branches of a schema that is a choice.
fn alternatives(schema: &Map<String, Value>) -> Option<&[Value]> {
    ["anyOf", "oneOf"].iter().find_map(|keyword| schema.get(*keyword)?.as_array().map(Vec::as_slice))
}

/// The schema, when it describes only objects.
fn object_schema(schema: &Value) -> Option<&Map<String, Value>> {
    let schema = schema.as_object()?;
    (schema.get("type").and_then(Value::as_str) == Some("object")).then_some(schema)
}

/// The names a branch of string constants allows: unit variants.
fn unit_names(branch: &Map<String, Value>) -> Option<Vec<&str>> {
    if let Some(constant) = branch.get("const") {
        return Some(vec![constant.as_str()?]);
    }
    branch.get("enum")?.as_array()?.iter().map(Value::as_str).collect()
}

/// The only key a branch allows and requires: a variant with data.
fn variant_key(branch: &Map<String, Value>) -> Option<&str> {
    if branch.get("type").and_then(Value::as_str) != Some("object")
        || branch.get("additionalProperties") != Some(&Value::Bool(false))
    {
        return None;
    }
    match branch.get("required")?.as_array()?.as_slice() {
        [key] => key.as_str(),
        _ => None,
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

fn list<'v>(values: impl IntoIterator<Item = &'v Value>) -> String {
    let shown: Vec<String> = values.into_iter().map(Value::to_string).collect();
    shown.join(", ")
}

/// A key as JSON writes it: `"last4"`.
fn quote(key: &str) -> String {
    Value::String(key.to_owned()).to_string()
}

/// `an object with key "Teleport"`: an object by its keys, for messages
/// about variants, where the keys are the names.
fn describe_keys(object: &Map<String, Value>) -> String {
    let keys: Vec<Value> = object.keys().map(|key| Value::String(key.clone())).collect();
    match keys.as_slice() {
        [] => "an empty object".to_owned(),
        [key] => format!("an object with key {key}"),
        keys => format!("an object with keys {}", list(keys)),
    }
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
mod tests;
