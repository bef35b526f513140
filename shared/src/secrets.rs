//! Secrets from AWS Secrets Manager, read once at start-up and layered over the environment, so
//! the deployment template never holds a secret value. `LF_SECRET_ARNS` lists secret ARNs (comma
//! separated); each secret is a JSON object of variable names to values, e.g.
//! `{"DATABASE_URL": "postgres://…", "YELP_API_KEY": "…"}` — or a database secret in RDS's
//! format (`username`, `password`, `host`, `port`, `dbname`), from which `shared::config` builds
//! the connection.

use std::collections::HashMap;

use crate::config::{ProcessEnv, Source};

/// The Secrets Manager client type, re-exported so functions need no direct SDK dependency.
pub type Client = aws_sdk_secretsmanager::Client;

#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("reading secret {arn}: {detail}")]
    Fetch { arn: String, detail: String },
    #[error("secret {arn} is not a JSON object of strings (or numbers)")]
    Shape { arn: String },
    #[error("storing secret {name}: {detail}")]
    Store { name: String, detail: String },
}

/// A Secrets Manager client of `sdk` (for a [`crate::aws::LazyClient`]).
pub fn client(sdk: &aws_config::SdkConfig) -> Client {
    Client::new(sdk)
}

/// Creates the JSON secret `name`, or stores `values` as its new version when it exists; its
/// ARN.
pub async fn put(
    client: &Client,
    name: &str,
    values: &serde_json::Value,
) -> Result<String, SecretsError> {
    let fail = |detail: String| SecretsError::Store {
        name: name.to_owned(),
        detail,
    };
    match client
        .create_secret()
        .name(name)
        .secret_string(values.to_string())
        .send()
        .await
    {
        Ok(out) => Ok(out.arn.unwrap_or_default()),
        Err(e)
            if e.as_service_error()
                .is_some_and(aws_sdk_secretsmanager::operation::create_secret::CreateSecretError::is_resource_exists_exception)
                || aws_sdk_secretsmanager::error::DisplayErrorContext(&e)
                    .to_string()
                    .contains("ResourceExists") =>
        {
            let out = client
                .put_secret_value()
                .secret_id(name)
                .secret_string(values.to_string())
                .send()
                .await
                .map_err(|e| {
                    fail(aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string())
                })?;
            Ok(out.arn.unwrap_or_default())
        }
        Err(e) => Err(fail(
            aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
        )),
    }
}

/// Fetches every secret in `arns` and merges their keys (later secrets win).
pub async fn load(
    client: &aws_sdk_secretsmanager::Client,
    arns: &[String],
) -> Result<HashMap<String, String>, SecretsError> {
    let mut out = HashMap::new();
    for arn in arns {
        let v = client
            .get_secret_value()
            .secret_id(arn)
            .send()
            .await
            .map_err(|e| SecretsError::Fetch {
                arn: arn.clone(),
                detail: aws_sdk_secretsmanager::error::DisplayErrorContext(e).to_string(),
            })?;
        let text = v
            .secret_string()
            .ok_or_else(|| SecretsError::Shape { arn: arn.clone() })?;
        // RDS's attached secrets carry the port as a number: scalars are kept as their text.
        let map: HashMap<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|_| SecretsError::Shape { arn: arn.clone() })?;
        for (k, v) in map {
            let text = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => return Err(SecretsError::Shape { arn: arn.clone() }),
            };
            out.insert(k, text);
        }
    }
    Ok(out)
}

/// Secrets first, then the process environment.
pub struct Layered {
    pub secrets: HashMap<String, String>,
}

impl Source for Layered {
    fn get(&self, name: &str) -> Option<String> {
        self.secrets
            .get(name)
            .cloned()
            .or_else(|| ProcessEnv.get(name))
    }
}

/// The configuration source every function starts from: the secrets named by `LF_SECRET_ARNS`
/// (fetched once, at start-up) over the process environment. Without `LF_SECRET_ARNS`, no call
/// is made.
pub async fn from_env() -> Result<Layered, SecretsError> {
    let arns: Vec<String> = ProcessEnv
        .get("LF_SECRET_ARNS")
        .map(|v| {
            v.split(',')
                .map(|a| a.trim().to_owned())
                .filter(|a| !a.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if arns.is_empty() {
        return Ok(Layered {
            secrets: HashMap::new(),
        });
    }
    let sdk = crate::aws::sdk_config(ProcessEnv.get("AWS_ENDPOINT_URL").as_deref()).await;
    Ok(Layered {
        secrets: load(&Client::new(&sdk), &arns).await?,
    })
}
