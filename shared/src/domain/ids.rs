//! Typed identifiers, so a tenant id can never be passed where a business id is expected.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::DomainError;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// A fresh random id.
            pub fn new() -> Self {
                Self(Uuid::new_v4())
            }

            pub fn from_uuid(id: Uuid) -> Self {
                Self(id)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }

            /// Parses the textual UUID form, naming the id kind on failure.
            pub fn parse(raw: &str) -> Result<Self, DomainError> {
                Uuid::parse_str(raw.trim())
                    .map(Self)
                    .map_err(|e| DomainError::new($kind, format!("{raw:?} is not a UUID ({e})")))
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = DomainError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Self::parse(s)
            }
        }

        impl From<$name> for Uuid {
            fn from(id: $name) -> Uuid {
                id.0
            }
        }
    };
}

id_type!(
    /// The agency (customer) that owns a row; row-level security keys on it.
    TenantId,
    "tenant id"
);
id_type!(
    /// A sourced local business.
    BusinessId,
    "business id"
);
id_type!(
    /// A targeting campaign (vertical + geography + quota).
    CampaignId,
    "campaign id"
);
id_type!(
    /// One nightly (or manual) execution of the pipeline.
    RunId,
    "run id"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_displays_round_trip() {
        let id = TenantId::new();
        assert_eq!(TenantId::parse(&id.to_string()).unwrap(), id);
    }

    #[test]
    fn rejects_garbage_and_names_the_kind() {
        let err = BusinessId::parse("not-a-uuid").unwrap_err();
        assert_eq!(err.kind, "business id");
        assert!(err.to_string().contains("not-a-uuid"));
    }
}
