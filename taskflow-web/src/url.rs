//! URL text: percent-encoding a component. A leaf, so that the auth gate
//! (which builds the login redirect) and the UI (which builds links) share
//! it without depending on each other.

/// Percent-encodes a URL component (RFC 3986 unreserved kept).
pub fn encode_component(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}
