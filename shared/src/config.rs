//! Typed configuration, loaded once per container from environment variables (the Lambda way).
//! Every problem is collected and reported together, each naming its variable, so a broken
//! deployment is fixed in one pass. Secrets are `SecretString`: their `Debug` prints a redaction.

use std::collections::HashMap;
use std::fmt::Display;
use std::str::FromStr;

use secrecy::{ExposeSecret, SecretString};

/// Where configuration values come from: the process environment in production, a map in tests.
pub trait Source {
    fn get(&self, name: &str) -> Option<String>;
}

/// The process environment.
pub struct ProcessEnv;

impl Source for ProcessEnv {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl Source for HashMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).cloned()
    }
}

impl Source for HashMap<&str, &str> {
    fn get(&self, name: &str) -> Option<String> {
        HashMap::get(self, name).map(|v| (*v).to_owned())
    }
}

/// One configuration problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigProblem {
    #[error("{0} is not set")]
    Missing(String),
    #[error("{name} is invalid: {reason}")]
    Invalid { name: String, reason: String },
}

/// All configuration problems found in one load.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("configuration: {}", .0.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct ConfigError(pub Vec<ConfigProblem>);

/// Reads variables from a [`Source`], remembering every problem instead of stopping at the first.
pub struct Reader<'a> {
    source: &'a dyn Source,
    problems: Vec<ConfigProblem>,
}

impl<'a> Reader<'a> {
    pub fn new(source: &'a dyn Source) -> Self {
        Self {
            source,
            problems: Vec::new(),
        }
    }

    fn raw(&self, name: &str) -> Option<String> {
        self.source
            .get(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    /// A required plain value.
    pub fn required(&mut self, name: &str) -> String {
        self.raw(name).unwrap_or_else(|| {
            self.problems.push(ConfigProblem::Missing(name.to_owned()));
            String::new()
        })
    }

    pub fn optional(&mut self, name: &str) -> Option<String> {
        self.raw(name)
    }

    /// A required secret; its value never appears in errors or `Debug` output.
    pub fn secret(&mut self, name: &str) -> SecretString {
        SecretString::from(self.required(name))
    }

    pub fn optional_secret(&mut self, name: &str) -> Option<SecretString> {
        self.raw(name).map(SecretString::from)
    }

    /// An optional value parsed with `FromStr`, `default` when unset.
    pub fn parsed_or<T>(&mut self, name: &str, default: T) -> T
    where
        T: FromStr,
        T::Err: Display,
    {
        match self.raw(name) {
            None => default,
            Some(v) => v.parse().unwrap_or_else(|e: T::Err| {
                self.problems.push(ConfigProblem::Invalid {
                    name: name.to_owned(),
                    // The value itself is not echoed: it might be a secret put in the wrong variable.
                    reason: e.to_string(),
                });
                default
            }),
        }
    }

    /// Records a problem found by a caller's own validation.
    pub fn invalid(&mut self, name: &str, reason: impl Into<String>) {
        self.problems.push(ConfigProblem::Invalid {
            name: name.to_owned(),
            reason: reason.into(),
        });
    }

    /// Ends the load: the value if nothing was wrong, otherwise every problem.
    pub fn finish<T>(self, value: T) -> Result<T, ConfigError> {
        if self.problems.is_empty() {
            Ok(value)
        } else {
            Err(ConfigError(self.problems))
        }
    }
}

/// Production or development. Development relaxes exactly one thing: outbound fetches may target
/// loopback/private addresses (the local vendor simulator). Production is the default.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Production,
    Development,
}

impl FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "production" | "prod" => Ok(Mode::Production),
            "development" | "dev" | "local" => Ok(Mode::Development),
            other => Err(format!("expected production or development, got {other:?}")),
        }
    }
}

/// Which object store implementation a process uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    S3 { bucket: String },
    Local { root: std::path::PathBuf },
}

/// What every function needs: the database, the object store and where AWS lives.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    pub mode: Mode,
    pub database_url: SecretString,
    pub db_pool_size: usize,
    pub store: StoreConfig,
    /// Set for moto/localstack; unset in AWS, where the SDK's default endpoints apply.
    pub aws_endpoint_url: Option<String>,
}

impl CoreConfig {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::load(&ProcessEnv)
    }

    pub fn load(source: &dyn Source) -> Result<Self, ConfigError> {
        let mut r = Reader::new(source);
        let mode = r.parsed_or("LF_MODE", Mode::Production);
        let database_url = database_url(&mut r);
        let db_pool_size = r.parsed_or("LF_DB_POOL_SIZE", 4usize);
        if db_pool_size == 0 {
            r.invalid("LF_DB_POOL_SIZE", "must be at least 1");
        }
        let store = match r.optional("LF_STORE").as_deref() {
            None | Some("s3") => StoreConfig::S3 {
                bucket: r.required("LF_BUCKET"),
            },
            Some("local") => StoreConfig::Local {
                root: r.required("LF_LOCAL_STORE_DIR").into(),
            },
            Some(other) => {
                r.invalid("LF_STORE", format!("expected s3 or local, got {other:?}"));
                StoreConfig::Local { root: ".".into() }
            }
        };
        let aws_endpoint_url = r.optional("AWS_ENDPOINT_URL");
        r.finish(CoreConfig {
            mode,
            database_url,
            db_pool_size,
            store,
            aws_endpoint_url,
        })
    }
}

/// The database's connection string: `DATABASE_URL`, or one built from a secret in the format
/// RDS and Secrets Manager's rotation use (`username`, `password`, `host`, `port`, `dbname`; the
/// template's generated secrets), its host replaced by `LF_DATABASE_HOST` when set (the RDS
/// Proxy's endpoint: the secret's host is the instance's) and TLS required unless the secret
/// says otherwise (`sslmode`).
/// [`database_url`] alone, for a tool connecting with a role's secret (`leadfactory db
/// provision`).
pub fn database_url_of(source: &dyn Source) -> Result<SecretString, ConfigError> {
    let mut r = Reader::new(source);
    let url = database_url(&mut r);
    r.finish(url)
}

fn database_url(r: &mut Reader<'_>) -> SecretString {
    let Some(user) = r.optional("username") else {
        return r.secret("DATABASE_URL");
    };
    if let Some(url) = r.optional_secret("DATABASE_URL") {
        return url;
    }
    let password = r.secret("password");
    let host = r
        .optional("LF_DATABASE_HOST")
        .unwrap_or_else(|| r.required("host"));
    let port: u16 = r.parsed_or("port", 5432);
    let dbname = r.optional("dbname").unwrap_or_else(|| "leadfactory".into());
    let sslmode = r.optional("sslmode").unwrap_or_else(|| "require".into());
    // A key/value connection string: each value quoted, so no character of a password needs
    // the percent-encoding a URL would.
    let quote = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
    SecretString::from(format!(
        "host={} port={port} dbname={} user={} password={} sslmode={}",
        quote(&host),
        quote(&dbname),
        quote(&user),
        quote(password.expose_secret()),
        quote(&sslmode)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_database_secret_in_the_rds_format_is_a_connection_through_the_proxy() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("username", "leadfactory_fn"),
            ("password", "it's a \\secret"),
            ("host", "lf.abc.us-east-1.rds.amazonaws.com"),
            ("port", "5432"),
            ("dbname", "leadfactory"),
            ("engine", "postgres"),
            (
                "LF_DATABASE_HOST",
                "lf-proxy.proxy-abc.us-east-1.rds.amazonaws.com",
            ),
            ("LF_BUCKET", "b"),
        ]);
        let c = CoreConfig::load(&env).unwrap();
        let pg: tokio_postgres::Config = c.database_url.expose_secret().parse().unwrap();
        assert_eq!(pg.get_user(), Some("leadfactory_fn"));
        assert_eq!(pg.get_password(), Some("it's a \\secret".as_bytes()));
        assert_eq!(pg.get_dbname(), Some("leadfactory"));
        assert_eq!(pg.get_ssl_mode(), tokio_postgres::config::SslMode::Require);
        assert_eq!(
            pg.get_hosts(),
            [tokio_postgres::config::Host::Tcp(
                "lf-proxy.proxy-abc.us-east-1.rds.amazonaws.com".into()
            )]
        );
        assert!(!format!("{c:?}").contains("secret"));
        // Without the proxy's host, the secret's; without a password, the error names it.
        let mut direct = env.clone();
        direct.remove("LF_DATABASE_HOST");
        let c = CoreConfig::load(&direct).unwrap();
        assert!(
            c.database_url
                .expose_secret()
                .contains("host='lf.abc.us-east-1")
        );
        direct.remove("password");
        let e = CoreConfig::load(&direct).unwrap_err().to_string();
        assert!(e.contains("password is not set"), "{e}");
    }

    #[test]
    fn loads_a_complete_configuration() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("DATABASE_URL", "postgres://u:hunter2@db/lf"),
            ("LF_BUCKET", "lf-bucket"),
            ("LF_MODE", "development"),
        ]);
        let c = CoreConfig::load(&env).unwrap();
        assert_eq!(c.mode, Mode::Development);
        assert_eq!(
            c.store,
            StoreConfig::S3 {
                bucket: "lf-bucket".into()
            }
        );
        assert_eq!(c.db_pool_size, 4);
        assert_eq!(c.database_url.expose_secret(), "postgres://u:hunter2@db/lf");
    }

    #[test]
    fn reports_every_problem_by_name_and_never_the_secret() {
        let env: HashMap<&str, &str> =
            HashMap::from([("LF_DB_POOL_SIZE", "lots"), ("LF_MODE", "staging")]);
        let err = CoreConfig::load(&env).unwrap_err();
        let text = err.to_string();
        for name in [
            "DATABASE_URL is not set",
            "LF_BUCKET is not set",
            "LF_DB_POOL_SIZE is invalid",
            "LF_MODE is invalid",
        ] {
            assert!(text.contains(name), "{text} should mention {name}");
        }
        assert_eq!(err.0.len(), 4);
    }

    #[test]
    fn secrets_are_redacted_in_debug() {
        let env: HashMap<&str, &str> = HashMap::from([
            ("DATABASE_URL", "postgres://u:hunter2@db/lf"),
            ("LF_STORE", "local"),
            ("LF_LOCAL_STORE_DIR", "/tmp/x"),
        ]);
        let c = CoreConfig::load(&env).unwrap();
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
