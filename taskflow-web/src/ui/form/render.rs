//! The form's tree as flat rows for `task_form.html`, each issue beside
//! the field that made its payload path.

use std::collections::HashMap;

use taskflow_proto::FieldIssue;

use super::{Input, Node, Prop, join};

/// One row of the rendered form: a fieldset, list, row of a list or
/// variant opening or closing, or an input.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// Opening: `group` (a fieldset), `body` (what an "include" checkbox
    /// turns on), `list`, `item` (a row of a list or map), `template` (a
    /// new row, for the script), `variant` (one variant's fields);
    /// closing: `end`, `group-end` (a group's fields and the group),
    /// `item-end`, `template-end`, `list-end`; inputs:
    /// `integer`, `number`, `text`, `checkbox`, `select`, `json`.
    pub kind: &'static str,
    /// The input's name: `address.street`, `items[0].sku`.
    pub name: String,
    /// The element id.
    pub id: String,
    /// The schema's title or the humanised name.
    pub label: String,
    /// The name in the payload, shown beside the label.
    pub wire: String,
    /// Its description.
    pub help: String,
    /// Whether its object must have it (else marked optional).
    pub required: bool,
    /// Whether the browser must insist (a required field of the form
    /// itself, not of a row, variant or optional part).
    pub enforce: bool,
    /// The value shown (of a spare row: its index).
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
    /// A composite field's raw JSON textarea: its name and value.
    pub raw_name: String,
    /// See `raw_name`.
    pub raw_value: String,
    /// An optional struct's "include" checkbox, when it has one.
    pub include_name: String,
    /// Whether it is checked.
    pub included: bool,
    /// A list's placeholder for the index of a new row (`__i0__`).
    pub token: String,
    /// A list's next free row index.
    pub next: usize,
    /// A select choosing a variant.
    pub switch: bool,
    /// A variant's key, or the spare row of a list (`spare`).
    pub variant: String,
    /// The id of the select or checkbox that shows this part.
    pub of: String,
    /// A list's empty row for filling in without JavaScript (the script
    /// drops it and offers "Add").
    pub spare: bool,
    /// The spare row's hidden field saying which row it is (`tags.$spare`,
    /// its index the value): left empty, it is no item.
    pub spare_name: String,
}

pub(super) fn rows(
    root: &[Prop],
    values: &HashMap<String, String>,
    issues: &[FieldIssue],
    trace: &HashMap<String, String>,
) -> (Vec<Row>, Vec<String>) {
    let mut render = Render { values, messages: HashMap::new(), rows: Vec::new(), lists: 0, template: false };
    let mut top = Vec::new();
    for issue in issues {
        match place(trace, &issue.path) {
            Some((name, rel)) => {
                let message = if rel.is_empty() { issue.message.clone() } else { format!("{rel}: {}", issue.message) };
                render.messages.entry(name.to_owned()).or_default().push(message);
            }
            None => top.push(format!("{}: {}", issue.path, issue.message)),
        }
    }
    render.props(root, "", true);
    let mut rest: Vec<_> = render.messages.into_iter().collect();
    rest.sort();
    top.extend(rest.into_iter().flat_map(|(name, messages)| messages.into_iter().map(move |m| format!("{name}: {m}"))));
    (render.rows, top)
}

/// The field an issue at `path` belongs to, and the rest of the path when
/// it lies inside that field (raw JSON, a JSON editor).
fn place<'t>(trace: &'t HashMap<String, String>, path: &str) -> Option<(&'t str, String)> {
    if let Some(name) = trace.get(path) {
        return Some((name, String::new()));
    }
    let (_, name) = trace
        .iter()
        .filter(|(at, _)| path.strip_prefix(at.as_str()).is_some_and(|rest| rest.starts_with(['.', '['])))
        .max_by_key(|(at, _)| at.len())?;
    Some((name, path.strip_prefix("payload.").unwrap_or(path).to_owned()))
}

struct Render<'a> {
    values: &'a HashMap<String, String>,
    messages: HashMap<String, Vec<String>>,
    rows: Vec<Row>,
    /// Lists around the rows being made.
    lists: usize,
    /// Inside a new row's `<template>`: no values, no spare rows.
    template: bool,
}

fn id_of(name: &str) -> String {
    let safe: String =
        name.chars().map(|c| if c.is_alphanumeric() || c == '_' || c == '-' { c } else { '-' }).collect();
    format!("f-{safe}")
}

/// `unit_price_cents` → `Unit price cents`, `lastFour` → `Last four`.
fn humanise(name: &str) -> String {
    let mut words = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if c == '_' || c == '-' {
            words.push(' ');
            prev_lower = false;
        } else if c.is_uppercase() && prev_lower {
            words.push(' ');
            words.extend(c.to_lowercase());
            prev_lower = false;
        } else {
            words.push(c);
            prev_lower = c.is_lowercase() || c.is_ascii_digit();
        }
    }
    let mut chars = words.trim().chars();
    chars.next().map(|c| c.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

impl Render<'_> {
    fn value(&self, name: &str) -> String {
        if self.template { String::new() } else { self.values.get(name).cloned().unwrap_or_default() }
    }

    fn error(&mut self, name: &str) -> String {
        self.messages.remove(name).map(|m| m.join("; ")).unwrap_or_default()
    }

    fn row(&mut self, kind: &'static str, node: &Node, name: &str, label: String, wire: &str, enforce: bool) -> Row {
        Row {
            kind,
            name: name.to_owned(),
            id: id_of(name),
            label,
            wire: wire.to_owned(),
            help: node.description.clone(),
            required: node.required,
            enforce,
            value: self.value(name),
            error: self.error(name),
            ..Row::default()
        }
    }

    fn props(&mut self, props: &[Prop], prefix: &str, enforce: bool) {
        for prop in props {
            let label = prop.node.title.clone().unwrap_or_else(|| humanise(&prop.name));
            let enforce = enforce && prop.node.required;
            self.node(&prop.node, &join(prefix, &prop.name), label, &prop.name, enforce);
        }
    }

    /// A composite field's fieldset, with its raw JSON editor.
    fn open(&mut self, kind: &'static str, node: &Node, name: &str, label: String, wire: &str) -> Row {
        let mut row = self.row(kind, node, name, label, wire, false);
        row.raw_name = format!("{name}.$json");
        row.raw_value = self.value(&row.raw_name);
        let raw_error = self.error(&row.raw_name);
        if !raw_error.is_empty() {
            row.error = if row.error.is_empty() { raw_error } else { format!("{}; {raw_error}", row.error) };
        }
        row
    }

    fn node(&mut self, node: &Node, name: &str, label: String, wire: &str, enforce: bool) {
        match &node.input {
            Input::Null => {}
            Input::Object(props) => {
                let mut row = self.open("group", node, name, label, wire);
                let optional = !node.required;
                if optional {
                    row.include_name = format!("{name}.$include");
                    row.included = !self.value(&row.include_name).is_empty();
                }
                let (id, included) = (row.id.clone(), row.included);
                self.rows.push(row);
                if optional {
                    let body = Row {
                        kind: "body",
                        id: format!("{id}-body"),
                        of: format!("{id}-include"),
                        checked: included,
                        ..Row::default()
                    };
                    self.rows.push(body);
                }
                self.props(props, name, enforce);
                if optional {
                    self.rows.push(Row { kind: "end", ..Row::default() });
                }
                self.rows.push(Row { kind: "group-end", ..Row::default() });
            }
            Input::List(item) | Input::Map(item) => {
                let map = matches!(node.input, Input::Map(_));
                let mut row = self.open("list", node, name, label, wire);
                row.token = format!("__i{}__", self.lists);
                let indices = if self.template { Default::default() } else { super::decode::rows(self.values, name) };
                let spare = indices.last().map_or(0, |last| last + 1);
                row.next = spare;
                let token = row.token.clone();
                self.rows.push(row);
                self.lists += 1;
                for (n, index) in indices.iter().enumerate() {
                    self.item(item, map, &format!("{name}[{index}]"), format!("#{}", n + 1), false);
                }
                if !self.template {
                    self.item(item, map, &format!("{name}[{spare}]"), format!("#{}", indices.len() + 1), true);
                }
                let outer = std::mem::replace(&mut self.template, true);
                self.rows.push(Row { kind: "template", token: token.clone(), ..Row::default() });
                self.item(item, map, &format!("{name}[{token}]"), "new".to_owned(), false);
                self.rows.push(Row { kind: "template-end", ..Row::default() });
                self.template = outer;
                self.lists -= 1;
                self.rows.push(Row { kind: "list-end", id: id_of(name), ..Row::default() });
            }
            Input::Variants(variants) => {
                let row = self.open("group", node, name, label, wire);
                self.rows.push(row);
                let select_name = format!("{name}.$variant");
                let mut select = self.row("select", node, &select_name, "Variant".to_owned(), "", enforce);
                select.help = String::new();
                select.switch = true;
                select.options.push((String::new(), "—".to_owned(), select.value.is_empty()));
                for variant in variants {
                    select.options.push((variant.key.clone(), variant.label.clone(), variant.key == select.value));
                }
                let of = select.id.clone();
                self.rows.push(select);
                for variant in variants {
                    let Some(body) = &variant.body else { continue };
                    if matches!(body.input, Input::Null) || matches!(&body.input, Input::Object(p) if p.is_empty()) {
                        continue;
                    }
                    let body_name = join(name, &variant.key);
                    self.rows.push(Row {
                        kind: "variant",
                        id: id_of(&body_name),
                        label: variant.label.clone(),
                        variant: variant.key.clone(),
                        of: of.clone(),
                        ..Row::default()
                    });
                    match &body.input {
                        Input::Object(props) => self.props(props, &body_name, false),
                        _ => self.node(body, &body_name, variant.key.clone(), "", false),
                    }
                    self.rows.push(Row { kind: "end", ..Row::default() });
                }
                self.rows.push(Row { kind: "group-end", ..Row::default() });
            }
            input => {
                let kind = match input {
                    Input::Integer { .. } => "integer",
                    Input::Number { .. } => "number",
                    Input::Text => "text",
                    Input::Checkbox => "checkbox",
                    Input::Select(_) => "select",
                    _ => "json",
                };
                let mut row = self.row(kind, node, name, label, wire, enforce);
                match input {
                    Input::Integer { min, max } | Input::Number { min, max } => {
                        row.step = if kind == "integer" { "1" } else { "any" };
                        row.min = min.as_ref().map(ToString::to_string).unwrap_or_default();
                        row.max = max.as_ref().map(ToString::to_string).unwrap_or_default();
                    }
                    Input::Checkbox => row.checked = row.value == "true",
                    Input::Select(choices) => {
                        if !enforce {
                            row.options.push((String::new(), "—".to_owned(), row.value.is_empty()));
                        }
                        for (value, label) in choices {
                            row.options.push((value.clone(), label.clone(), *value == row.value));
                        }
                    }
                    Input::Json => row.placeholder = "JSON, e.g. [] or {}".to_owned(),
                    _ => {}
                }
                self.rows.push(row);
            }
        }
    }

    /// One row of a list (the item's fields) or of a map (key and value).
    fn item(&mut self, item: &Node, map: bool, name: &str, label: String, spare: bool) {
        // `-row`: a list of scalars has an input of the same name.
        let id = format!("{}row", id_of(name));
        let mut row = Row { kind: "item", name: name.to_owned(), id, label, spare, ..Row::default() };
        row.error = self.error(name);
        if let Some((list, index)) = name.rsplit_once('[').filter(|_| spare) {
            row.spare_name = join(list, super::decode::SPARE);
            row.value = index.trim_end_matches(']').to_owned();
        }
        self.rows.push(row);
        if map {
            let key =
                Node { title: None, description: String::new(), required: true, default: None, input: Input::Text };
            self.node(&key, &format!("{name}.key"), "Key".to_owned(), "", false);
            self.node(item, &format!("{name}.value"), "Value".to_owned(), "", false);
        } else if let Input::Object(props) = &item.input {
            self.props(props, name, false);
        } else {
            self.node(item, name, "Value".to_owned(), "", false);
        }
        self.rows.push(Row { kind: "item-end", ..Row::default() });
    }
}
