//! `leadfactory cloud up|fire|status|down`: the local stand-in for the AWS account (see
//! `leadfactory_cli::cloud`). `up` runs in the foreground until `down` or Ctrl-C; the others
//! talk to it through the control port recorded in `<state>/cloud/cloud.json`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Subcommand;
use leadfactory_cli::cloud::{Cloud, CloudOptions, schedule, template::Template};
use shared::db::cluster::LocalCluster;

#[derive(clap::Args)]
pub struct CloudArgs {
    #[command(subcommand)]
    action: CloudAction,
    /// Where the stand-in keeps its database cluster, logs and state file
    #[arg(long, global = true, default_value = ".leadfactory")]
    state: PathBuf,
}

#[derive(clap::Args, Clone)]
pub struct UpArgs {
    /// The SAM template to stand up
    #[arg(long, default_value = "infra/template.yaml")]
    pub template: PathBuf,
    /// Directory of the functions' binaries (default: beside this program)
    #[arg(long)]
    pub bin_dir: Option<PathBuf>,
    /// How much faster than real time schedules, batching windows and visibility timeouts pass
    #[arg(long, default_value = "1x", value_parser = schedule::parse_factor)]
    pub clock: f64,
    /// The template's Stage parameter
    #[arg(long, default_value = "local")]
    pub stage: String,
    /// Seed of the simulated world
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Subcommand)]
enum CloudAction {
    /// Create the account from the template and run it until `cloud down` (or Ctrl-C)
    Up(UpArgs),
    /// Fire a schedule now (`<Function>.<Event>` or the event's name) and print the answer
    Fire { schedule: String },
    /// Each function's processes, cold starts, invocations and errors
    Status,
    /// Stop everything `cloud up` started
    Down,
}

/// What `up` records for the other commands.
#[derive(serde::Serialize, serde::Deserialize)]
struct StateFile {
    pid: u32,
    control: String,
    gateway: String,
    moto: String,
    simulator: String,
    database_url: String,
    database_owner_url: String,
    #[serde(default)]
    database_backup_url: String,
    queue_prefix: String,
}

fn state_file(state: &Path) -> PathBuf {
    state.join("cloud/cloud.json")
}

fn read_state(state: &Path) -> anyhow::Result<StateFile> {
    let path = state_file(state);
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no stand-in is up ({} is missing)", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("{} is unreadable", path.display()))
}

/// The stand-in's account and the PostgreSQL cluster under `<state>/cloud/pg` it lives on.
pub async fn start(
    state: &Path,
    args: &UpArgs,
    run_schedules: bool,
) -> anyhow::Result<(Cloud, LocalCluster)> {
    let pg_dir = state.join("cloud/pg");
    let pg = LocalCluster::start(&pg_dir, true)
        .await
        .context("starting PostgreSQL")?;
    let bin_dir = match &args.bin_dir {
        Some(d) => d.clone(),
        None => std::env::current_exe()?
            .parent()
            .map(Path::to_path_buf)
            .context("the directory of this program")?,
    };
    let template = Template::load(
        &args.template,
        &[("Stage".to_owned(), args.stage.clone())].into(),
    )?;
    let opts = CloudOptions {
        bin_dir,
        log_dir: state.join("cloud/logs"),
        admin_url: pg.admin_url("postgres"),
        database: "leadfactory".into(),
        fresh_database: true,
        moto_url: None,
        clock: args.clock,
        run_schedules,
        sim: sim::SimConfig {
            seed: args.seed,
            ..sim::SimConfig::default()
        },
        deliver_twice: false,
    };
    let cloud = match Cloud::start(opts, template).await {
        Ok(c) => c,
        Err(e) => {
            let _ = LocalCluster::stop(&pg_dir).await;
            return Err(e.into());
        }
    };
    Ok((cloud, pg))
}

async fn up(state: &Path, args: UpArgs) -> anyhow::Result<()> {
    let (cloud, pg) = start(state, &args, true).await?;
    let cloud = Arc::new(cloud);
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let control = axum::Router::new()
        .route(
            "/fire/{name}",
            axum::routing::post({
                let cloud = cloud.clone();
                move |axum::extract::Path(name): axum::extract::Path<String>| {
                    let cloud = cloud.clone();
                    async move {
                        match cloud.fire(&name).await {
                            Ok(v) => (http::StatusCode::OK, v.to_string()),
                            Err(e) => (http::StatusCode::BAD_REQUEST, e.to_string()),
                        }
                    }
                }
            }),
        )
        .route(
            "/status",
            axum::routing::get({
                let cloud = cloud.clone();
                move || {
                    let cloud = cloud.clone();
                    async move {
                        serde_json::json!({
                            "counters": cloud.counters(),
                            "processes": cloud.processes().len(),
                        })
                        .to_string()
                    }
                }
            }),
        )
        .route(
            "/shutdown",
            axum::routing::post(move || {
                let _ = stop_tx.send(true);
                async { "stopping" }
            }),
        );
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?;
    let control_url = format!("http://{}", listener.local_addr()?);
    let file = StateFile {
        pid: std::process::id(),
        control: control_url.clone(),
        gateway: cloud.gateway_url.clone(),
        moto: cloud.moto.url.clone(),
        simulator: cloud.sim.base_url(),
        database_url: cloud.db.app_url.clone(),
        database_owner_url: cloud.db.owner_url.clone(),
        database_backup_url: cloud.db.backup_url.clone(),
        queue_prefix: cloud.queue_prefix(),
    };
    std::fs::write(state_file(state), serde_json::to_string_pretty(&file)?)?;
    println!("the account of {} is up:", args.template.display());
    println!("  HTTP API        {}", file.gateway);
    println!("  moto (AWS)      {}   (AWS_ENDPOINT_URL)", file.moto);
    println!("  simulator       {}", file.simulator);
    println!("  DATABASE_URL={}", file.database_url);
    println!("  DATABASE_OWNER_URL={}", file.database_owner_url);
    println!("  DATABASE_BACKUP_URL={}", file.database_backup_url);
    println!("  LF_QUEUE_PREFIX={}", file.queue_prefix);
    println!(
        "  {} functions, schedules on a {}x clock: {}",
        cloud.functions.len(),
        args.clock,
        cloud.schedule_names().join(", ")
    );
    println!("  logs in {}", state.join("cloud/logs").display());
    println!(
        "`leadfactory cloud fire <schedule>` fires one now; `leadfactory cloud down` stops it."
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, control).await;
    });
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = stop_rx.changed() => {}
    }
    server.abort();
    let _ = std::fs::remove_file(state_file(state));
    if let Ok(cloud) = Arc::try_unwrap(cloud) {
        cloud.stop().await;
    }
    LocalCluster::stop(&pg.dir).await?;
    eprintln!("stopped");
    Ok(())
}

pub async fn run(args: CloudArgs) -> anyhow::Result<()> {
    let state = args.state;
    match args.action {
        CloudAction::Up(up_args) => up(&state, up_args).await,
        CloudAction::Fire { schedule } => {
            let s = read_state(&state)?;
            let resp = reqwest::Client::new()
                .post(format!("{}/fire/{schedule}", s.control))
                .send()
                .await
                .context("reaching the stand-in")?;
            let ok = resp.status().is_success();
            let text = resp.text().await?;
            anyhow::ensure!(ok, "{text}");
            println!("{text}");
            Ok(())
        }
        CloudAction::Status => {
            let s = read_state(&state)?;
            let text = reqwest::get(format!("{}/status", s.control))
                .await
                .context("reaching the stand-in")?
                .text()
                .await?;
            println!("{text}");
            Ok(())
        }
        CloudAction::Down => {
            let s = read_state(&state)?;
            let _ = reqwest::Client::new()
                .post(format!("{}/shutdown", s.control))
                .send()
                .await;
            for _ in 0..300 {
                // SAFETY: kill(pid, 0) only asks whether the process exists.
                let alive = i32::try_from(s.pid).is_ok_and(|p| unsafe { libc::kill(p, 0) } == 0);
                if !alive {
                    eprintln!("the stand-in stopped");
                    return Ok(());
                }
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            anyhow::bail!("the stand-in (pid {}) did not stop within 30 s", s.pid)
        }
    }
}
