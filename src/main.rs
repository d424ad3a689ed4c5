//! The `tierwise` command line: `serve` (default), `check-config`, `explain`, `eval`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use tierwise::app::AppState;
use tierwise::telemetry::Telemetry;
use tierwise::{config, policy, reload, server, shutdown};
use tracing::Level;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

/// mimalloc instead of glibc's malloc: fewer instructions per allocation and free on the
/// request path (bench/README.md, "Allocator").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// What a request would do — each step and why it would run or be skipped — without
    /// calling any model.
    Explain {
        /// The task (or model alias) a request would name.
        #[arg(long)]
        task: String,
        /// The caller's profile.
        #[arg(long, default_value = "default")]
        profile: String,
        /// The class the request would state (normal, sensitive).
        #[arg(long)]
        content_class: Option<String>,
        /// Message text, run through the sensitive-content detector.
        #[arg(long)]
        message: Option<String>,
        /// Language of the reasons: en, de (default: the profile's).
        #[arg(long)]
        lang: Option<String>,
        /// Print JSON (the same as POST /v1/tierwise/explain).
        #[arg(long)]
        json: bool,
    },
    /// Measure what the chain buys: run a dataset (JSONL) through the task's chain and
    /// each of its models alone, grade every answer, and write a report (Markdown, JSON,
    /// an SVG curve). See docs/eval.md.
    Eval(tierwise::eval::Options),
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
        Command::Explain { task, profile, content_class, message, lang, json } => {
            let request = ExplainArgs { task, profile, content_class, message, lang, json };
            match config::load(cli.config.as_deref(), &env)
                .map_err(|e| e.to_string())
                .and_then(|c| explain(&c, &request))
            {
                Ok(text) => {
                    print!("{text}");
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("{err}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Eval(options) => {
            // The report says what failed; per-request logs would bury the progress bars.
            init_logging_with("warn,tower_http=off,tierwise::server=warn");
            let command_line = std::env::args().collect::<Vec<_>>().join(" ");
            match run_eval(cli.config.as_deref(), &options, command_line) {
                Ok(report) => {
                    println!("{}", options.out.join("report.md").display());
                    let best = report.target.cheapest.as_deref().unwrap_or("no chain setting");
                    println!("reaches {:.0} % of the best model alone: {best}", report.target.share * 100.0);
                    ExitCode::SUCCESS
                }
                Err(err) => {
                    eprintln!("tierwise eval: {err}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Serve => {
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

struct ExplainArgs {
    task: String,
    profile: String,
    content_class: Option<String>,
    message: Option<String>,
    lang: Option<String>,
    json: bool,
}

fn explain(config: &config::Config, args: &ExplainArgs) -> Result<String, String> {
    let resolved = policy::resolve(config, &args.task)
        .map_err(|u| format!("unknown task or model \"{}\"; known: {}", u.name, u.known.join(", ")))?;
    let profile = config.profiles.get(&args.profile).ok_or_else(|| {
        let known: Vec<&str> = config.profiles.keys().map(String::as_str).collect();
        format!("unknown profile \"{}\"; known: {}", args.profile, known.join(", "))
    })?;
    let locale = match args.lang.as_deref() {
        None => profile.locale,
        Some(tag) => policy::Locale::parse(tag).ok_or_else(|| format!("unknown language \"{tag}\": use en or de"))?,
    };
    let task_class = if resolved.direct {
        policy::ContentClass::Normal
    } else {
        config.tasks.get(&resolved.task).map(|t| t.content_class).unwrap_or(policy::ContentClass::Normal)
    };
    let finding = args.message.as_deref().and_then(|text| config.detector.scan([("--message", text)]));
    let stated = [(policy::Source::Header, args.content_class.as_deref())];
    let class = policy::classify(task_class, &stated, finding)
        .map_err(|bad| format!("unknown content class \"{}\": use normal or sensitive", bad.value))?;
    let explanation = tierwise::explain::explain(config, &resolved, profile, &class, locale);
    if args.json {
        serde_json::to_string_pretty(&explanation).map(|s| s + "\n").map_err(|e| e.to_string())
    } else {
        Ok(explanation.to_text())
    }
}

/// Logs to stderr (`TIERWISE_LOG`, default `info`), and with traces on, tierwise's spans
/// — its DEBUG trace spans and events included — to the OTLP exporter.
fn init_logging_and_traces(telemetry: Option<&Telemetry>) {
    let Some(telemetry) = telemetry else {
        // Without traces, the plain subscriber: a registry with per-layer filters costs
        // measurably more per request (bench/README.md, "Traces: on against off").
        init_logging_with("info");
        return;
    };
    let filter = EnvFilter::try_from_env("TIERWISE_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_filter(filter);
    // tierwise's own trace spans and events at DEBUG; nothing else below INFO, as debug
    // lines may carry an upstream's words.
    let spans =
        Targets::new().with_target("tierwise", Level::INFO).with_target(tierwise::telemetry::TARGET, Level::DEBUG);
    let traces = telemetry.layer().with_filter(spans);
    tracing_subscriber::registry().with(logs).with(traces).init();
}

fn init_logging_with(default: &str) {
    let filter = EnvFilter::try_from_env("TIERWISE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
}

fn run_eval(
    config: Option<&std::path::Path>,
    options: &tierwise::eval::Options,
    command_line: String,
) -> Result<tierwise::eval::Report, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let env = |name: &str| std::env::var(name).ok();
    runtime.block_on(tierwise::eval::run(config, &env, options, command_line))
}

/// Starts the exporter (inside the runtime: the gRPC one needs it to live on) and the
/// logs, serves until shutdown, then flushes the spans still queued.
fn serve(config: config::Config) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    let telemetry = {
        let _entered = runtime.enter();
        config.tracing.as_ref().map(Telemetry::start).transpose()?
    };
    init_logging_and_traces(telemetry.as_ref());
    let served = serve_on(&runtime, config);
    if let Some(telemetry) = telemetry {
        telemetry.shutdown();
    }
    served
}

fn serve_on(runtime: &tokio::runtime::Runtime, config: config::Config) -> Result<(), String> {
    runtime.block_on(async move {
        let listen = config.server.listen;
        let source = config.source.to_string();
        let state = AppState::new(config).map_err(|e| e.to_string())?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .map_err(|e| format!("cannot listen on {listen} (server.listen): {e}"))?;
        tracing::info!(%listen, config = %source, "tierwise listening");
        reload::on_sighup(state.clone());
        tokio::spawn(shutdown::on_signal(state.shutdown.clone()));
        server::serve(listener, state).await.map_err(|e| format!("server error: {e}"))
    })
}
