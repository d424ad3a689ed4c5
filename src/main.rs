//! The `tierwise` command line: `serve` (default), `check-config`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tierwise::app::{self, AppState};
use tierwise::config;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(name = "tierwise", version, about = "OpenAI-compatible LLM routing proxy")]
struct Cli {
    /// Config file (TOML). Without one, the built-in default is used.
    #[arg(long, global = true, env = "TIERWISE_CONFIG")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (the default).
    Serve,
    /// Validate a config file: print every problem, or a summary.
    CheckConfig {
        /// The file to check (default: --config / TIERWISE_CONFIG / the built-in default).
        file: Option<PathBuf>,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env = |name: &str| std::env::var(name).ok();
    match cli.command.unwrap_or(Command::Serve) {
        Command::CheckConfig { file } => match config::load(file.or(cli.config).as_deref(), &env) {
            Ok(config) => {
                print!("{}", config.summary());
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("{err}");
                ExitCode::FAILURE
            }
        },
        Command::Serve => {
            init_logging();
            let config = match config::load(cli.config.as_deref(), &env) {
                Ok(config) => config,
                Err(err) => {
                    eprintln!("{err}");
                    return ExitCode::FAILURE;
                }
            };
            match serve(config) {
                Ok(()) => ExitCode::SUCCESS,
                Err(err) => {
                    eprintln!("tierwise: {err}");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

fn init_logging() {
    let filter = EnvFilter::try_from_env("TIERWISE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn serve(config: config::Config) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let listen = config.server.listen;
        let source = config.source.to_string();
        let state = AppState::new(config)?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen} (server.listen): {e}"))?;
        tracing::info!(%listen, config = %source, "tierwise listening");
        app::serve(listener, state, shutdown_signal()).await.map_err(|e| format!("server error: {e}"))
    })
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}
