//! Collects every error found in one `#[task]` so they are reported together.
//!
//! Modelled on `serde_derive`'s `Ctxt`: each check pushes a spanned
//! `syn::Error`, and the caller turns the lot into `compile_error!`s at once.

use std::fmt::Display;

use proc_macro2::TokenStream;
use quote::ToTokens;

/// The error collector of one macro invocation.
#[derive(Default)]
pub(crate) struct Errors {
    errors: Vec<syn::Error>,
}

impl Errors {
    /// Records an error spanning `tokens`.
    pub(crate) fn error_spanned_by(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.errors.push(syn::Error::new_spanned(tokens.into_token_stream(), message));
    }

    /// Records an already built error (for instance one returned by `syn`).
    pub(crate) fn push(&mut self, error: syn::Error) {
        self.errors.push(error);
    }

    /// `Ok` when nothing was recorded, else all errors combined into one.
    pub(crate) fn finish(self) -> Result<(), syn::Error> {
        let mut errors = self.errors.into_iter();
        let Some(mut first) = errors.next() else {
            return Ok(());
        };
        for error in errors {
            first.combine(error);
        }
        Err(first)
    }

    /// The `compile_error!`s of everything recorded so far.
    pub(crate) fn into_compile_errors(self) -> TokenStream {
        self.errors.iter().map(syn::Error::to_compile_error).collect()
    }
}
