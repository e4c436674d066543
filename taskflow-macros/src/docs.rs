//! Reads a function's doc comment: the description (its first paragraph) and
//! the argument descriptions of its rustdoc `# Arguments` list.

use syn::{Attribute, Expr, ExprLit, Lit, Meta};

/// What the doc comment says about the task.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct DocComment {
    /// The first paragraph, its lines joined by spaces.
    pub(crate) summary: Option<String>,
    /// `(argument, description)` pairs from the `# Arguments` section.
    pub(crate) arguments: Vec<(String, String)>,
}

/// The doc comment's text, one entry per line, leading space removed.
fn doc_lines(attrs: &[Attribute]) -> Vec<String> {
    let mut lines = Vec::new();
    for attr in attrs {
        let Meta::NameValue(nv) = &attr.meta else { continue };
        if !nv.path.is_ident("doc") {
            continue;
        }
        if let Expr::Lit(ExprLit { lit: Lit::Str(s), .. }) = &nv.value {
            // `split`, not `lines`: an empty `///` line is `#[doc = ""]`, and
            // it is the paragraph break that ends the summary.
            for line in s.value().split('\n') {
                lines.push(line.strip_prefix(' ').unwrap_or(line).trim_end().to_owned());
            }
        }
    }
    lines
}

/// Parses the doc attributes of a function.
pub(crate) fn parse(attrs: &[Attribute]) -> DocComment {
    parse_lines(&doc_lines(attrs))
}

fn parse_lines(lines: &[String]) -> DocComment {
    let mut doc = DocComment::default();
    let mut summary: Vec<&str> = Vec::new();
    let mut in_summary = true;
    let mut in_arguments = false;
    for line in lines {
        let trimmed = line.trim();
        if let Some(heading) = trimmed.strip_prefix('#') {
            in_summary = false;
            in_arguments = heading.trim_start_matches('#').trim().eq_ignore_ascii_case("arguments");
            continue;
        }
        if in_summary {
            if trimmed.is_empty() {
                in_summary = summary.is_empty();
            } else {
                summary.push(trimmed);
            }
            continue;
        }
        if in_arguments {
            if let Some((name, text)) = argument_item(trimmed) {
                doc.arguments.push((name, text));
            } else if !trimmed.is_empty() {
                // A continuation line of the previous item.
                if let Some((_, text)) = doc.arguments.last_mut() {
                    text.push(' ');
                    text.push_str(trimmed);
                }
            }
        }
    }
    if !summary.is_empty() {
        doc.summary = Some(summary.join(" "));
    }
    doc
}

/// Parses `* `name` - text`, `- name: text` and the like.
fn argument_item(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix('*').or_else(|| line.strip_prefix('-'))?.trim_start();
    let (name, rest) = if let Some(quoted) = rest.strip_prefix('`') {
        let end = quoted.find('`')?;
        (&quoted[..end], &quoted[end + 1..])
    } else {
        let end = rest.find(|c: char| !(c.is_alphanumeric() || c == '_'))?;
        (&rest[..end], &rest[end..])
    };
    let name = name.trim().trim_start_matches("r#");
    if name.is_empty() {
        return None;
    }
    let text = rest.trim_start().trim_start_matches(['-', ':', '—', '–']).trim();
    Some((name.to_owned(), text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(text: &str) -> Vec<String> {
        text.lines().map(str::to_owned).collect()
    }

    #[test]
    fn summary_is_first_paragraph_and_arguments_are_listed() {
        let doc = parse_lines(&lines(
            "Add two numbers\ntogether\n\nMore text.\n\n# Arguments\n* `a` - the first addend\n* `b`: the second\n  addend\n\n# Examples\n* `c` - not an argument",
        ));
        assert_eq!(doc.summary.as_deref(), Some("Add two numbers together"));
        assert_eq!(
            doc.arguments,
            vec![("a".to_owned(), "the first addend".to_owned()), ("b".to_owned(), "the second addend".to_owned()),]
        );
    }

    #[test]
    fn an_empty_doc_attribute_ends_the_summary() {
        let item: syn::ItemFn = syn::parse_quote! {
            /// First paragraph
            ///
            /// Second paragraph
            fn f() {}
        };
        assert_eq!(parse(&item.attrs).summary.as_deref(), Some("First paragraph"));
    }

    #[test]
    fn empty_doc_has_no_summary() {
        assert_eq!(parse_lines(&[]), DocComment::default());
        let doc = parse_lines(&lines("\n\nLate start\n"));
        assert_eq!(doc.summary.as_deref(), Some("Late start"));
    }

    #[test]
    fn unquoted_argument_names() {
        let doc = parse_lines(&lines("# Arguments\n- seconds - how long\n"));
        assert_eq!(doc.arguments, vec![("seconds".to_owned(), "how long".to_owned())]);
    }
}
