//! The model of a task function: what `expand` needs, read once from `syn`.
//!
//! Building it reports nothing; `valid` checks the same function afterwards
//! and reports every unsupported shape at its own span.

use proc_macro2::Span;
use quote::ToTokens;
use syn::{FnArg, GenericArgument, Ident, ItemFn, Pat, PathArguments, Receiver, ReturnType, Type};

use crate::attr::TaskAttr;
use crate::docs::{self, DocComment};

/// A function accepted by `#[task]`.
pub(crate) struct TaskFn {
    /// The user's function, emitted unchanged.
    pub(crate) item: ItemFn,
    pub(crate) attr: TaskAttr,
    pub(crate) doc: DocComment,
    /// Whether the first parameter is `&TaskContext`.
    pub(crate) takes_context: bool,
    /// The payload's arguments (the context excluded), in order.
    pub(crate) args: Vec<Arg>,
    pub(crate) output: Output,
    /// `name(a: i64, b: i64) -> i64`, for listings.
    pub(crate) signature: String,
}

/// One argument of the payload.
pub(crate) struct Arg {
    pub(crate) ident: syn::Ident,
    pub(crate) ty: Type,
    /// `Option<T>`: optional in the schema, `None` when absent.
    pub(crate) optional: bool,
}

/// What the function returns.
pub(crate) enum Output {
    /// Nothing (`()`): the run's result is `null`.
    Unit,
    /// A value that becomes the run's result.
    Value(Type),
    /// `Result<T, E>` (or an alias such as `io::Result<T>`): `Ok` becomes the
    /// result, `Err` fails the run with its `Display` text.
    Result { ok: Type },
}

impl TaskFn {
    /// Builds the model. It reports nothing: inputs that cannot be payload
    /// arguments (receivers, patterns, misplaced contexts) are simply not
    /// arguments, and `valid::validate` says what is wrong with them.
    pub(crate) fn new(item: ItemFn, attr: TaskAttr) -> TaskFn {
        let mut takes_context = false;
        let mut args = Vec::new();
        for (index, input) in item.sig.inputs.iter().enumerate() {
            match Param::of(index, input) {
                Param::Context { place: ContextPlace::First, .. } => takes_context = true,
                Param::Arg { ident, ty } => {
                    args.push(Arg { optional: is_option(ty), ident: ident.clone(), ty: ty.clone() })
                }
                Param::Receiver(_) | Param::Context { .. } | Param::Pattern(_) => {}
            }
        }
        let output = match &item.sig.output {
            ReturnType::Default => Output::Unit,
            ReturnType::Type(_, ty) => match &**ty {
                Type::Tuple(t) if t.elems.is_empty() => Output::Unit,
                ty => match result_ok_type(ty) {
                    Some(ok) => Output::Result { ok },
                    None => Output::Value(ty.clone()),
                },
            },
        };
        let doc = docs::parse(&item.attrs);
        let signature = signature(&item, &args, &output);
        TaskFn { item, attr, doc, takes_context, args, output, signature }
    }

    /// The title: the `title` option or the function's name.
    pub(crate) fn title(&self) -> String {
        match &self.attr.title {
            Some(title) => title.clone(),
            None => self.item.sig.ident.to_string().trim_start_matches("r#").to_owned(),
        }
    }

    /// The span of the function's name, for generated items.
    pub(crate) fn name_span(&self) -> Span {
        self.item.sig.ident.span()
    }
}

/// What one parameter of the function is to the task; shared by the model,
/// which keeps the arguments, and `valid`, which reports the rest.
pub(crate) enum Param<'a> {
    /// `self`, `&self`, …: the function is a method.
    Receiver(&'a Receiver),
    /// A `TaskContext` parameter, whatever its pattern, where it is and how it
    /// is taken.
    Context { ty: &'a Type, place: ContextPlace },
    /// A payload argument: a plain name and its type.
    Arg { ident: &'a Ident, ty: &'a Type },
    /// Any other pattern (`(a, b)`, `_`, `ref x`, …): not an argument.
    Pattern(&'a Pat),
}

/// Where and how a `TaskContext` parameter is taken.
pub(crate) enum ContextPlace {
    /// `&TaskContext` as the first parameter: the one accepted shape.
    First,
    /// `&mut TaskContext`, wherever it is.
    Mut,
    /// `&TaskContext` after another parameter.
    NotFirst,
    /// `TaskContext` by value.
    ByValue,
}

impl<'a> Param<'a> {
    /// Classifies the parameter at `index` of the function's inputs.
    pub(crate) fn of(index: usize, input: &'a FnArg) -> Param<'a> {
        let typed = match input {
            FnArg::Receiver(receiver) => return Param::Receiver(receiver),
            FnArg::Typed(typed) => typed,
        };
        let ty = &*typed.ty;
        if is_context(ty) {
            let place = match ty {
                Type::Reference(r) if r.mutability.is_some() => ContextPlace::Mut,
                Type::Reference(_) if index == 0 => ContextPlace::First,
                Type::Reference(_) => ContextPlace::NotFirst,
                _ => ContextPlace::ByValue,
            };
            return Param::Context { ty, place };
        }
        match &*typed.pat {
            Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => Param::Arg { ident: &pat.ident, ty },
            pat => Param::Pattern(pat),
        }
    }
}

/// `&TaskContext`, `&taskflow::TaskContext`, or `TaskContext` by value.
fn is_context(ty: &Type) -> bool {
    let ty = match ty {
        Type::Reference(r) => &*r.elem,
        ty => ty,
    };
    matches!(ty, Type::Path(p) if p.qself.is_none() && p.path.segments.last().is_some_and(|s| s.ident == "TaskContext"))
}

fn last_segment(ty: &Type) -> Option<&syn::PathSegment> {
    match ty {
        Type::Path(p) if p.qself.is_none() => p.path.segments.last(),
        _ => None,
    }
}

fn is_option(ty: &Type) -> bool {
    last_segment(ty).is_some_and(|s| s.ident == "Option" && matches!(s.arguments, PathArguments::AngleBracketed(_)))
}

/// The `T` of `Result<T, E>` or of an alias `Result<T>`.
fn result_ok_type(ty: &Type) -> Option<Type> {
    let segment = last_segment(ty)?;
    if segment.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &segment.arguments else { return None };
    args.args.iter().find_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty.clone()),
        _ => None,
    })
}

/// Tokens of a type as a person writes them: `Vec<i64>`, not `Vec < i64 >`.
pub(crate) fn type_string(ty: &impl ToTokens) -> String {
    let raw = ty.to_token_stream().to_string();
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ' ' {
            let prev = out.chars().last();
            let next = chars.peek().copied();
            let glue = matches!(prev, Some('<' | '&' | ':' | '(' | '['))
                || matches!(next, Some('<' | '>' | ',' | ':' | ';' | ')' | ']'));
            let keep_after_colon = prev == Some(':') && !out.ends_with("::");
            if !glue || keep_after_colon {
                out.push(' ');
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn signature(item: &ItemFn, args: &[Arg], output: &Output) -> String {
    let name = item.sig.ident.to_string();
    let args: Vec<String> = args.iter().map(|a| format!("{}: {}", a.ident, type_string(&a.ty))).collect();
    let ret = match (&item.sig.output, output) {
        (_, Output::Unit) | (ReturnType::Default, _) => String::new(),
        (ReturnType::Type(_, ty), _) => format!(" -> {}", type_string(ty)),
    };
    let asyncness = if item.sig.asyncness.is_some() { "async " } else { "" };
    format!("{asyncness}{name}({}){ret}", args.join(", "))
}

#[cfg(test)]
mod tests {
    use super::{TaskFn, type_string};
    use crate::attr::TaskAttr;

    #[test]
    fn types_read_naturally() {
        let ty: syn::Type = syn::parse_quote!(std::collections::HashMap<String, Vec<Option<i64>>>);
        assert_eq!(type_string(&ty), "std::collections::HashMap<String, Vec<Option<i64>>>");
        let ty: syn::Type = syn::parse_quote!((i64, [u8; 4]));
        assert_eq!(type_string(&ty), "(i64, [u8; 4])");
    }

    #[test]
    fn rejected_inputs_are_not_arguments() {
        let item = syn::parse_quote!(
            fn f(ctx: &mut TaskContext, _: i64, a: i64) {}
        );
        let task = TaskFn::new(item, TaskAttr::default());
        assert!(!task.takes_context);
        assert_eq!(task.args.iter().map(|a| a.ident.to_string()).collect::<Vec<_>>(), ["a"]);
    }
}
