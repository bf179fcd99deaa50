//! Lowercase hex of bytes: key fingerprints, and the label cache's keys in Redis. A leaf,
//! so that the stores and the keys can both use it without one climbing up to the other.

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}
