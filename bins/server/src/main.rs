//! `facerec-server`: the Face API over HTTP. Reads flags (or `FACEREC_*` variables), sets up
//! logging, loads the models once, opens the data dir and runs the server from `facerec-api`
//! until SIGINT or SIGTERM, then flushes the face store.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use facerec::FaceEngine;
use facerec_api::{ApiConfig, FaceService, ServerOptions};

/// Self-hosted face recognition: the Face API over HTTP.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// Address to listen on.
    #[arg(long, env = "FACEREC_BIND", default_value = "127.0.0.1:5000")]
    bind: String,

    /// Data dir: face sets in DATA_DIR/faces, face crops in DATA_DIR/crops.
    #[arg(long, env = "FACEREC_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,

    /// Folder with the ONNX models (pnet, rnet, onet and the embedding model).
    #[arg(long, env = "FACEREC_MODELS_DIR", default_value = "./models")]
    models_dir: PathBuf,

    /// Most face tokens (and crops) kept in memory; the oldest are evicted first.
    #[arg(long, env = "FACEREC_MAX_TOKENS", default_value_t = 100_000)]
    max_tokens: usize,

    /// Age at which a face token (and its crop) expires: seconds, or a number with a unit
    /// s, m, h or d, possibly combined ("90", "45m", "72h", "1d12h").
    #[arg(long, env = "FACEREC_TOKEN_TTL", default_value = "72h", value_parser = parse_duration)]
    token_ttl: Duration,

    /// HTTP worker threads [default: number of CPUs].
    #[arg(long, env = "FACEREC_WORKERS")]
    workers: Option<usize>,

    /// Threads running decode + detection + embedding [default: number of CPUs].
    #[arg(long, env = "FACEREC_INFERENCE_THREADS")]
    inference_threads: Option<usize>,

    /// Inference jobs allowed to wait for a thread; when full, requests get 503 with
    /// Retry-After instead of queueing without bound.
    #[arg(long, env = "FACEREC_QUEUE", default_value_t = 64)]
    queue: usize,

    /// Log format (the filter comes from RUST_LOG, default "info").
    #[arg(long, env = "FACEREC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    init_logging(args.log_format);

    let engine = load_models(&args.models_dir)?;
    let mut config = ApiConfig::new(&args.data_dir);
    config.max_tokens = args.max_tokens;
    config.token_ttl = args.token_ttl;
    config.queue = args.queue;
    if let Some(threads) = args.inference_threads {
        config.inference_threads = threads;
    }
    let service = FaceService::open(engine, config).with_context(|| {
        format!(
            "cannot use data dir {} (pass --data-dir or FACEREC_DATA_DIR)",
            args.data_dir.display()
        )
    })?;

    let listener = TcpListener::bind(&args.bind).with_context(|| {
        format!(
            "cannot listen on {} (pass --bind or FACEREC_BIND)",
            args.bind
        )
    })?;
    let mut options = ServerOptions::default();
    if let Some(workers) = args.workers {
        options.workers = workers;
    }
    tracing::info!(
        addr = %listener.local_addr().context("reading the listening address")?,
        workers = options.workers,
        "listening"
    );

    actix_web::rt::System::new()
        .block_on(async { facerec_api::server(service.clone(), listener, &options)?.await })?;
    service.flush().context("flushing the face store")?;
    tracing::info!("stopped; face store flushed");
    Ok(())
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
}

fn load_models(dir: &Path) -> anyhow::Result<Arc<FaceEngine>> {
    if !dir.is_dir() {
        bail!(
            "models dir {} does not exist: run from the repository root or pass --models-dir \
             (FACEREC_MODELS_DIR)",
            dir.display()
        );
    }
    let started = std::time::Instant::now();
    let engine = FaceEngine::from_dir(dir)
        .with_context(|| format!("cannot load the models from {}", dir.display()))?;
    let model = engine.model();
    tracing::info!(
        dir = %dir.display(),
        model = %model.id,
        dims = model.dims,
        threshold = %model.threshold,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "models loaded"
    );
    Ok(Arc::new(engine))
}

/// Seconds ("90") or numbers with units s, m, h, d, possibly combined ("1h30m").
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if let Ok(seconds) = text.parse::<u64>() {
        return positive(Duration::from_secs(seconds), text);
    }
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            _ => return Err(format!("'{text}': unknown unit '{c}' (use s, m, h or d)")),
        };
        let n: u64 = number
            .parse()
            .map_err(|_| format!("'{text}': a number must come before '{c}'"))?;
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(|| format!("'{text}' is too long"))?;
        number.clear();
    }
    if !number.is_empty() {
        return Err(format!(
            "'{text}': '{number}' has no unit (use s, m, h or d)"
        ));
    }
    positive(Duration::from_secs(total), text)
}

fn positive(d: Duration, text: &str) -> Result<Duration, String> {
    if d.is_zero() {
        Err(format!("'{text}': the duration must be positive"))
    } else {
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("72h"), Ok(Duration::from_secs(72 * 3600)));
        assert_eq!(parse_duration("1d12h"), Ok(Duration::from_secs(36 * 3600)));
        assert_eq!(parse_duration("1h30m15s"), Ok(Duration::from_secs(5415)));
        for bad in [
            "",
            "0",
            "0s",
            "h",
            "5x",
            "12h5",
            "-3",
            "99999999999999999999d",
        ] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn flags_have_the_documented_defaults() {
        let args = Args::try_parse_from(["facerec-server"]).unwrap();
        assert_eq!(args.bind, "127.0.0.1:5000");
        assert_eq!(args.data_dir, PathBuf::from("./data"));
        assert_eq!(args.models_dir, PathBuf::from("./models"));
        assert_eq!(args.max_tokens, 100_000);
        assert_eq!(args.token_ttl, Duration::from_secs(72 * 3600));
        assert_eq!(args.queue, 64);
        assert_eq!(args.log_format, LogFormat::Text);
    }

    #[test]
    fn a_missing_models_dir_is_named_with_the_fix() {
        let err = load_models(Path::new("/nonexistent/models"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/models"), "{err}");
        assert!(err.contains("--models-dir"), "{err}");
    }
}
