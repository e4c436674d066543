//! [`SubmitRequest`]: a submit, as `POST /api/v1/tasks` takes it.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The longest delay a submit may ask for: ten years.
pub const MAX_DELAY_SECONDS: u64 = 315_360_000;

/// A submit, as `POST /api/v1/tasks` takes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SubmitRequest {
    /// The task to run.
    pub task_title: String,
    /// The arguments, an object checked against the task's schema.
    #[serde(default = "empty_object")]
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub payload: Value,
    /// `thread`, `process` or `docker`; the task's default when absent.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<crate::ExecutorKind>))]
    pub executor: Option<String>,
    /// Higher runs first (default 0).
    #[serde(default, deserialize_with = "integral::i32")]
    pub priority: i32,
    /// Return the pending or running run with the same title and payload
    /// instead of making another (default true).
    #[serde(default = "yes")]
    pub unique: bool,
    /// The same key returns the same run, so a retried request is safe.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Start no earlier than this many seconds from now (at most ten
    /// years).
    #[serde(default, deserialize_with = "integral::delay")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0, maximum = 315_360_000))]
    pub delay_seconds: Option<u64>,
}

/// Integers that JSON may write as `5.0` (JSON Schema counts those as
/// integers; serde alone would refuse them).
mod integral {
    use serde::{Deserialize, Deserializer, de::Error};

    use super::MAX_DELAY_SECONDS;

    fn exact<E: Error>(n: serde_json::Number) -> Result<i128, E> {
        n.as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            // Floats are exact integers only up to 2^53.
            .or_else(|| {
                n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0).map(|f| f as i128)
            })
            .ok_or_else(|| E::custom(format!("expected an integer, found {n}")))
    }

    fn integer<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<i128>, D::Error> {
        Option::<serde_json::Number>::deserialize(deserializer)?.map(exact).transpose()
    }

    pub(super) fn i32<'de, D: Deserializer<'de>>(deserializer: D) -> Result<i32, D::Error> {
        let n = exact(serde_json::Number::deserialize(deserializer)?)?;
        i32::try_from(n)
            .map_err(|_| D::Error::custom(format!("expected an integer from {} to {}, found {n}", i32::MIN, i32::MAX)))
    }

    pub(super) fn delay<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<u64>, D::Error> {
        integer(deserializer)?
            .map(|n| {
                u64::try_from(n)
                    .ok()
                    .filter(|n| *n <= MAX_DELAY_SECONDS)
                    .ok_or_else(|| D::Error::custom(format!("expected 0 to {MAX_DELAY_SECONDS} seconds, found {n}")))
            })
            .transpose()
    }
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

fn yes() -> bool {
    true
}

impl SubmitRequest {
    /// A submit of `task_title` with `payload` and the defaults otherwise.
    pub fn new(task_title: impl Into<String>, payload: Value) -> SubmitRequest {
        SubmitRequest {
            task_title: task_title.into(),
            payload,
            executor: None,
            priority: 0,
            unique: true,
            idempotency_key: None,
            delay_seconds: None,
        }
    }
}
