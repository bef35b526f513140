//! The local account's services: moto (queues with their redrive policies, the bucket, the
//! secrets), and the database with the roles `docs/deploy.md` prescribes.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use aws_sdk_sqs::types::QueueAttributeName as A;

use super::CloudError;
use super::template::{QueueDef, Template};

pub use crate::provision::{APP_LOGIN, APP_ROLE, BACKUP_ROLE, OWNER_ROLE, RESTORE_ROLE};

/// A running moto server: one started here (stopped with the value) or one given.
pub struct Moto {
    pub url: String,
    child: Option<tokio::process::Child>,
}

impl Moto {
    /// The moto server at `url`, or a new one on a free loopback port.
    pub async fn start(url: Option<String>) -> Result<Moto, CloudError> {
        if let Some(url) = url {
            return Ok(Moto { url, child: None });
        }
        let bin = moto_bin();
        let port = shared::db::cluster::free_port()
            .map_err(|e| CloudError::Service(format!("a port for moto: {e}")))?;
        let mut cmd = tokio::process::Command::new(&bin);
        cmd.args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true);
        super::die_with_parent(&mut cmd);
        let child = cmd.spawn().map_err(|e| {
            CloudError::Service(format!(
                "starting moto_server ({}): {e}; scripts/test installs it into the tool venv",
                bin.display()
            ))
        })?;
        let url = format!("http://127.0.0.1:{port}");
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Ok(Moto {
                    url,
                    child: Some(child),
                });
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(CloudError::Service(format!(
            "moto_server did not listen on {url} within 15 s"
        )))
    }

    pub async fn stop(&mut self) {
        if let Some(c) = self.child.as_mut() {
            let _ = c.kill().await;
        }
    }
}

/// `moto_server` from `LF_MOTO_BIN`, the project's tool venv (`LF_TOOLS_VENV`, by default
/// `~/.cache/leadfactory-venv`) or `PATH`.
fn moto_bin() -> PathBuf {
    if let Ok(p) = std::env::var("LF_MOTO_BIN") {
        return p.into();
    }
    let venv = std::env::var("LF_TOOLS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/leadfactory-venv")
        });
    let candidate = venv.join("bin/moto_server");
    if candidate.is_file() {
        candidate
    } else {
        "moto_server".into()
    }
}

fn aws_err<E: std::error::Error + Send + Sync + 'static>(
    what: String,
) -> impl FnOnce(aws_sdk_sqs::error::SdkError<E>) -> CloudError {
    move |e| {
        CloudError::Service(format!(
            "{what}: {}",
            aws_sdk_sqs::error::DisplayErrorContext(e)
        ))
    }
}

/// A created queue.
#[derive(Debug, Clone)]
pub struct Queue {
    pub def: QueueDef,
    pub url: String,
    pub arn: String,
}

/// Creates every queue of the template, dead-letter queues first, with the template's
/// attributes.
pub async fn create_queues(
    sqs: &aws_sdk_sqs::Client,
    template: &Template,
) -> Result<HashMap<String, Queue>, CloudError> {
    let mut made: HashMap<String, Queue> = HashMap::new();
    let mut order: Vec<&QueueDef> = template.queues.iter().collect();
    order.sort_by_key(|q| q.redrive.is_some());
    for q in order {
        let mut req = sqs.create_queue().queue_name(&q.name).attributes(
            A::VisibilityTimeout,
            q.visibility_timeout.as_secs().to_string(),
        );
        if let Some(r) = q.retention {
            req = req.attributes(A::MessageRetentionPeriod, r.as_secs().to_string());
        }
        if let Some(r) = &q.redrive {
            let dlq = made.get(&r.dlq).ok_or_else(|| {
                CloudError::Template(format!(
                    "{}: its dead-letter queue {} is not a queue of the template",
                    q.logical_id, r.dlq
                ))
            })?;
            req = req.attributes(
                A::RedrivePolicy,
                serde_json::json!({
                    "deadLetterTargetArn": dlq.arn,
                    "maxReceiveCount": r.max_receive_count,
                })
                .to_string(),
            );
        }
        let url = req
            .send()
            .await
            .map_err(aws_err(format!("creating queue {}", q.name)))?
            .queue_url
            .unwrap_or_default();
        let arn = sqs
            .get_queue_attributes()
            .queue_url(&url)
            .attribute_names(A::QueueArn)
            .send()
            .await
            .map_err(aws_err(format!("reading queue {}", q.name)))?
            .attributes
            .and_then(|a| a.get(&A::QueueArn).cloned())
            .unwrap_or_default();
        made.insert(
            q.logical_id.clone(),
            Queue {
                def: q.clone(),
                url,
                arn,
            },
        );
    }
    Ok(made)
}

pub async fn create_bucket(s3: &aws_sdk_s3::Client, name: &str) -> Result<(), CloudError> {
    s3.create_bucket().bucket(name).send().await.map_err(|e| {
        CloudError::Service(format!(
            "creating bucket {name}: {}",
            aws_sdk_s3::error::DisplayErrorContext(e)
        ))
    })?;
    Ok(())
}

/// Creates (or updates) a JSON secret; its ARN.
pub async fn put_secret(
    sm: &aws_sdk_secretsmanager::Client,
    name: &str,
    values: &serde_json::Value,
) -> Result<String, CloudError> {
    shared::secrets::put(sm, name, values)
        .await
        .map_err(|e| CloudError::Service(e.to_string()))
}

/// The database as `docs/deploy.md` sets it up: the owner and the functions' roles created by
/// an administrator, the database owned by the owner, the migrations run as the owner.
#[derive(Debug, Clone)]
pub struct Database {
    pub name: String,
    /// The schema owner's URL (migrations).
    pub owner_url: String,
    /// `leadfactory_backup`'s URL (export, status, dead letters' reasons).
    pub backup_url: String,
    /// `leadfactory_restore`'s URL (restore into an empty database).
    pub restore_url: String,
    /// The functions' URL (`leadfactory_fn`, RLS applies).
    pub app_url: String,
}

/// Creates the roles when missing and `db` (dropping a previous one of that name when `fresh`),
/// then migrates it as the owner. `admin_url` is a superuser's URL on the server.
pub async fn provision_database(
    admin_url: &str,
    db: &str,
    fresh: bool,
) -> Result<Database, CloudError> {
    let fail = |what: &str| {
        let what = what.to_owned();
        move |e: tokio_postgres::Error| {
            CloudError::Service(format!("{what}: {}", shared::db::describe(&e)))
        }
    };
    let (admin, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls)
        .await
        .map_err(fail("connecting as the administrator"))?;
    tokio::spawn(conn);
    // docs/deploy.md, "Database": the administrator's statements (trust authentication here).
    let provision = |e: crate::provision::ProvisionError| CloudError::Service(e.to_string());
    if fresh {
        crate::provision::drop_database(&admin, db)
            .await
            .map_err(provision)?;
    }
    crate::provision::roles_and_database(&admin, db, None)
        .await
        .map_err(provision)?;
    let mut cfg: tokio_postgres::Config =
        admin_url.parse().map_err(fail("the administrator URL"))?;
    cfg.dbname(db).user(OWNER_ROLE);
    let url_as = |user: &str| {
        let host = cfg
            .get_hosts()
            .first()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(s) => s.clone(),
                tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .unwrap_or_else(|| "127.0.0.1".into());
        let port = cfg.get_ports().first().copied().unwrap_or(5432);
        format!("postgres://{user}@{host}:{port}/{db}")
    };
    let (mut owner, conn) = cfg
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(fail("connecting as the owner"))?;
    tokio::spawn(conn);
    shared::db::migrate(&mut owner)
        .await
        .map_err(|e| CloudError::Service(format!("migrating as {OWNER_ROLE}: {e}")))?;
    Ok(Database {
        name: db.to_owned(),
        owner_url: url_as(OWNER_ROLE),
        backup_url: url_as(BACKUP_ROLE),
        restore_url: url_as(RESTORE_ROLE),
        app_url: url_as(APP_LOGIN),
    })
}

/// Drops a database this stand-in created.
pub async fn drop_database(admin_url: &str, db: &str) {
    if let Ok((admin, conn)) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await {
        tokio::spawn(conn);
        let _ = crate::provision::drop_database(&admin, db).await;
    }
}
