//! Parses the options of `#[task(...)]`, each at most once, with errors that
//! list what is accepted.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Expr, Ident, LitInt, LitStr};

use crate::check::Errors;

/// The options every `#[task]` accepts, listed in "unknown option" errors.
const OPTIONS: &str =
    "`title`, `description`, `timeout`, `retries`, `retry_delay`, `concurrency`, `executor`, `tags`, `defaults`";

/// The executors an option may name.
const EXECUTORS: &[&str] = &["thread", "process", "docker"];

/// The parsed options; `None` means "not given".
#[derive(Default)]
pub(crate) struct TaskAttr {
    pub(crate) title: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) timeout_ms: Option<u64>,
    pub(crate) retries: Option<u32>,
    pub(crate) retry_delay_ms: Option<u64>,
    pub(crate) concurrency: Option<u32>,
    pub(crate) executor: Option<String>,
    pub(crate) tags: Option<Vec<String>>,
    /// `defaults(name = value, ...)`: argument names with JSON-like values.
    pub(crate) defaults: Option<Vec<(Ident, Expr)>>,
}

/// Stores `value` in `slot` unless the option was already given.
fn set_once<T>(errors: &mut Errors, slot: &mut Option<T>, name: &str, span: Span, value: T) {
    if slot.is_some() {
        errors.push(syn::Error::new(span, format!("option `{name}` is given twice; keep one")));
    } else {
        *slot = Some(value);
    }
}

impl TaskAttr {
    /// Parses the attribute's arguments, recording every problem in `errors`.
    pub(crate) fn parse(tokens: TokenStream, errors: &mut Errors) -> TaskAttr {
        let mut attr = TaskAttr::default();
        let parser = syn::meta::parser(|meta| {
            attr.parse_one(&meta, errors);
            Ok(())
        });
        if let Err(error) = parser.parse2(tokens) {
            errors.push(error);
        }
        attr
    }

    fn parse_one(&mut self, meta: &ParseNestedMeta<'_>, errors: &mut Errors) {
        let span = meta.path.span();
        let Some(name) = meta.path.get_ident().map(Ident::to_string) else {
            errors.push(meta.error(format!("unknown option; expected one of {OPTIONS}")));
            skip_rest(meta);
            return;
        };
        let result = match name.as_str() {
            "title" => parse_str(meta).and_then(|(title, lit)| {
                check_title(&title, &lit)?;
                set_once(errors, &mut self.title, "title", span, title);
                Ok(())
            }),
            "description" => {
                parse_str(meta).map(|(value, _)| set_once(errors, &mut self.description, "description", span, value))
            }
            "timeout" => parse_duration(meta).and_then(|(ms, lit)| {
                if ms == 0 {
                    return Err(syn::Error::new(lit.span(), "a timeout must be longer than zero"));
                }
                set_once(errors, &mut self.timeout_ms, "timeout", span, ms);
                Ok(())
            }),
            "retries" => parse_count(meta, 0, "`retries` takes a whole number of at least 0, e.g. `retries = 3`")
                .map(|n| set_once(errors, &mut self.retries, "retries", span, n)),
            "retry_delay" => {
                parse_duration(meta).map(|(ms, _)| set_once(errors, &mut self.retry_delay_ms, "retry_delay", span, ms))
            }
            "concurrency" => parse_count(
                meta,
                1,
                "`concurrency` takes how many runs of this task may run at once, at least 1, e.g. `concurrency = 4`",
            )
            .map(|n| set_once(errors, &mut self.concurrency, "concurrency", span, n)),
            "executor" => parse_str(meta).and_then(|(value, lit)| {
                if !EXECUTORS.contains(&value.as_str()) {
                    return Err(syn::Error::new(
                        lit.span(),
                        format!("unknown executor `{value}`; expected one of \"thread\", \"process\", \"docker\""),
                    ));
                }
                set_once(errors, &mut self.executor, "executor", span, value);
                Ok(())
            }),
            "tags" => parse_tags(meta).map(|tags| set_once(errors, &mut self.tags, "tags", span, tags)),
            "defaults" => {
                parse_defaults(meta).map(|defaults| set_once(errors, &mut self.defaults, "defaults", span, defaults))
            }
            _ => Err(meta.error(format!("unknown option `{name}`; expected one of {OPTIONS}"))),
        };
        if let Err(error) = result {
            errors.push(error);
            skip_rest(meta);
        }
    }
}

/// Skips what is left of a malformed option, up to the next `,`, so the
/// options after it still parse and no follow-on error appears.
fn skip_rest(meta: &ParseNestedMeta<'_>) {
    while !meta.input.is_empty() && !meta.input.peek(syn::Token![,]) {
        if meta.input.parse::<proc_macro2::TokenTree>().is_err() {
            break;
        }
    }
}

/// Parses `name = "string"`.
fn parse_str(meta: &ParseNestedMeta<'_>) -> syn::Result<(String, LitStr)> {
    let name = meta.path.get_ident().map(Ident::to_string).unwrap_or_default();
    let hint = format!("`{name}` takes a string, e.g. `{name} = \"...\"`");
    let value = meta.value().map_err(|_| syn::Error::new(meta.path.span(), &hint))?;
    let lit: LitStr = value.parse().map_err(|e| syn::Error::new(e.span(), &hint))?;
    Ok((lit.value(), lit))
}

/// Parses `name = "30s"` into milliseconds, with the literal for errors.
fn parse_duration(meta: &ParseNestedMeta<'_>) -> syn::Result<(u64, LitStr)> {
    let (text, lit) = parse_str(meta)?;
    match parse_duration_ms(&text) {
        Some(ms) => Ok((ms, lit)),
        None => Err(syn::Error::new(
            lit.span(),
            format!("`{text}` is not a duration; write one such as \"30s\", \"5m\", \"1h30m\" or \"500ms\""),
        )),
    }
}

/// Parses `name = N` with `N >= min`; `hint` says what to write instead.
fn parse_count(meta: &ParseNestedMeta<'_>, min: u32, hint: &str) -> syn::Result<u32> {
    // A missing `= N` is reported at the option's name, not the next token.
    let value = meta.value().map_err(|_| syn::Error::new(meta.path.span(), hint))?;
    let lit: LitInt = value.parse().map_err(|e| syn::Error::new(e.span(), hint))?;
    match lit.base10_parse::<u32>() {
        Ok(n) if n >= min => Ok(n),
        _ => Err(syn::Error::new(lit.span(), hint)),
    }
}

/// Parses `tags = ["a", "b"]` or `tags("a", "b")`.
fn parse_tags(meta: &ParseNestedMeta<'_>) -> syn::Result<Vec<String>> {
    let hint = "`tags` takes a list of strings, e.g. `tags = [\"math\", \"demo\"]`";
    let list = if meta.input.peek(syn::Token![=]) {
        let array: syn::ExprArray = meta.value()?.parse().map_err(|e| syn::Error::new(e.span(), hint))?;
        array.elems.into_iter().collect::<Vec<_>>()
    } else if meta.input.peek(syn::token::Paren) {
        let content;
        syn::parenthesized!(content in meta.input);
        content.parse_terminated(Expr::parse, syn::Token![,])?.into_iter().collect()
    } else {
        return Err(meta.error(hint));
    };
    list.into_iter()
        .map(|expr| match &expr {
            Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) if !s.value().is_empty() => Ok(s.value()),
            _ => Err(syn::Error::new_spanned(expr, hint)),
        })
        .collect()
}

use syn::parse::Parse;

/// Parses `defaults(name = value, ...)`.
fn parse_defaults(meta: &ParseNestedMeta<'_>) -> syn::Result<Vec<(Ident, Expr)>> {
    let mut defaults = Vec::new();
    meta.parse_nested_meta(|inner| {
        let ident = inner.path.get_ident().cloned().ok_or_else(|| {
            inner.error("`defaults` takes `argument = value` pairs, e.g. `defaults(b = 3, name = \"x\")`")
        })?;
        let value: Expr = inner.value()?.parse()?;
        defaults.push((ident, value));
        Ok(())
    })?;
    Ok(defaults)
}

/// Titles appear in URLs, CLI arguments and image names: keep them simple.
fn check_title(title: &str, lit: &LitStr) -> syn::Result<()> {
    let mut chars = title.chars();
    let valid = title.len() <= 128
        && chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if valid {
        Ok(())
    } else {
        Err(syn::Error::new(
            lit.span(),
            "a title starts with a letter or `_` and holds only letters, digits, `_`, `-` and `.` (at most 128)",
        ))
    }
}

/// Parses durations such as `30s`, `5m`, `1h30m`, `500ms`, `2d` into
/// milliseconds.
pub(crate) fn parse_duration_ms(text: &str) -> Option<u64> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
        if digits == 0 {
            return None;
        }
        let number: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest.find(|c: char| c.is_ascii_digit()).unwrap_or(rest.len());
        let factor = match rest[..unit_len].trim() {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return None,
        };
        total = total.checked_add(number.checked_mul(factor)?)?;
        rest = &rest[unit_len..];
    }
    Some(total)
}

#[cfg(test)]
mod tests {
    use super::parse_duration_ms;

    #[test]
    fn durations() {
        assert_eq!(parse_duration_ms("30s"), Some(30_000));
        assert_eq!(parse_duration_ms("1h30m"), Some(5_400_000));
        assert_eq!(parse_duration_ms("500ms"), Some(500));
        assert_eq!(parse_duration_ms("2d"), Some(172_800_000));
        assert_eq!(parse_duration_ms("10"), None);
        assert_eq!(parse_duration_ms("m"), None);
        assert_eq!(parse_duration_ms("5 minutes"), None);
        assert_eq!(parse_duration_ms(""), None);
    }
}
