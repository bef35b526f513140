//! The database as `docs/deploy.md` sets it up, in one place: the administrator creates the
//! schema owner, the functions' group and login roles and the operators' two roles, then the
//! database owned by the owner; the owner runs the migrations. The local cloud stand-in runs it
//! on its own server (trust authentication, no passwords); `leadfactory db provision` runs it
//! against the database the template creates, with each role's password from its generated
//! secret (set again on every run, so a rotated secret is synced).

use std::collections::HashMap;

use secrecy::{ExposeSecret, SecretString};

/// The schema owner: owns the tables, runs migrations, not a superuser.
pub const OWNER_ROLE: &str = "leadfactory_owner";
/// The functions' group role (the migrations grant to it).
pub const APP_ROLE: &str = "leadfactory_app";
/// The functions' login role, a member of [`APP_ROLE`] only.
pub const APP_LOGIN: &str = shared::db::cluster::APP_LOGIN;
/// The operators' reading role (exports, status, dead letters' reasons; the backup function):
/// BYPASSRLS, SELECT only (and its drills' record).
pub const BACKUP_ROLE: &str = "leadfactory_backup";
/// The operators' restore role: BYPASSRLS, SELECT and INSERT, into an empty database.
pub const RESTORE_ROLE: &str = "leadfactory_restore";

/// The login roles, each with a secret of its own in the template.
pub const LOGIN_ROLES: [&str; 4] = [OWNER_ROLE, APP_LOGIN, BACKUP_ROLE, RESTORE_ROLE];

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{what}: {}", shared::db::describe(.source))]
    Db {
        what: String,
        source: tokio_postgres::Error,
    },
    #[error("creating the role {role}: {detail}")]
    Role { role: String, detail: String },
}

fn db(what: impl Into<String>) -> impl FnOnce(tokio_postgres::Error) -> ProvisionError {
    let what = what.into();
    move |source| ProvisionError::Db { what, source }
}

fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', ""))
}

/// A string literal for SQL (a password: `CREATE ROLE` takes no parameters).
fn literal(v: &str) -> String {
    format!("'{}'", v.replace('\'', "''"))
}

/// Creates the roles that are missing (with `passwords`, when given, set on each login role
/// every time) and `database` owned by the owner if it is missing, as `admin` (a superuser, or
/// RDS's master user). Returns whether the database was created.
pub async fn roles_and_database(
    admin: &tokio_postgres::Client,
    database: &str,
    passwords: Option<&HashMap<&str, SecretString>>,
) -> Result<bool, ProvisionError> {
    for (role, attributes) in [
        (OWNER_ROLE, "LOGIN".to_owned()),
        (APP_ROLE, "NOLOGIN".to_owned()),
        (APP_LOGIN, format!("LOGIN IN ROLE {APP_ROLE}")),
        (BACKUP_ROLE, "LOGIN BYPASSRLS".to_owned()),
        (RESTORE_ROLE, "LOGIN BYPASSRLS".to_owned()),
    ] {
        shared::db::cluster::ensure_role(admin, role, &attributes)
            .await
            .map_err(|e| ProvisionError::Role {
                role: role.to_owned(),
                detail: e.to_string(),
            })?;
        if let Some(p) = passwords.and_then(|p| p.get(role)) {
            admin
                .batch_execute(&format!(
                    "ALTER ROLE {role} PASSWORD {}",
                    literal(p.expose_secret())
                ))
                .await
                .map_err(db(format!("setting {role}'s password")))?;
        }
    }
    let exists = admin
        .query_opt(
            "SELECT 1 AS found FROM pg_database WHERE datname = $1",
            &[&database],
        )
        .await
        .map_err(db("looking for the database"))?
        .is_some();
    if exists {
        return Ok(false);
    }
    // CREATE DATABASE … OWNER needs the administrator to be able to act as the owner (RDS's
    // master user is not a superuser); a superuser can already.
    admin
        .batch_execute(&format!(
            "DO $$ BEGIN
               IF NOT (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) THEN
                 GRANT {OWNER_ROLE} TO CURRENT_USER;
               END IF;
             END $$;"
        ))
        .await
        .map_err(db("letting the administrator create the owner's database"))?;
    admin
        .batch_execute(&format!(
            "CREATE DATABASE {} OWNER {OWNER_ROLE}",
            quoted(database)
        ))
        .await
        .map_err(db("creating the database"))?;
    Ok(true)
}

/// Drops `database` (the stand-in's fresh start), as `admin`.
pub async fn drop_database(
    admin: &tokio_postgres::Client,
    database: &str,
) -> Result<(), ProvisionError> {
    admin
        .batch_execute(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            quoted(database)
        ))
        .await
        .map_err(db("dropping the database"))
}
