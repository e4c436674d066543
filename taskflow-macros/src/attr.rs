//! Parses the options of `#[task(...)]`, each at most once, with errors that
//! list what is accepted.

use proc_macro2::{Span, TokenStream};
use syn::meta::ParseNestedMeta;
use syn::parse::Parser;
use syn::spanned::Spanned;
use syn::{Expr, Ident, LitInt, LitStr};

use crate::errors::Errors;

/// The options every `#[task]` accepts, listed in "unknown option" errors.
const OPTIONS: &str = "`title`, `description`, `timeout`, `retries`, `retry_delay`, `concurrency`, `executor`, `queue`, `tags`, `defaults`, `image`, `network`, `memory`, `cpus`, `pids`, `env`";

/// The most processes a container may be allowed (`pids`).
const MAX_PIDS: u32 = 4096;

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
    /// `queue = "gpu"`: the queue the task's runs wait in.
    pub(crate) queue: Option<String>,
    /// `defaults(name = value, ...)`: argument names with JSON-like values.
    pub(crate) defaults: Option<Vec<(Ident, Expr)>>,
    /// Docker: the base image instead of `scratch`.
    pub(crate) image: Option<String>,
    /// Docker: whether the container gets a network.
    pub(crate) network: Option<bool>,
    /// Docker: the memory limit in bytes.
    pub(crate) memory: Option<u64>,
    /// Docker: the CPU limit in billionths of a CPU.
    pub(crate) nano_cpus: Option<u64>,
    /// Docker: the process limit.
    pub(crate) pids: Option<u32>,
    /// Docker: the environment variables passed from the server.
    pub(crate) env: Option<Vec<String>>,
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
            "queue" => parse_str(meta).and_then(|(queue, lit)| {
                let plain = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
                if queue.is_empty() || queue.len() > 64 || !queue.chars().all(plain) {
                    return Err(syn::Error::new(
                        lit.span(),
                        "`queue` names a queue: 1 to 64 letters, digits, `-`, `_` or `.`, e.g. `queue = \"gpu\"`",
                    ));
                }
                set_once(errors, &mut self.queue, "queue", span, queue);
                Ok(())
            }),
            "defaults" => {
                parse_defaults(meta).map(|defaults| set_once(errors, &mut self.defaults, "defaults", span, defaults))
            }
            "image" => parse_str(meta).and_then(|(image, lit)| {
                if image.is_empty() || image.chars().any(|c| c.is_whitespace() || c.is_ascii_uppercase()) {
                    return Err(syn::Error::new(
                        lit.span(),
                        "`image` names a local Docker image, lowercase and without spaces, e.g. `image = \"debian:bookworm-slim\"`",
                    ));
                }
                set_once(errors, &mut self.image, "image", span, image);
                Ok(())
            }),
            "network" => parse_bool(meta).map(|on| set_once(errors, &mut self.network, "network", span, on)),
            "memory" => parse_str(meta).and_then(|(text, lit)| match parse_bytes(&text) {
                Some(bytes) if bytes >= 6 * 1024 * 1024 => {
                    set_once(errors, &mut self.memory, "memory", span, bytes);
                    Ok(())
                }
                Some(_) => Err(syn::Error::new(lit.span(), "Docker needs a memory limit of at least 6 MiB")),
                None => Err(syn::Error::new(
                    lit.span(),
                    format!("`{text}` is not a size; write one such as \"256MiB\", \"1GiB\" or \"512MB\""),
                )),
            }),
            "cpus" => parse_cpus(meta).map(|nano| set_once(errors, &mut self.nano_cpus, "cpus", span, nano)),
            "pids" => parse_count(
                meta,
                1,
                "`pids` takes how many processes the container may hold, from 1 to 4096, e.g. `pids = 128`",
            )
            .and_then(|n| {
                if n > MAX_PIDS {
                    return Err(meta.error(format!("`pids` is at most {MAX_PIDS}")));
                }
                set_once(errors, &mut self.pids, "pids", span, n);
                Ok(())
            }),
            "env" => parse_env(meta).map(|names| set_once(errors, &mut self.env, "env", span, names)),
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

/// Parses `name = true` or `name = false`.
fn parse_bool(meta: &ParseNestedMeta<'_>) -> syn::Result<bool> {
    let name = meta.path.get_ident().map(Ident::to_string).unwrap_or_default();
    let hint = format!("`{name}` takes `true` or `false`, e.g. `{name} = true`");
    let value = meta.value().map_err(|_| syn::Error::new(meta.path.span(), &hint))?;
    let lit: syn::LitBool = value.parse().map_err(|e| syn::Error::new(e.span(), &hint))?;
    Ok(lit.value)
}

/// Parses `cpus = 1.5` (or `cpus = 2`) into billionths of a CPU.
fn parse_cpus(meta: &ParseNestedMeta<'_>) -> syn::Result<u64> {
    let hint = "`cpus` takes how many CPUs the container may use, more than 0, e.g. `cpus = 1.0` or `cpus = 0.5`";
    let value = meta.value().map_err(|_| syn::Error::new(meta.path.span(), hint))?;
    let lit: syn::Lit = value.parse().map_err(|e| syn::Error::new(e.span(), hint))?;
    let cpus = match &lit {
        syn::Lit::Float(f) => f.base10_parse::<f64>().ok(),
        syn::Lit::Int(i) => i.base10_parse::<u32>().ok().map(f64::from),
        _ => None,
    };
    match cpus {
        Some(cpus) if cpus > 0.0 && cpus <= 1024.0 => Ok((cpus * 1e9).round() as u64),
        _ => Err(syn::Error::new(lit.span(), hint)),
    }
}

/// Parses `env = ["NAME", ...]`: names of the server's environment variables.
fn parse_env(meta: &ParseNestedMeta<'_>) -> syn::Result<Vec<String>> {
    let hint = "`env` takes the names of environment variables to pass from the server, e.g. `env = [\"API_TOKEN\"]`";
    let value = meta.value().map_err(|_| syn::Error::new(meta.path.span(), hint))?;
    let array: syn::ExprArray = value.parse().map_err(|e| syn::Error::new(e.span(), hint))?;
    array
        .elems
        .into_iter()
        .map(|expr| match &expr {
            Expr::Lit(syn::ExprLit { lit: syn::Lit::Str(s), .. }) => {
                let name = s.value();
                let mut chars = name.chars();
                let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                    && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
                if valid {
                    Ok(name)
                } else {
                    Err(syn::Error::new(
                        s.span(),
                        format!("`{name}` is not an environment variable name; use letters, digits and `_`, not starting with a digit"),
                    ))
                }
            }
            _ => Err(syn::Error::new_spanned(expr, hint)),
        })
        .collect()
}

/// Parses sizes such as `256MiB`, `1GiB`, `512MB`, `64k` into bytes.
pub(crate) fn parse_bytes(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
    if digits == 0 {
        return None;
    }
    let number: u64 = text[..digits].parse().ok()?;
    let factor: u64 = match text[digits..].trim() {
        "" | "B" => 1,
        "KiB" | "k" | "K" => 1 << 10,
        "MiB" | "m" | "M" => 1 << 20,
        "GiB" | "g" | "G" => 1 << 30,
        "KB" => 1_000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        _ => return None,
    };
    number.checked_mul(factor)
}

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
    use super::{parse_bytes, parse_duration_ms};

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("256MiB"), Some(256 << 20));
        assert_eq!(parse_bytes("1GiB"), Some(1 << 30));
        assert_eq!(parse_bytes("512MB"), Some(512_000_000));
        assert_eq!(parse_bytes("64 k"), Some(64 << 10));
        assert_eq!(parse_bytes("lots"), None);
        assert_eq!(parse_bytes("1TiB"), None);
    }

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
