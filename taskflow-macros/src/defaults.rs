//! What `defaults(...)` can check before the program runs: a literal whose
//! kind no argument of the declared type accepts (`a = "two"` for a `u32`,
//! `n = -1` for a `u8`, `300` for a `u8`, `1.5` for an `i64`, `null` for a
//! required `String`).
//!
//! A proc macro sees tokens, not types, so only the primitive types are
//! judged, by name (`bool`, the integers, `f32`/`f64`, `String`, `Vec<T>`,
//! `Option<T>` of these): any other type may deserialize from any literal
//! (`"Express"` is right for an enum), and any other expression (a constant,
//! a call) may have any value. What passes here is checked at start-up
//! against the argument's schema, as before.

use syn::{Expr, ExprLit, ExprUnary, GenericArgument, Lit, PathArguments, Type, UnOp};

use crate::errors::Errors;
use crate::model::type_string;

/// The JSON a literal default turns into, as far as its tokens say.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Literal {
    Null,
    Bool,
    /// An integer, when it fits in an `i128`.
    Integer(Option<i128>),
    /// A number with a fraction or exponent; whether it is a whole number.
    Float {
        whole: bool,
    },
    String,
    Array,
}

/// The JSON shape a primitive argument type takes.
enum Shape<'a> {
    Bool,
    Integer {
        min: i128,
        max: i128,
    },
    Float,
    String,
    /// `Vec<T>`: an array.
    Array,
    /// `Option<T>`: `null` or what `T` takes.
    Optional(&'a Type),
}

/// Reports a default of argument `name: ty` whose literal the type can
/// never take.
pub(crate) fn check_default(name: &syn::Ident, ty: &Type, value: &Expr, errors: &mut Errors) {
    let Some(literal) = literal(value) else { return };
    if let Some(expected) = mismatch(ty, literal) {
        errors.error_spanned_by(value, format!("the default of `{name}: {}` must be {expected}", type_string(ty)));
    }
}

/// What `ty` takes instead of `literal`, if it cannot take it.
fn mismatch(ty: &Type, literal: Literal) -> Option<String> {
    let shape = shape(ty)?;
    let wrong = |expected: &str| Some(expected.to_owned());
    match (shape, literal) {
        (Shape::Optional(_), Literal::Null) => None,
        (Shape::Optional(inner), literal) => mismatch(inner, literal).map(|e| format!("{e}, or `null`")),
        (Shape::Bool, Literal::Bool) | (Shape::String, Literal::String) | (Shape::Array, Literal::Array) => None,
        (Shape::Float, Literal::Integer(_) | Literal::Float { .. }) => None,
        (Shape::Integer { min, max }, Literal::Integer(Some(n))) if n < min || n > max => {
            Some(format!("an integer from {min} to {max}; {n} is out of range"))
        }
        (Shape::Integer { .. }, Literal::Integer(_) | Literal::Float { whole: true }) => None,
        (Shape::Integer { .. }, _) => wrong("an integer, e.g. `2`"),
        (Shape::Bool, _) => wrong("`true` or `false`"),
        (Shape::Float, _) => wrong("a number, e.g. `1.5`"),
        (Shape::String, _) => wrong("a string, e.g. `\"text\"`"),
        (Shape::Array, _) => wrong("an array, e.g. `[]`"),
    }
}

/// The shape of a primitive type named plainly; none for any other type.
fn shape(ty: &Type) -> Option<Shape<'_>> {
    let Type::Path(path) = ty else { return None };
    if path.qself.is_some() {
        return None;
    }
    let segment = path.path.segments.last()?;
    let name = segment.ident.to_string();
    let only_argument = || match &segment.arguments {
        PathArguments::AngleBracketed(args) if args.args.len() == 1 => match &args.args[0] {
            GenericArgument::Type(inner) => Some(inner),
            _ => None,
        },
        _ => None,
    };
    if !matches!(segment.arguments, PathArguments::None) {
        return match name.as_str() {
            "Option" => only_argument().map(Shape::Optional),
            "Vec" => only_argument().map(|_| Shape::Array),
            _ => None,
        };
    }
    // Only a bare name: `my::u32` could be anything.
    if path.path.segments.len() != 1 && name != "String" {
        return None;
    }
    let integer = |min: i128, max: i128| Some(Shape::Integer { min, max });
    match name.as_str() {
        "bool" => Some(Shape::Bool),
        "u8" => integer(0, u8::MAX.into()),
        "u16" => integer(0, u16::MAX.into()),
        "u32" => integer(0, u32::MAX.into()),
        "u64" | "usize" => integer(0, u64::MAX.into()),
        "i8" => integer(i8::MIN.into(), i8::MAX.into()),
        "i16" => integer(i16::MIN.into(), i16::MAX.into()),
        "i32" => integer(i32::MIN.into(), i32::MAX.into()),
        "i64" | "isize" => integer(i64::MIN.into(), i64::MAX.into()),
        "f32" | "f64" => Some(Shape::Float),
        "String" => Some(Shape::String),
        _ => None,
    }
}

/// The literal `value` is, if it is one (`-` before a number included).
fn literal(value: &Expr) -> Option<Literal> {
    match value {
        Expr::Lit(ExprLit { lit, .. }) => match lit {
            Lit::Bool(_) => Some(Literal::Bool),
            Lit::Str(_) => Some(Literal::String),
            Lit::Int(int) => Some(Literal::Integer(int.base10_parse::<i128>().ok())),
            Lit::Float(float) => float.base10_parse::<f64>().ok().map(|f| Literal::Float { whole: f.fract() == 0.0 }),
            _ => None,
        },
        Expr::Unary(ExprUnary { op: UnOp::Neg(_), expr, .. }) => match literal(expr)? {
            Literal::Integer(n) => Some(Literal::Integer(n.map(|n| -n))),
            float @ Literal::Float { .. } => Some(float),
            _ => None,
        },
        Expr::Array(_) => Some(Literal::Array),
        Expr::Path(path) if path.qself.is_none() && path.path.is_ident("null") => Some(Literal::Null),
        Expr::Group(group) => literal(&group.expr),
        Expr::Paren(paren) => literal(&paren.expr),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::check_default;
    use crate::errors::Errors;

    fn message(ty: &str, value: &str) -> Option<String> {
        let mut errors = Errors::default();
        let name = syn::Ident::new("a", proc_macro2::Span::call_site());
        check_default(&name, &syn::parse_str(ty).unwrap(), &syn::parse_str(value).unwrap(), &mut errors);
        errors.finish().err().map(|e| e.to_string())
    }

    #[test]
    fn literals_of_the_wrong_kind_are_refused() {
        for (ty, value, says) in [
            ("u32", "\"two\"", "the default of `a: u32` must be an integer, e.g. `2`"),
            ("u8", "300", "an integer from 0 to 255; 300 is out of range"),
            ("u8", "-1", "an integer from 0 to 255; -1 is out of range"),
            ("i64", "1.5", "an integer"),
            ("bool", "1", "`true` or `false`"),
            ("String", "3", "a string"),
            ("String", "null", "a string"),
            ("f64", "\"x\"", "a number"),
            ("Vec<String>", "\"x\"", "an array"),
            ("Option<u32>", "\"two\"", "an integer, e.g. `2`, or `null`"),
            ("std::string::String", "true", "a string"),
        ] {
            let found = message(ty, value).unwrap_or_else(|| panic!("`{ty}` = {value} accepted"));
            assert!(found.contains(says), "`{ty}` = {value}: {found}");
        }
    }

    #[test]
    fn what_may_fit_passes() {
        for (ty, value) in [
            ("u32", "2"),
            ("i8", "-128"),
            ("i64", "2.0"),
            ("f32", "-1"),
            ("f64", "1e3"),
            ("Option<String>", "null"),
            ("Option<Vec<u8>>", "[1, 2]"),
            ("String", "\"x\""),
            ("bool", "false"),
            // Any other type may take any literal: an enum takes a string.
            ("Delivery", "\"Express\""),
            ("my::u32", "\"x\""),
            ("HashMap<String, u8>", "null"),
            // Any other expression may have any value.
            ("u32", "LIMIT"),
            ("u32", "limit()"),
        ] {
            assert_eq!(message(ty, value), None, "`{ty}` = {value}");
        }
    }
}
