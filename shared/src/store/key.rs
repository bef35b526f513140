//! Object keys, validated so a key can never escape the local store's root or surprise S3.

use std::fmt;

use super::StoreError;

/// A relative, `/`-separated key such as `tenants/<id>/html/<business>.html.gz`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectKey(String);

impl ObjectKey {
    pub fn parse(raw: &str) -> Result<Self, StoreError> {
        let bad = |reason| {
            Err(StoreError::BadKey {
                key: raw.to_owned(),
                reason,
            })
        };
        if raw.is_empty() {
            return bad("empty");
        }
        if raw.len() > 1024 {
            return bad("longer than 1024 bytes");
        }
        if raw.starts_with('/') || raw.ends_with('/') {
            return bad("must not start or end with /");
        }
        if raw.chars().any(|c| c.is_control() || c == '\\') {
            return bad("control characters and backslashes are not allowed");
        }
        if raw
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return bad("empty, . and .. segments are not allowed");
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_keys_and_rejects_escapes() {
        assert!(ObjectKey::parse("tenants/a/html/b.html.gz").is_ok());
        for raw in [
            "", "/abs", "a/../b", "..", "a//b", "a/", "a\\b", "a/\0", "./a",
        ] {
            assert!(ObjectKey::parse(raw).is_err(), "{raw:?}");
        }
    }
}
