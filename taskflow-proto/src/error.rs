//! [`FieldIssue`]: one problem of a request, at its path.

use serde::{Deserialize, Serialize};

/// One problem of a request, at its path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct FieldIssue {
    /// Where: `payload.b`, `payload.items[0].sku`, `executor`.
    pub path: String,
    /// What is wrong and what was expected.
    pub message: String,
}
