//! The model of a task function: what `expand` needs, read once from `syn`
//! with every unsupported shape reported at its own span.

use proc_macro2::Span;
use quote::ToTokens;
use syn::{FnArg, GenericArgument, ItemFn, Pat, PathArguments, ReturnType, Type};

use crate::attr::TaskAttr;
use crate::docs::{self, DocComment};
use crate::errors::Errors;

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
    /// Builds the model, recording every problem in `errors`.
    pub(crate) fn new(item: ItemFn, attr: TaskAttr, errors: &mut Errors) -> TaskFn {
        let sig = &item.sig;
        if let Some(unsafety) = &sig.unsafety {
            errors.error_spanned_by(unsafety, "a task cannot be `unsafe fn`: wrap the unsafe code in a safe function");
        }
        if let Some(abi) = &sig.abi {
            errors.error_spanned_by(abi, "a task cannot declare an ABI: remove `extern`");
        }
        if let Some(variadic) = &sig.variadic {
            errors.error_spanned_by(variadic, "a task cannot be variadic");
        }
        if !sig.generics.params.is_empty() {
            errors.error_spanned_by(
                &sig.generics,
                "a task cannot be generic: its payload schema must be known, so use concrete argument types",
            );
        } else if let Some(where_clause) = &sig.generics.where_clause {
            errors.error_spanned_by(where_clause, "a task cannot have a `where` clause: use concrete argument types");
        }

        let mut takes_context = false;
        let mut args = Vec::new();
        for (index, input) in sig.inputs.iter().enumerate() {
            let typed = match input {
                FnArg::Receiver(receiver) => {
                    errors.error_spanned_by(
                        receiver,
                        "#[task] works on free functions, not methods: move the body into a free `fn` that takes what it needs as arguments",
                    );
                    continue;
                }
                FnArg::Typed(typed) => typed,
            };
            if is_context(&typed.ty) {
                match &*typed.ty {
                    Type::Reference(r) if r.mutability.is_some() => {
                        errors.error_spanned_by(&typed.ty, "take the context as `&TaskContext`, not `&mut TaskContext`")
                    }
                    Type::Reference(_) if index == 0 => takes_context = true,
                    Type::Reference(_) => errors.error_spanned_by(
                        &typed.ty,
                        "`&TaskContext` must be the first parameter: move it before the task's arguments",
                    ),
                    _ => errors.error_spanned_by(&typed.ty, "take the context by reference: `ctx: &TaskContext`"),
                }
                continue;
            }
            let ident = match &*typed.pat {
                Pat::Ident(pat) if pat.by_ref.is_none() && pat.subpat.is_none() => pat.ident.clone(),
                pat => {
                    errors.error_spanned_by(
                        pat,
                        "bind each task argument to a plain name (e.g. `point: Point`) and destructure it in the body: the name is the payload's field",
                    );
                    continue;
                }
            };
            check_arg_type(&typed.ty, errors);
            args.push(Arg { optional: is_option(&typed.ty), ident, ty: (*typed.ty).clone() });
        }

        let output = match &sig.output {
            ReturnType::Default => Output::Unit,
            ReturnType::Type(_, ty) => {
                check_output_type(ty, errors);
                match &**ty {
                    Type::Tuple(t) if t.elems.is_empty() => Output::Unit,
                    ty => match result_ok_type(ty) {
                        Some(ok) => Output::Result { ok },
                        None => Output::Value(ty.clone()),
                    },
                }
            }
        };

        let doc = docs::parse(&item.attrs);
        if let Some(defaults) = &attr.defaults {
            for (name, _) in defaults {
                if !args.iter().any(|arg| arg.ident == *name) {
                    let known: Vec<String> = args.iter().map(|a| format!("`{}`", a.ident)).collect();
                    errors.error_spanned_by(
                        name,
                        format!(
                            "`{name}` is not an argument of this task; arguments: {}",
                            if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                        ),
                    );
                }
            }
        }
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

/// Arguments are deserialized from the payload, so they must be owned,
/// concrete types.
fn check_arg_type(ty: &Type, errors: &mut Errors) {
    match ty {
        Type::Reference(r) => {
            let advice = match &*r.elem {
                Type::Path(p) if p.path.is_ident("str") => "take `String` instead of `&str`".to_owned(),
                Type::Slice(s) => format!("take `Vec<{}>` instead of a slice", type_string(&s.elem)),
                Type::Path(p) if p.path.is_ident("Path") => "take `PathBuf` instead of `&Path`".to_owned(),
                elem => format!("take `{}` by value", type_string(elem)),
            };
            errors.error_spanned_by(
                ty,
                format!("task arguments are deserialized from the payload and must be owned: {advice}"),
            );
        }
        Type::ImplTrait(_) => errors
            .error_spanned_by(ty, "`impl Trait` arguments cannot be deserialized from a payload: take a concrete type"),
        Type::Infer(_) | Type::Never(_) | Type::BareFn(_) | Type::TraitObject(_) | Type::Ptr(_) | Type::Macro(_) => {
            errors.error_spanned_by(ty, "this type cannot be deserialized from a payload: take a concrete owned type")
        }
        Type::Paren(p) => check_arg_type(&p.elem, errors),
        Type::Group(g) => check_arg_type(&g.elem, errors),
        Type::Array(a) => check_arg_type(&a.elem, errors),
        Type::Slice(s) => check_arg_type(&s.elem, errors),
        Type::Tuple(t) => t.elems.iter().for_each(|elem| check_arg_type(elem, errors)),
        Type::Path(p) => {
            for segment in &p.path.segments {
                if let PathArguments::AngleBracketed(args) = &segment.arguments {
                    for arg in &args.args {
                        match arg {
                            GenericArgument::Type(ty) => check_arg_type(ty, errors),
                            GenericArgument::Lifetime(lt) => errors.error_spanned_by(
                                lt,
                                "task arguments must be owned: remove the lifetime and use an owned type",
                            ),
                            _ => {}
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

fn check_output_type(ty: &Type, errors: &mut Errors) {
    match ty {
        Type::ImplTrait(_) => errors.error_spanned_by(
            ty,
            "a task cannot return `impl Trait`: return a concrete type that implements `Serialize + JsonSchema`",
        ),
        Type::Reference(_) => errors.error_spanned_by(ty, "a task must return an owned value, not a reference"),
        _ => {}
    }
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
    use super::type_string;

    #[test]
    fn types_read_naturally() {
        let ty: syn::Type = syn::parse_quote!(std::collections::HashMap<String, Vec<Option<i64>>>);
        assert_eq!(type_string(&ty), "std::collections::HashMap<String, Vec<Option<i64>>>");
        let ty: syn::Type = syn::parse_quote!((i64, [u8; 4]));
        assert_eq!(type_string(&ty), "(i64, [u8; 4])");
    }
}
