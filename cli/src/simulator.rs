//! `leadfactory sim`: the vendor simulator on its own, for poking at it or pointing a
//! hand-started function at it.

use std::net::SocketAddr;

use anyhow::Context;
use sim::{SimConfig, Simulator};

#[derive(clap::Args)]
pub struct SimArgs {
    /// Address to listen on (loopback only by default)
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Seed of the generated world
    #[arg(long, default_value_t = 42)]
    seed: u64,
}

pub async fn run(args: SimArgs) -> anyhow::Result<()> {
    let cfg = SimConfig {
        seed: args.seed,
        ..SimConfig::default()
    };
    let s = Simulator::start(cfg.clone(), args.listen)
        .await
        .context("starting the simulator")?;
    let base = s.base_url();
    println!("vendor simulator listening on {base}");
    println!();
    println!("Point the clients at it:");
    for v in shared::vendors::config::VENDOR_PREFIXES {
        println!("  LF_{v}_URL={base}");
    }
    println!(
        "  YELP_API_KEY={}  GOOGLE_PLACES_API_KEY={}  OPENAI_API_KEY={}",
        cfg.yelp_key, cfg.google_key, cfg.openai_key
    );
    println!(
        "  SENDGRID_API_KEY={}  STRIPE_SECRET_KEY={}  (webhook secret {})",
        cfg.sendgrid_key, cfg.stripe_key, cfg.stripe_webhook_secret
    );
    println!("  SLACK_WEBHOOK_URL={base}{}", cfg.slack_path);
    println!();
    println!("Admin endpoints:");
    for (path, what) in sim::ADMIN_ENDPOINTS {
        println!("  {path:<40} {what}");
    }
    println!();
    println!(
        "Simulated sites answer at http://www.<slug>.test:{}/ (Host header); Ctrl-C stops.",
        s.addr.port()
    );
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
