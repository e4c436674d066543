//! The `#[task]` attribute: turns an ordinary function into a TaskFlow task.
//!
//! The work is split the way `thiserror` and `serde_derive` split theirs,
//! into parse → model → validate → expand: `attr` parses the options, `model`
//! builds a plain `model::TaskFn` from the function without reporting
//! anything, `valid` then checks the model and the function's signature and
//! reports every unsupported shape at its own span into `errors::Errors`
//! (`defaults` judging the literal kinds of `defaults(...)`),
//! `docs` reads the doc comment, and `expand` drives the four steps and reads
//! only the model. On any error the user's function is emitted unchanged
//! beside the `compile_error!`s, so one mistake never cascades into a screen
//! of follow-on errors.
//!
//! Use it through the `taskflow` crate (`#[taskflow::task]`): the generated
//! code reaches everything through `::taskflow::__private`.

mod attr;
mod defaults;
mod docs;
mod errors;
mod expand;
mod model;
mod valid;

use proc_macro::TokenStream;

/// Registers a function as a TaskFlow task. See the `taskflow` crate's
/// documentation of `task` for the options and the accepted signatures.
#[proc_macro_attribute]
pub fn task(attr: TokenStream, item: TokenStream) -> TokenStream {
    expand::task(attr.into(), item.into()).into()
}
