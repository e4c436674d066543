//! The tokens of remote workers: a one-time provision token (`tfp_…`) an
//! admin hands to a machine, and the worker token (`tfw_…`) it gets for it
//! at registration. Each is 256 random bits from the operating system; the
//! store keeps only their SHA-256, so reading the database gives no way in.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

use crate::jwt::{hex, random_bytes};

/// The prefix of provision tokens.
pub const PROVISION_PREFIX: &str = "tfp_";
/// The prefix of worker tokens.
pub const WORKER_PREFIX: &str = "tfw_";

/// A new token: `prefix` and 256 random bits, base64url.
pub fn mint(prefix: &str) -> String {
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(random_bytes::<32>()))
}

/// The SHA-256 of a token, in hex: what the store keeps. A plain hash is
/// enough: the token has 256 bits of entropy, so there is nothing to
/// guess that a slow hash would protect.
pub fn digest(token: &str) -> String {
    hex(&Sha256::digest(token.as_bytes()))
}

/// The SHA-256 (hex) of a task's argument schema as canonical JSON: equal
/// for equal schemas whatever the order of their keys.
pub fn schema_digest(schema: &serde_json::Value) -> String {
    digest(&taskflow_core::store::canonical_json(schema))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_digested() {
        let (a, b) = (mint(PROVISION_PREFIX), mint(PROVISION_PREFIX));
        assert!(a.starts_with("tfp_") && a.len() == 4 + 43, "{a}");
        assert_ne!(a, b);
        assert_eq!(digest(&a), digest(&a));
        assert_ne!(digest(&a), digest(&b));
        assert_eq!(digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn schema_digests_ignore_key_order() {
        let one: serde_json::Value = serde_json::from_str(r#"{"type":"object","properties":{"a":{}}}"#).unwrap();
        let other: serde_json::Value = serde_json::from_str(r#"{"properties":{"a":{}},"type":"object"}"#).unwrap();
        assert_eq!(schema_digest(&one), schema_digest(&other));
    }
}
