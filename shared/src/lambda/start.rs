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

/// A setting given as a file: the file `variable` names in `source`, or `embedded` when it names
/// none, read by `parse`. A file that cannot be read or does not parse is a start error naming
/// the variable (and the file).
pub fn file_or_embedded<T, E: std::fmt::Display>(
    source: &dyn crate::config::Source,
    variable: &'static str,
    embedded: &str,
    parse: impl FnOnce(&str) -> Result<T, E>,
) -> Result<T, StartError> {
    let invalid = |reason: String| StartError::Invalid { variable, reason };
    match source.get(variable) {
        Some(path) => {
            let text =
                std::fs::read_to_string(&path).map_err(|e| invalid(format!("{path}: {e}")))?;
            parse(&text).map_err(|e| invalid(format!("{path}: {e}")))
        }
        None => parse(embedded).map_err(|e| invalid(format!("the embedded default: {e}"))),
    }
}

impl std::fmt::Debug for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn parse(t: &str) -> Result<i64, std::num::ParseIntError> {
        t.trim().parse()
    }

    #[test]
    fn a_file_setting_is_the_named_file_or_the_embedded_default_and_its_errors_name_the_variable() {
        let none: HashMap<&str, &str> = HashMap::new();
        assert_eq!(file_or_embedded(&none, "LF_X", "7", parse).unwrap(), 7);
        let dir = std::env::temp_dir().join(format!("lf-start-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(&good, "42\n").unwrap();
        let bad = dir.join("bad");
        std::fs::write(&bad, "forty-two").unwrap();
        let good = good.to_string_lossy().into_owned();
        let bad = bad.to_string_lossy().into_owned();
        let src: HashMap<&str, &str> = [("LF_X", good.as_str())].into();
        assert_eq!(file_or_embedded(&src, "LF_X", "7", parse).unwrap(), 42);
        let src: HashMap<&str, &str> = [("LF_X", bad.as_str())].into();
        let e = file_or_embedded(&src, "LF_X", "7", parse)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("LF_X: ") && e.contains(&bad), "{e}");
        let src: HashMap<&str, &str> = [("LF_X", "/nonexistent/lf-x")].into();
        let e = file_or_embedded(&src, "LF_X", "7", parse)
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("LF_X: /nonexistent/lf-x"), "{e}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
