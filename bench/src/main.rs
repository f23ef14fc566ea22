//! keycard's load harness. One run starts every server configuration in turn (rounds
//! interleaved), drives each with `wrk` over loopback — server pinned to core 0, wrk to core 1 —
//! and prints req/s, p50 and p99 per configuration with the ratio of each to bare axum.
//!
//! ```sh
//! cargo run --release -p keycard-bench --bin loadtest -- run            # the table, to stdout
//! cargo run --release -p keycard-bench --bin loadtest -- run --write BENCHMARKS.md
//! cargo run --release -p keycard-bench --bin loadtest -- memory         # bytes per in-memory session
//! cargo run --release -p keycard-bench --bin loadtest -- chart BENCHMARKS.md  # redraw BENCHMARKS.svg from its table
//! cargo run --release -p keycard-bench --bin loadtest -- serve keycard-memory 127.0.0.1:9000 127.0.0.1:9001
//! ```
//! `run` options: `--rounds N` (5), `--duration SECS` (8), `--connections N` (32),
//! `--configs a,b,...` (all), `--write FILE` (regenerate the results section of FILE, and draw the chart of
//! req/s ÷ bare beside it, `FILE` with `.svg`).

#![forbid(unsafe_code)]

mod chart;
mod driver;
mod memory;
mod servers;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("serve") => serve(&args[1..]),
        Some("run") => driver::run(&args[1..]),
        Some("memory") => memory::run(&args[1..]),
        Some("chart") => chart::run(&args[1..]),
        _ => {
            Err("usage: loadtest run [options] | memory [--sessions N] | chart RESULTS.md | serve CONFIG ADDR [CONTROL_ADDR]".into())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("loadtest: {error}");
            ExitCode::FAILURE
        }
    }
}

/// Runs one server until killed: a single worker thread, so the pinned core is its whole budget.
/// `CONTROL_ADDR` (optional) serves the harness's control routes apart from the measured app.
fn serve(args: &[String]) -> Result<(), Box<dyn std::error::Error>> {
    let (config, addr, control_addr) = match args {
        [config, addr] => (config, addr, None),
        [config, addr, control] => (config, addr, Some(control)),
        _ => return Err("usage: loadtest serve CONFIG ADDR [CONTROL_ADDR]".into()),
    };
    let config: servers::Config = config.parse()?;
    let addr: std::net::SocketAddr = addr.parse()?;
    let control_addr: Option<std::net::SocketAddr> =
        control_addr.map(|addr| addr.parse()).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let server = servers::server(config).await?;
        if let Some(control_addr) = control_addr {
            let listener = tokio::net::TcpListener::bind(control_addr).await?;
            tokio::spawn(async move { axum::serve(listener, server.control).await });
        }
        let listener = tokio::net::TcpListener::bind(addr).await?;
        match server.app {
            servers::App::Router(router) => axum::serve(listener, router).await?,
            servers::App::Keycard(stack) => {
                let make_service =
                    axum::ServiceExt::<axum::extract::Request>::into_make_service(stack);
                axum::serve(listener, make_service).await?;
            }
            servers::App::KeycardLimited(stack) => {
                let make_service =
                    axum::ServiceExt::<axum::extract::Request>::into_make_service(stack);
                axum::serve(listener, make_service).await?;
            }
        }
        Ok(())
    })
}
