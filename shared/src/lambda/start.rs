//! Why a function could not start: what every function's `main` returns from its wiring.

/// Printed by a function's `main` when its start fails (Lambda shows it as the init error): its
/// `Debug` is its message, naming each variable at fault.
#[derive(thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    Db(#[from] crate::db::DbError),
    #[error(transparent)]
    Secrets(#[from] crate::secrets::SecretsError),
    #[error(transparent)]
    Vendor(#[from] crate::vendors::VendorError),
    /// A variable that is present but unusable (a key that does not parse, a secret too short).
    #[error("{variable}: {reason}")]
    Invalid {
        variable: &'static str,
        reason: String,
    },
}

impl std::fmt::Debug for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}
