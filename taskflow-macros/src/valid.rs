//! Checks a task's model against what `#[task]` supports, reporting every
//! unsupported shape at its own span.
//!
//! The errors come in a fixed order, which the UI tests' `.stderr` files
//! pin: the signature (`unsafe`, ABI, variadic, generics or `where`), then
//! each input in turn (receiver, context, pattern, argument type), then the
//! output type, then each entry of `defaults(...)` (its name, then its
//! literal's kind, [`check_default`]).

use syn::{GenericArgument, PathArguments, ReturnType, Type};

use crate::defaults::check_default;
use crate::errors::Errors;
use crate::model::{ContextPlace, Param, TaskFn, type_string};

/// Records in `errors` everything about `task` that `#[task]` rejects.
pub(crate) fn validate(task: &TaskFn, errors: &mut Errors) {
    let sig = &task.item.sig;
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

    for (index, input) in sig.inputs.iter().enumerate() {
        match Param::of(index, input) {
            Param::Receiver(receiver) => errors.error_spanned_by(
                receiver,
                "#[task] works on free functions, not methods: move the body into a free `fn` that takes what it needs as arguments",
            ),
            Param::Context { ty, place } => match place {
                ContextPlace::First => {}
                ContextPlace::Mut => {
                    errors.error_spanned_by(ty, "take the context as `&TaskContext`, not `&mut TaskContext`")
                }
                ContextPlace::NotFirst => errors.error_spanned_by(
                    ty,
                    "`&TaskContext` must be the first parameter: move it before the task's arguments",
                ),
                ContextPlace::ByValue => {
                    errors.error_spanned_by(ty, "take the context by reference: `ctx: &TaskContext`")
                }
            },
            Param::Pattern(pat) => errors.error_spanned_by(
                pat,
                "bind each task argument to a plain name (e.g. `point: Point`) and destructure it in the body: the name is the payload's field",
            ),
            Param::Arg { ty, .. } => check_arg_type(ty, errors),
        }
    }

    if let ReturnType::Type(_, ty) = &sig.output {
        check_output_type(ty, errors);
    }

    if let Some(defaults) = &task.attr.defaults {
        for (name, value) in defaults {
            if let Some(arg) = task.args.iter().find(|arg| arg.ident == *name) {
                check_default(name, &arg.ty, value, errors);
            } else {
                let known: Vec<String> = task.args.iter().map(|a| format!("`{}`", a.ident)).collect();
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

#[cfg(test)]
mod tests {
    use super::validate;
    use crate::attr::TaskAttr;
    use crate::errors::Errors;
    use crate::model::TaskFn;

    /// The messages reported for `#[task(attr)] item`, in order.
    fn messages(attr: proc_macro2::TokenStream, item: syn::ItemFn) -> Vec<String> {
        let mut errors = Errors::default();
        let attr = TaskAttr::parse(attr, &mut errors);
        let task = TaskFn::new(item, attr);
        validate(&task, &mut errors);
        match errors.finish() {
            Ok(()) => Vec::new(),
            Err(error) => error.into_iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn accepted_signatures_report_nothing() {
        let item = syn::parse_quote!(
            fn f(ctx: &TaskContext, a: i64, b: Option<Vec<String>>) -> Result<i64, E> {
                0
            }
        );
        assert_eq!(messages(quote::quote!(defaults(b = [])), item), Vec::<String>::new());
    }

    #[test]
    fn errors_come_in_signature_input_output_defaults_order() {
        let item = syn::parse_quote! {
            unsafe fn f<T>(&self, a: &str, ctx: &TaskContext, (x, y): (i64, i64)) -> &str { "" }
        };
        let found = messages(quote::quote!(defaults(x = 1)), item);
        let starts: Vec<&str> = found.iter().map(|m| m.split(':').next().unwrap()).collect();
        assert_eq!(
            starts,
            [
                "a task cannot be `unsafe fn`",
                "a task cannot be generic",
                "#[task] works on free functions, not methods",
                "task arguments are deserialized from the payload and must be owned",
                "`&TaskContext` must be the first parameter",
                "bind each task argument to a plain name (e.g. `point",
                "a task must return an owned value, not a reference",
                "`x` is not an argument of this task; arguments",
            ]
        );
        assert!(found.last().unwrap().ends_with("arguments: `a`"), "{found:?}");
    }
}
