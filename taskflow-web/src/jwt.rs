//! JSON Web Tokens, HS256 only: [`Signer`] issues and verifies them.
//!
//! Written out rather than taken from a JWT crate, because the only thing we
//! need is the narrowest, strictest case: the header must say exactly
//! `HS256` (so `alg: none`, HS512 and RS256 headers are refused before any
//! key is used), the signature is checked in constant time (`hmac`'s
//! `verify_slice`), `exp` must be present and a number, `nbf` when present
//! must have passed, and each token carries its purpose (`typ`), so a
//! refresh token is never taken for an access token or the reverse.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// The shortest secret accepted: 256 bits, as HS256 wants.
pub const MIN_SECRET_BYTES: usize = 32;

/// What a token is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Purpose {
    /// A bearer token for the API.
    Access,
    /// Exchanged at `/token/refresh` for a new pair; used once.
    Refresh,
    /// The browser's session cookie.
    Session,
    /// The one-click link `serve` prints; exchanged for a session.
    Login,
}

/// The claims of every token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Who: a user name, `api-key`, or `local` for the printed link.
    pub sub: String,
    /// What the token is for.
    pub typ: Purpose,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expires at, seconds since the epoch.
    pub exp: i64,
    /// Not valid before, seconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// A unique id, to revoke a used refresh token.
    pub jti: String,
}

/// Why a token was refused. The messages say what to do, never which check
/// a forger came closest to passing beyond that.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Not three base64url parts, or not JSON inside.
    #[error("the token is malformed")]
    Malformed,
    /// The header names another algorithm than HS256.
    #[error("the token must be signed with HS256")]
    Algorithm,
    /// The signature does not match.
    #[error("the token's signature is not valid")]
    Signature,
    /// `exp` has passed.
    #[error("the token has expired; get a new one")]
    Expired,
    /// `nbf` is still ahead.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// The token is for another purpose.
    #[error("this is a {found:?} token; a {expected:?} token is needed here")]
    Purpose {
        /// What was needed.
        expected: Purpose,
        /// What the token is.
        found: Purpose,
    },
}

/// The secret is too short.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "the token secret has {0} bytes; it needs at least {MIN_SECRET_BYTES} (256 bits): set TASKFLOW_SECRET to a longer value, or unset it to have one generated"
)]
pub struct WeakSecret(pub usize);

/// Issues and verifies HS256 tokens with one secret.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

const HEADER: &str = r#"{"alg":"HS256","typ":"JWT"}"#;

impl Signer {
    /// A signer with this secret; refused when shorter than 256 bits.
    pub fn new(secret: &[u8]) -> Result<Signer, WeakSecret> {
        if secret.len() < MIN_SECRET_BYTES {
            return Err(WeakSecret(secret.len()));
        }
        Ok(Signer { key: secret.to_vec() })
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length.
        Hmac::<Sha256>::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!("hmac accepts any key length"))
    }

    /// A token for `sub` and `typ`, valid for `ttl_seconds` from now.
    pub fn issue(&self, sub: &str, typ: Purpose, ttl_seconds: i64) -> String {
        let now = now_seconds();
        self.sign(&Claims {
            sub: sub.to_owned(),
            typ,
            iat: now,
            exp: now.saturating_add(ttl_seconds),
            nbf: None,
            jti: random_id(),
        })
    }

    /// Signs `claims` as they are.
    pub fn sign(&self, claims: &Claims) -> String {
        let body = serde_json::to_vec(claims).unwrap_or_default();
        let signing_input = format!("{}.{}", B64.encode(HEADER), B64.encode(body));
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let signature = mac.finalize().into_bytes();
        format!("{signing_input}.{}", B64.encode(signature))
    }

    /// The claims of a valid token for `expected`.
    pub fn verify(&self, token: &str, expected: Purpose) -> Result<Claims, TokenError> {
        let mut parts = token.split('.');
        let (Some(header_part), Some(body), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        #[derive(Deserialize)]
        struct Header {
            alg: String,
        }
        let header: Header =
            B64.decode(header_part).ok().and_then(|h| serde_json::from_slice(&h).ok()).ok_or(TokenError::Malformed)?;
        if header.alg != "HS256" {
            return Err(TokenError::Algorithm);
        }
        let signature = B64.decode(signature).map_err(|_| TokenError::Malformed)?;
        let mut mac = self.mac();
        mac.update(&token.as_bytes()[..header_part.len() + 1 + body.len()]);
        mac.verify_slice(&signature).map_err(|_| TokenError::Signature)?;
        // Only a signed body is parsed further: `exp` must be a number.
        let claims: Claims =
            B64.decode(body).ok().and_then(|b| serde_json::from_slice(&b).ok()).ok_or(TokenError::Malformed)?;
        let now = now_seconds();
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        if claims.nbf.is_some_and(|nbf| nbf > now) {
            return Err(TokenError::NotYetValid);
        }
        if claims.typ != expected {
            return Err(TokenError::Purpose { expected, found: claims.typ });
        }
        Ok(claims)
    }

    /// An HMAC of `data` under the secret, hex-encoded: CSRF tokens bound to
    /// a session.
    pub fn tag(&self, data: &str) -> String {
        let mut mac = self.mac();
        mac.update(b"taskflow:tag:");
        mac.update(data.as_bytes());
        hex(&mac.finalize().into_bytes())
    }

    /// Whether `tag` is [`Signer::tag`] of `data`, in constant time.
    pub fn check_tag(&self, data: &str, tag: &str) -> bool {
        let expected = self.tag(data);
        expected.len() == tag.len() && expected.bytes().zip(tag.bytes()).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }
}

/// Seconds since the epoch, by the system clock.
pub fn now_seconds() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// 128 random bits, hex-encoded.
pub fn random_id() -> String {
    hex(&random_bytes::<16>())
}

/// Random bytes from the operating system.
pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    // The OS generator failing is not recoverable: no secret may be weak.
    getrandom::fill(&mut bytes).unwrap_or_else(|e| panic!("the operating system's random generator failed: {e}"));
    bytes
}

/// Lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> Signer {
        Signer::new(&[7u8; 32]).unwrap()
    }

    fn forge(header: &str, claims: &serde_json::Value, key: &[u8]) -> String {
        let input = format!("{}.{}", B64.encode(header), B64.encode(claims.to_string()));
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(input.as_bytes());
        format!("{input}.{}", B64.encode(mac.finalize().into_bytes()))
    }

    #[test]
    fn issued_tokens_verify_for_their_purpose_only() {
        let s = signer();
        let access = s.issue("ada", Purpose::Access, 60);
        assert_eq!(s.verify(&access, Purpose::Access).unwrap().sub, "ada");
        assert_eq!(
            s.verify(&access, Purpose::Refresh),
            Err(TokenError::Purpose { expected: Purpose::Refresh, found: Purpose::Access })
        );
    }

    #[test]
    fn forged_and_stale_tokens_are_refused() {
        let s = signer();
        let now = now_seconds();
        let good = serde_json::json!({"sub": "x", "typ": "access", "iat": now, "exp": now + 60, "jti": "j"});
        assert!(s.verify(&forge(HEADER, &good, &[7u8; 32]), Purpose::Access).is_ok());
        let cases = [
            (forge(r#"{"alg":"none"}"#, &good, &[7u8; 32]), TokenError::Algorithm),
            (forge(r#"{"alg":"HS512"}"#, &good, &[7u8; 32]), TokenError::Algorithm),
            (forge(r#"{"alg":"RS256"}"#, &good, &[7u8; 32]), TokenError::Algorithm),
            (forge(HEADER, &good, &[8u8; 32]), TokenError::Signature),
            (
                forge(HEADER, &serde_json::json!({"sub": "x", "typ": "access", "iat": now, "jti": "j"}), &[7u8; 32]),
                TokenError::Malformed,
            ),
            (
                forge(
                    HEADER,
                    &serde_json::json!({"sub": "x", "typ": "access", "iat": now, "exp": "9999999999", "jti": "j"}),
                    &[7u8; 32],
                ),
                TokenError::Malformed,
            ),
            (
                forge(
                    HEADER,
                    &serde_json::json!({"sub": "x", "typ": "access", "iat": now, "exp": now - 1, "jti": "j"}),
                    &[7u8; 32],
                ),
                TokenError::Expired,
            ),
            (
                forge(
                    HEADER,
                    &serde_json::json!({"sub": "x", "typ": "access", "iat": now, "exp": now + 60, "nbf": now + 30, "jti": "j"}),
                    &[7u8; 32],
                ),
                TokenError::NotYetValid,
            ),
            ("a.b".to_owned(), TokenError::Malformed),
        ];
        for (token, error) in cases {
            assert_eq!(s.verify(&token, Purpose::Access), Err(error), "{token}");
        }
        // A tampered body keeps the old signature: refused.
        let token = s.issue("x", Purpose::Access, 60);
        let mut parts: Vec<&str> = token.split('.').collect();
        let admin = B64.encode(
            serde_json::json!({"sub": "admin", "typ": "access", "iat": now, "exp": now + 60, "jti": "j"}).to_string(),
        );
        parts[1] = &admin;
        assert_eq!(s.verify(&parts.join("."), Purpose::Access), Err(TokenError::Signature));
    }

    #[test]
    fn short_secrets_are_refused() {
        assert_eq!(Signer::new(b"short").unwrap_err(), WeakSecret(5));
    }

    #[test]
    fn tags_check_in_constant_time_shape() {
        let s = signer();
        let tag = s.tag("session-1");
        assert!(s.check_tag("session-1", &tag));
        assert!(!s.check_tag("session-2", &tag));
        assert!(!s.check_tag("session-1", "00"));
    }
}
