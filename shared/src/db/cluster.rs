//! A throwaway PostgreSQL cluster from the machine's own server binaries, for the local run
//! (`leadfactory db start`) and for tests that must start their own database. Production never
//! uses this: it connects to `DATABASE_URL`.
//!
//! PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user (created
//! when missing) via `runuser`. The cluster listens on 127.0.0.1 only, with trust authentication:
//! it is a local development and test database, never a deployment.

use std::net::TcpListener;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use tokio::process::Command;

/// The superuser of a local cluster.
pub const SUPERUSER: &str = "postgres";
/// The login role functions use locally: a member of `leadfactory_app`, so RLS applies to it.
pub const APP_LOGIN: &str = "leadfactory_fn";
/// The database the local run uses.
pub const DEFAULT_DB: &str = "leadfactory";

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl) not found on PATH or under /usr/lib/postgresql/*/bin; install them with `apt-get install postgresql`"
    )]
    BinariesNotFound,
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("I/O error at {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> ClusterError + '_ {
    move |source| ClusterError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A running local cluster.
#[derive(Debug, Clone)]
pub struct LocalCluster {
    pub dir: PathBuf,
    pub port: u16,
}

/// Finds the directory holding `initdb` and `pg_ctl`.
pub fn find_bin_dir() -> Result<PathBuf, ClusterError> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("initdb").is_file() && dir.join("pg_ctl").is_file() {
                return Ok(dir);
            }
        }
    }
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let major = e.file_name().to_string_lossy().parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").is_file().then_some((major, bin))
        })
        .collect();
    versioned.sort();
    versioned
        .pop()
        .map(|(_, p)| p)
        .ok_or(ClusterError::BinariesNotFound)
}

/// Whether this process runs as root (server binaries must then run as `postgres`).
pub fn running_as_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

/// A free loopback TCP port (the OS picks; the listener is dropped before the server binds).
pub fn free_port() -> Result<u16, ClusterError> {
    let l = TcpListener::bind("127.0.0.1:0").map_err(io_err(Path::new("127.0.0.1:0")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(io_err(Path::new("127.0.0.1:0")))
}

async fn run(what: &str, mut cmd: Command) -> Result<String, ClusterError> {
    let out = cmd.output().await.map_err(|e| ClusterError::Command {
        what: what.to_owned(),
        detail: e.to_string(),
    })?;
    if !out.status.success() {
        return Err(ClusterError::Command {
            what: what.to_owned(),
            detail: format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            )
            .trim()
            .to_owned(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A command for a server binary, run as `postgres` when we are root.
fn server_cmd(bin: &Path, as_root: bool) -> Command {
    if as_root {
        let mut c = Command::new("runuser");
        c.args(["-u", SUPERUSER, "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

async fn ensure_os_user() -> Result<(), ClusterError> {
    let mut id = Command::new("id");
    id.args(["-u", SUPERUSER]);
    if run("id -u postgres", id).await.is_ok() {
        return Ok(());
    }
    let mut add = Command::new("useradd");
    add.args([
        "--system",
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        SUPERUSER,
    ]);
    run("useradd postgres", add).await.map(|_| ())
}

async fn chown(path: &Path) -> Result<(), ClusterError> {
    let mut c = Command::new("chown");
    c.arg("-R")
        .arg(format!("{SUPERUSER}:{SUPERUSER}"))
        .arg(path);
    run("chown", c).await.map(|_| ())
}

impl LocalCluster {
    fn data(dir: &Path) -> PathBuf {
        dir.join("data")
    }

    fn port_file(dir: &Path) -> PathBuf {
        dir.join("port")
    }

    /// Starts (initialising on first use) the cluster under `dir`, or returns the one already
    /// running there. `durable = false` turns fsync off: for tests only.
    pub async fn start(dir: &Path, durable: bool) -> Result<Self, ClusterError> {
        let bin = find_bin_dir()?;
        let as_root = running_as_root();
        tokio::fs::create_dir_all(dir).await.map_err(io_err(dir))?;
        let dir = tokio::fs::canonicalize(dir).await.map_err(io_err(dir))?;
        let data = Self::data(&dir);
        let sock = dir.join("sock");
        tokio::fs::create_dir_all(&sock)
            .await
            .map_err(io_err(&sock))?;

        if let Some(running) = Self::running(&dir).await {
            return Ok(running);
        }
        if as_root {
            ensure_os_user().await?;
        }
        if !data.join("PG_VERSION").is_file() {
            tokio::fs::create_dir_all(&data)
                .await
                .map_err(io_err(&data))?;
            if as_root {
                chown(&dir).await?;
            }
            let mut c = server_cmd(&bin.join("initdb"), as_root);
            c.arg("-D").arg(&data).args([
                "-U",
                SUPERUSER,
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C.UTF-8",
                "--no-sync",
            ]);
            run("initdb", c).await?;
        } else if as_root {
            chown(&dir).await?;
        }
        let port = free_port()?;
        let mut opts = format!(
            "-k {} -p {port} -c listen_addresses=127.0.0.1 -c max_connections=200",
            sock.display()
        );
        if !durable {
            opts.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let mut c = server_cmd(&bin.join("pg_ctl"), as_root);
        c.arg("-D")
            .arg(&data)
            .args(["-w", "-t", "60", "-l"])
            .arg(dir.join("server.log"))
            .args(["-o", &opts, "start"]);
        run("pg_ctl start", c).await?;
        tokio::fs::write(Self::port_file(&dir), port.to_string())
            .await
            .map_err(io_err(&dir))?;
        Ok(Self { dir, port })
    }

    /// The cluster already running under `dir`, if its recorded port answers.
    pub async fn running(dir: &Path) -> Option<Self> {
        let port: u16 = tokio::fs::read_to_string(Self::port_file(dir))
            .await
            .ok()?
            .trim()
            .parse()
            .ok()?;
        if !Self::data(dir).join("postmaster.pid").is_file() {
            return None;
        }
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()?;
        Some(Self {
            dir: dir.to_owned(),
            port,
        })
    }

    /// Stops the cluster under `dir` (fast shutdown); a stopped cluster is not an error.
    pub async fn stop(dir: &Path) -> Result<bool, ClusterError> {
        let data = Self::data(dir);
        if !data.join("postmaster.pid").is_file() {
            return Ok(false);
        }
        let bin = find_bin_dir()?;
        let mut c = server_cmd(&bin.join("pg_ctl"), running_as_root());
        c.arg("-D").arg(&data).args(["-m", "fast", "-w", "stop"]);
        run("pg_ctl stop", c).await?;
        Ok(true)
    }

    /// The superuser URL for `db`.
    pub fn admin_url(&self, db: &str) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{db}", self.port)
    }

    /// The application-role URL for `db` (RLS applies).
    pub fn app_url(&self, db: &str) -> String {
        format!("postgres://{APP_LOGIN}@127.0.0.1:{}/{db}", self.port)
    }
}

const DATABASE_EXISTS: &str = "SELECT 1 FROM pg_database WHERE datname = $1";

/// Creates `db` when missing, migrates it, and creates the local application login role.
/// `admin_url` must point at any database of the cluster as a superuser.
pub async fn prepare_database(admin_url: &str, db: &str) -> Result<(), super::DbError> {
    let (client, conn) = tokio_postgres::connect(admin_url, tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    let exists = client.query_opt(DATABASE_EXISTS, &[&db]).await?.is_some();
    if !exists {
        client
            .batch_execute(&format!("CREATE DATABASE \"{}\"", db.replace('"', "")))
            .await?;
    }
    let mut cfg: tokio_postgres::Config = admin_url
        .parse()
        .map_err(|e: tokio_postgres::Error| super::DbError::BadUrl(e.to_string()))?;
    cfg.dbname(db);
    let (mut target, conn) = cfg.connect(tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    super::migrate(&mut target).await?;
    ensure_app_login(&target, APP_LOGIN).await
}

/// Creates a LOGIN role that is a member of `leadfactory_app` (and nothing more) if missing.
pub async fn ensure_app_login(
    client: &tokio_postgres::Client,
    name: &str,
) -> Result<(), super::DbError> {
    ensure_role(
        client,
        name,
        "LOGIN NOSUPERUSER NOBYPASSRLS IN ROLE leadfactory_app",
    )
    .await
}

/// Creates the role `name` with `attributes` (code's constants, never input) unless it exists.
/// Roles belong to the whole server, so sessions preparing different databases at once race to
/// create the same one: the loser's `CREATE ROLE` fails with a duplicate, which means done.
pub async fn ensure_role(
    client: &tokio_postgres::Client,
    name: &str,
    attributes: &str,
) -> Result<(), super::DbError> {
    let safe: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    client
        .batch_execute(&format!(
            "DO $$ BEGIN
               IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = '{safe}') THEN
                 CREATE ROLE {safe} {attributes};
               END IF;
             EXCEPTION WHEN duplicate_object OR unique_violation THEN
               NULL;
             END $$;"
        ))
        .await?;
    Ok(())
}
