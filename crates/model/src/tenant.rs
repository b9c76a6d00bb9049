//! The tenant (issue 17): one customer company of a managed service provider, with its own
//! vendor accounts and its own ticket systems. Every stored row names its tenant; a
//! configuration without `[[tenants]]` is the one tenant [`TenantName::DEFAULT`].
//!
//! A name is short lower-case ASCII (`[a-z0-9][a-z0-9-]{0,62}`): it goes into marker lines,
//! metrics labels, lease and cursor keys and file names, where nothing in it may need
//! escaping or split a key (`/`, `:`).

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A name that is not a tenant name, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant name {name:?}: {why}")]
pub struct BadTenantName {
    pub name: String,
    pub why: &'static str,
}

/// A tenant's name, validated. Cheap to clone.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct TenantName(Arc<str>);

impl TenantName {
    /// The tenant of a configuration without `[[tenants]]`, and of every row written before
    /// tenants existed (migration 0009 gives them this name).
    pub const DEFAULT: &'static str = "default";
    /// Longest name accepted.
    pub const MAX_LEN: usize = 63;

    pub fn new(name: &str) -> Result<TenantName, BadTenantName> {
        let bad = |why| Err(BadTenantName { name: name.to_string(), why });
        if name.is_empty() {
            return bad("must not be empty");
        }
        if name.len() > Self::MAX_LEN {
            return bad("is longer than 63 characters");
        }
        if !name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-') {
            return bad("may hold only lower-case ASCII letters, digits and '-'");
        }
        if name.starts_with('-') {
            return bad("must start with a letter or digit");
        }
        Ok(TenantName(Arc::from(name)))
    }

    /// The tenant `default`.
    pub fn default_tenant() -> TenantName {
        TenantName(Arc::from(Self::DEFAULT))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_default(&self) -> bool {
        &*self.0 == Self::DEFAULT
    }

    /// `key` in this tenant's namespace: unchanged for the default tenant (so a store written
    /// before tenants keeps its cursor, token and lease keys), `<tenant>/<key>` otherwise. No
    /// tenant name holds a `/`, so two tenants' keys never meet.
    pub fn qualify(&self, key: &str) -> String {
        if self.is_default() {
            key.to_string()
        } else {
            format!("{}/{key}", self.0)
        }
    }
}

impl Default for TenantName {
    fn default() -> Self {
        TenantName::default_tenant()
    }
}

impl fmt::Display for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(&self.0)
    }
}

impl fmt::Debug for TenantName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TenantName({:?})", &*self.0)
    }
}

impl std::str::FromStr for TenantName {
    type Err = BadTenantName;
    fn from_str(s: &str) -> Result<TenantName, BadTenantName> {
        TenantName::new(s)
    }
}

impl TryFrom<String> for TenantName {
    type Error = BadTenantName;
    fn try_from(s: String) -> Result<TenantName, BadTenantName> {
        TenantName::new(&s)
    }
}

impl<'de> Deserialize<'de> for TenantName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<TenantName, D::Error> {
        let s = String::deserialize(d)?;
        TenantName::new(&s).map_err(serde::de::Error::custom)
    }
}

/// Compared with its text (`s.tenant == "acme"`).
impl PartialEq<str> for TenantName {
    fn eq(&self, other: &str) -> bool {
        &*self.0 == other
    }
}

impl PartialEq<&str> for TenantName {
    fn eq(&self, other: &&str) -> bool {
        &*self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert_eq!(TenantName::new("acme-2").unwrap().as_str(), "acme-2");
        for bad in ["", "Acme", "a/b", "a:b", "a b", "-a", "é", &"a".repeat(64)] {
            assert!(TenantName::new(bad).is_err(), "{bad:?}");
        }
        let e = TenantName::new("a/b").unwrap_err().to_string();
        assert!(e.contains("\"a/b\"") && e.contains("lower-case"), "{e}");
    }

    #[test]
    fn the_default_tenant_keeps_keys_unchanged() {
        let d = TenantName::default();
        assert!(d.is_default());
        assert_eq!(d.qualify("zoom:main"), "zoom:main");
        let acme = TenantName::new("acme").unwrap();
        assert_eq!(acme.qualify("zoom:main"), "acme/zoom:main");
        assert_ne!(acme.qualify("teamviewer"), TenantName::new("acme2").unwrap().qualify("teamviewer"));
    }
}
