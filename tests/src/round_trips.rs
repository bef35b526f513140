//! A TCP relay between the pipeline and PostgreSQL that counts database round trips.
//!
//! `pg_stat_statements` counts statements, not how many times the application waited for the
//! server: pipelined statements travel together. The relay counts *turns*: every time the client
//! sends after the server last spoke on that connection, the client had been waiting for an
//! answer (or starts a new exchange) — one round trip. Statements sent together count once;
//! connection start-up (TLS probe, start-up, authentication) counts its few turns too.
//!
//! It runs on a thread of its own ([`RELAY_THREAD`]) so a benchmark can subtract its CPU.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The relay thread's name.
pub const RELAY_THREAD: &str = "lf-rt-relay";

/// A running relay: where to connect instead of the server, and the turns counted so far.
pub struct Relay {
    pub port: u16,
    turns: Arc<AtomicU64>,
}

impl Relay {
    /// Relays every connection made to `port` to `upstream`, on its own thread and runtime.
    pub fn start(upstream: SocketAddr) -> anyhow::Result<Relay> {
        let listener = std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let turns = Arc::new(AtomicU64::new(0));
        let counted = turns.clone();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        std::thread::Builder::new()
            .name(RELAY_THREAD.into())
            .spawn(move || {
                runtime.block_on(async move {
                    let Ok(listener) = TcpListener::from_std(listener) else {
                        return;
                    };
                    while let Ok((client, _)) = listener.accept().await {
                        let turns = counted.clone();
                        tokio::spawn(async move {
                            if let Ok(server) = TcpStream::connect(upstream).await {
                                relay(client, server, turns).await;
                            }
                        });
                    }
                });
            })?;
        Ok(Relay { port, turns })
    }

    /// Round trips counted so far, over every connection.
    pub fn turns(&self) -> u64 {
        self.turns.load(Ordering::Relaxed)
    }
}

async fn relay(client: TcpStream, server: TcpStream, turns: Arc<AtomicU64>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (mut client_rx, mut client_tx) = client.into_split();
    let (mut server_rx, mut server_tx) = server.into_split();
    // The client's first bytes start an exchange too.
    let server_spoke = Arc::new(AtomicBool::new(true));
    let heard = server_spoke.clone();
    let upstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = client_rx.read(&mut buf).await {
            if server_spoke.swap(false, Ordering::AcqRel) {
                turns.fetch_add(1, Ordering::Relaxed);
            }
            if server_tx.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = server_tx.shutdown().await;
    };
    let downstream = async move {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = server_rx.read(&mut buf).await {
            // Marked before the client can have read the answer, so its reply counts.
            heard.store(true, Ordering::Release);
            if client_tx.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
        let _ = client_tx.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}
