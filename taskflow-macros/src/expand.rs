//! Generates a task's code from its model: the unchanged function, a hidden
//! argument struct, an invoker and one registration.
//!
//! Everything generated lives in a `const _: () = { … };` block and reaches
//! TaskFlow only through `::taskflow::__private`, so it works in any module,
//! under any `use` set-up and without a dependency on `serde` or `schemars`.

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ItemFn, LitStr};

use crate::attr::TaskAttr;
use crate::errors::Errors;
use crate::model::{Output, TaskFn};
use crate::valid;

/// The whole expansion of `#[task(attr)] item`.
pub(crate) fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    let item: ItemFn = match syn::parse2(item.clone()) {
        Ok(item) => item,
        Err(_) => {
            // Point at the item's keyword (`struct`, `impl`, …), not its whole body.
            let keyword = item.clone().into_iter().find_map(|token| match token {
                proc_macro2::TokenTree::Ident(ident) if ident != "pub" => Some(ident.span()),
                _ => None,
            });
            let error = syn::Error::new(
                keyword.unwrap_or_else(proc_macro2::Span::call_site),
                "#[task] goes on a function: `#[task] fn name(arg: Type) -> Output { … }`",
            );
            let error = error.to_compile_error();
            return quote!(#item #error);
        }
    };
    // Parse → model → validate → expand; the errors keep that order too.
    let mut errors = Errors::default();
    let attr = TaskAttr::parse(attr, &mut errors);
    let task = TaskFn::new(item, attr);
    valid::validate(&task, &mut errors);
    let item = &task.item;
    match errors.finish() {
        Ok(()) => {
            let generated = generate(&task);
            quote!(#item #generated)
        }
        Err(error) => {
            // The function itself stays, so its callers still type-check and
            // the only errors shown are ours.
            let mut only = Errors::default();
            only.push(error);
            let compile_errors = only.into_compile_errors();
            quote!(#item #compile_errors)
        }
    }
}

fn generate(task: &TaskFn) -> TokenStream {
    let private = quote!(::taskflow::__private);
    let fn_name = &task.item.sig.ident;
    let is_async = task.item.sig.asyncness.is_some();

    let fields = task.args.iter().map(|arg| {
        let ident = &arg.ident;
        let ty = &arg.ty;
        let default = arg.optional.then(|| quote!(#[serde(default)]));
        quote!(#default #ident: #ty,)
    });
    let arg_checks = task.args.iter().map(|arg| {
        let ty = &arg.ty;
        quote_spanned!(ty.span()=> #private::assert_argument::<#ty>();)
    });
    let call_args = task.args.iter().map(|arg| {
        let ident = &arg.ident;
        quote!(__args.#ident)
    });
    let ctx_arg = match (task.takes_context, is_async) {
        (false, _) => quote!(),
        (true, false) => quote!(__ctx,),
        (true, true) => quote!(&__ctx,),
    };
    let call = if is_async {
        quote!(#fn_name(#ctx_arg #(#call_args),*).await)
    } else {
        quote!(#fn_name(#ctx_arg #(#call_args),*))
    };
    let (convert, output_ty) = match &task.output {
        Output::Unit => (quote!(#private::output_from_unit(#call)), quote!(())),
        Output::Value(ty) => (quote_spanned!(ty.span()=> #private::output_from_value::<#ty>(#call)), quote!(#ty)),
        Output::Result { ok } => (quote_spanned!(ok.span()=> #private::output_from_result(#call)), quote!(#ok)),
    };

    let invoke = if is_async {
        quote! {
            fn __invoke(
                __ctx: ::taskflow::TaskContext,
                __payload: #private::Value,
            ) -> #private::BoxFuture<#private::TaskResult> {
                let __args: __TaskArgs = match #private::deserialize_args(__payload) {
                    ::core::result::Result::Ok(args) => args,
                    ::core::result::Result::Err(error) => return #private::ready(::core::result::Result::Err(error)),
                };
                #private::box_future(async move { #convert })
            }
            #private::Invoker::Async(__invoke)
        }
    } else {
        quote! {
            fn __invoke(
                __ctx: &::taskflow::TaskContext,
                __payload: #private::Value,
            ) -> #private::TaskResult {
                let __args: __TaskArgs = #private::deserialize_args(__payload)?;
                #convert
            }
            #private::Invoker::Sync(__invoke)
        }
    };
    // The context is unused by tasks that do not take it.
    let allow_unused_ctx = (!task.takes_context).then(|| quote!(#[allow(unused_variables)]));
    let invoke = quote!({ #allow_unused_ctx #invoke });

    let title = LitStr::new(&task.title(), task.name_span());
    let description = task.attr.description.as_ref().cloned().or_else(|| task.doc.summary.clone()).unwrap_or_default();
    let signature = &task.signature;
    let arg_docs = task
        .doc
        .arguments
        .iter()
        .filter(|(name, _)| task.args.iter().any(|arg| arg.ident == name))
        .map(|(name, text)| quote!((#name, #text)));
    let timeout_ms = option_tokens(task.attr.timeout_ms.as_ref().copied());
    let retries = task.attr.retries.as_ref().copied().unwrap_or(0);
    let retry_delay_ms = option_tokens(task.attr.retry_delay_ms);
    let concurrency = match task.attr.concurrency {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let executor = match task.attr.executor.as_deref() {
        Some("process") => quote!(#private::ExecutorKind::Process),
        Some("docker") => quote!(#private::ExecutorKind::Docker),
        _ => quote!(#private::ExecutorKind::Thread),
    };
    let tags = task.attr.tags.iter().flatten();
    let image = match &task.attr.image {
        Some(image) => quote!(::core::option::Option::Some(#image)),
        None => quote!(::core::option::Option::None),
    };
    let network = task.attr.network.unwrap_or(false);
    let memory = option_tokens(task.attr.memory);
    let nano_cpus = option_tokens(task.attr.nano_cpus);
    let pids = match task.attr.pids {
        Some(n) => quote!(::core::option::Option::Some(#n)),
        None => quote!(::core::option::Option::None),
    };
    let env = task.attr.env.iter().flatten();
    let queue = task.attr.queue.as_deref().unwrap_or("default");
    let defaults = match &task.attr.defaults {
        Some(defaults) => {
            let entries = defaults.iter().map(|(name, value)| {
                let key = name.to_string();
                let key = key.trim_start_matches("r#");
                quote!(#key: #value)
            });
            quote! {{
                fn __defaults() -> #private::Value {
                    #private::serde_json::json!({ #(#entries),* })
                }
                ::core::option::Option::Some(__defaults)
            }}
        }
        None => quote!(::core::option::Option::None),
    };
    let helpers = typed_helpers(task, &output_ty);
    quote! {
        #helpers

        #[doc(hidden)]
        const _: () = {
            // `schemars`' derive assumes the prelude; these bring what it uses
            // without naming anything a user's type could be called, so tasks
            // work in `#![no_implicit_prelude]` modules too.
            #[allow(unused_imports)]
            use ::core::{convert::Into as _, default::Default as _, option::Option::Some};

            #[derive(#private::serde::Deserialize, #private::schemars::JsonSchema)]
            #[serde(crate = "::taskflow::__private::serde", deny_unknown_fields)]
            #[schemars(crate = "::taskflow::__private::schemars")]
            struct __TaskArgs {
                #(#fields)*
            }

            fn __args_schema() -> #private::Value {
                #private::args_schema::<__TaskArgs>()
            }

            fn __output_schema() -> #private::Value {
                #private::output_schema::<#output_ty>()
            }

            #[allow(dead_code)]
            fn __checks() {
                #(#arg_checks)*
            }

            static __TASK: #private::TaskDef = #private::TaskDef::__new(#private::TaskDecl {
                    title: #title,
                    description: #description,
                    signature: #signature,
                    module_path: ::core::module_path!(),
                    file: ::core::file!(),
                    line: ::core::line!(),
                    is_async: #is_async,
                    arg_docs: &[#(#arg_docs),*],
                    defaults: #defaults,
                    args_schema: __args_schema,
                    output_schema: __output_schema,
                    invoke: #invoke,
                    timeout_ms: #timeout_ms,
                    retries: #retries,
                    retry_delay_ms: #retry_delay_ms,
                    concurrency: #concurrency,
                    executor: #executor,
                    tags: &[#(#tags),*],
                    queue: #queue,
                    image: #image,
                    network: #network,
                    memory_bytes: #memory,
                    nano_cpus: #nano_cpus,
                    pids: #pids,
                    env: &[#(#env),*],
                });
            #private::inventory::submit! { #private::TaskEntry(&__TASK) }
        };
    }
}

/// `mod add_numbers { pub async fn submit(client, a, b) }`: the typed client
/// helper, in a module named like the function (modules and functions live
/// in different namespaces, so both keep the name).
///
/// Argument types need only be `Deserialize` to be a task's arguments, so
/// encoding them (and decoding the result) uses autoref specialization: a
/// type without `Serialize` (`Deserialize` for the result) compiles and gets a
/// clear error at run time instead of breaking every such task.
fn typed_helpers(task: &TaskFn, output_ty: &TokenStream) -> TokenStream {
    let private = quote!(::taskflow::__private);
    let fn_name = &task.item.sig.ident;
    let title = task.title();
    // The helpers are reachable wherever the task function is.
    let (mod_vis, fn_vis) = match &task.item.vis {
        syn::Visibility::Inherited => (quote!(), quote!(pub(super))),
        syn::Visibility::Restricted(r) if r.path.is_ident("self") => (quote!(), quote!(pub(super))),
        syn::Visibility::Restricted(r) if r.path.is_ident("super") && r.in_token.is_none() => {
            (quote!(pub(super)), quote!(pub(in super::super)))
        }
        vis => (quote!(#vis), quote!(#vis)),
    };
    let params = task.args.iter().map(|arg| {
        let ident = &arg.ident;
        let ty = &arg.ty;
        quote!(#ident: #ty)
    });
    let inserts = task.args.iter().map(|arg| {
        let ident = &arg.ident;
        let key = ident.to_string();
        let key = key.trim_start_matches("r#");
        quote! {
            __payload.insert(
                <::std::string::String as ::core::convert::From<&str>>::from(#key),
                (&#private::Encode(&#ident, #key)).encode()?,
            );
        }
    });
    let doc_mod = format!("The typed client helpers of the task `{title}`.");
    let doc_submit = format!(
        "Submits a run of `{title}` with these arguments; `.wait().await` gives its result.\n\nSee [`Client::submit`](::taskflow::client::Client::submit)."
    );
    quote! {
        #[doc = #doc_mod]
        #[allow(dead_code, unused_imports, clippy::too_many_arguments)]
        #mod_vis mod #fn_name {
            use super::*;
            use #private::{DecodeFallback as _, DecodeViaSerde as _, EncodeFallback as _, EncodeViaSerde as _};

            #[doc = #doc_submit]
            #fn_vis async fn submit(
                __client: &::taskflow::client::Client,
                #(#params),*
            ) -> ::core::result::Result<::taskflow::client::TypedRun<#output_ty>, ::taskflow::client::ClientError> {
                let mut __payload = #private::serde_json::Map::new();
                #(#inserts)*
                let __run = __client.submit(#title, #private::Value::Object(__payload)).await?;
                ::core::result::Result::Ok(::taskflow::client::TypedRun::new(__run, ::core::clone::Clone::clone(__client), __decode))
            }

            fn __decode(value: #private::Value) -> ::core::result::Result<#output_ty, ::std::string::String> {
                (&#private::Decode::<#output_ty>::new()).decode(value)
            }
        }
    }
}

fn option_tokens(value: Option<u64>) -> TokenStream {
    match value {
        Some(value) => quote!(::core::option::Option::Some(#value)),
        None => quote!(::core::option::Option::None),
    }
}

/// Parses an attribute and function from source, for the snapshot tests.
#[cfg(test)]
fn expand_str(attr: &str, item: &str) -> String {
    let attr: TokenStream = attr.parse().unwrap();
    let item: TokenStream = item.parse().unwrap();
    let file: syn::File = syn::parse2(task(attr, item)).unwrap();
    prettyplease::unparse(&file)
}

#[cfg(test)]
mod tests {
    use super::expand_str;

    /// The expansion of the README's example, checked in so that a change to
    /// the generated code shows up in review. Regenerate with
    /// `UPDATE_SNAPSHOTS=1 cargo test -p taskflow-macros`.
    #[test]
    fn snapshot_add_numbers() {
        let actual = expand_str(
            "retries = 2, timeout = \"1m\", defaults(b = 3)",
            "/// Add two numbers together\n///\n/// # Arguments\n/// * `a` - the first addend\n/// * `b` - the second addend\nfn add_numbers(a: i64, b: i64) -> i64 { a + b }",
        );
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/snapshots/add_numbers.rs.txt");
        if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
            std::fs::write(path, &actual).unwrap();
        }
        let expected = std::fs::read_to_string(path).expect("snapshot missing: run with UPDATE_SNAPSHOTS=1");
        assert_eq!(actual, expected, "expansion changed; review and run with UPDATE_SNAPSHOTS=1");
    }

    #[test]
    fn errors_keep_the_function() {
        let out = expand_str("bogus = 1", "fn f(a: &str) {}");
        assert!(out.contains("fn f(a: &str) {}"), "{out}");
        assert!(out.contains("unknown option `bogus`"), "{out}");
        assert!(out.contains("take `String` instead of `&str`"), "{out}");
    }
}
