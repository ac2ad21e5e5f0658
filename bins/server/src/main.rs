//! `facerec-server`: the Face API over HTTP. Reads flags (or `FACEREC_*` variables), sets up
//! logging, loads the models once, opens the face store (sled in the data dir, or a shared
//! PostgreSQL) and runs the server from `facerec-api` until SIGINT or SIGTERM, then flushes
//! the face store. `facerec-server store copy` moves face sets between stores.

mod keys;
mod store;

use std::net::{TcpListener, ToSocketAddrs};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand, ValueEnum};
use facerec::{EngineConfig, FaceEngine, ModelSpec};
use facerec_api::{AllowedHost, ApiConfig, FaceService, RateLimit, ServerOptions};
use facerec_store::StoreConfig;
use facerec_store_postgres::Postgres;

use crate::store::StoreSpec;

/// Self-hosted face recognition: the Face API over HTTP.
#[derive(Debug, Parser)]
#[command(version, about, args_conflicts_with_subcommands = true)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Address to listen on.
    #[arg(long, env = "FACEREC_BIND", default_value = "127.0.0.1:5000")]
    bind: String,

    /// Data dir: face sets in DATA_DIR/faces, face crops in DATA_DIR/crops.
    #[arg(long, env = "FACEREC_DATA_DIR", default_value = "./data")]
    data_dir: PathBuf,

    /// Where the face sets (and face tokens) live: sled:DATA_DIR, embedded, for one server
    /// [default: sled:<--data-dir>]; or postgres://USER@HOST:PORT/DB, shared by several
    /// servers behind a load balancer.
    #[arg(long, env = "FACEREC_STORE", value_name = "STORE")]
    store: Option<StoreSpec>,

    #[arg(
        long,
        env = "FACEREC_POOL_SIZE",
        value_name = "N",
        help = with_default(
            "Most PostgreSQL connections held (with --store postgres://...)",
            store::pg_config("", None).pool_size,
        )
    )]
    pool_size: Option<usize>,

    /// Folder with the ONNX models (pnet, rnet, onet and the embedding model).
    #[arg(long, env = "FACEREC_MODELS_DIR", default_value = "./models")]
    models_dir: PathBuf,

    /// The embedding model: dlib (id dlib_face_recognition_resnet_model_v1, 128-d),
    /// mobilefacenet (192-d) or dlib+mobilefacenet (both fused, 320-d). A data dir or
    /// database keeps the model that made it.
    #[arg(
        long,
        env = "FACEREC_MODEL",
        value_name = "NAME",
        default_value = "dlib"
    )]
    model: ModelSpec,

    /// Run the embedding model's convolutions in 8-bit integers: about 1.8x faster per face on
    /// CPUs with AVX-512 VNNI, 1.4x on AVX2 (the server refuses to start on a CPU with
    /// neither), LFW accuracy within 0.3 points. An embedding moves by about 1 % of its length
    /// (0.014-0.020 for dlib, whose threshold is 0.6), so the model id stays and a data dir can
    /// switch either way.
    #[arg(long, env = "FACEREC_INT8")]
    int8: bool,

    #[arg(
        long,
        env = "FACEREC_MAX_TOKENS",
        value_name = "N",
        help = with_default(
            "Most face tokens (and crops) kept in memory; the oldest are evicted first",
            defaults().tokens.max_entries,
        )
    )]
    max_tokens: Option<usize>,

    #[arg(
        long,
        env = "FACEREC_TOKEN_TTL",
        value_name = "DURATION",
        value_parser = parse_duration,
        help = with_default(
            "Age at which a face token (and its crop) expires: seconds, or a number with a \
             unit s, m, h or d, possibly combined (\"90\", \"45m\", \"72h\", \"1d12h\")",
            format_duration(defaults().tokens.ttl),
        )
    )]
    token_ttl: Option<Duration>,

    /// HTTP worker threads [default: number of CPUs].
    #[arg(long, env = "FACEREC_WORKERS")]
    workers: Option<usize>,

    /// Threads running decode + detection + embedding [default: number of CPUs].
    #[arg(long, env = "FACEREC_INFERENCE_THREADS")]
    inference_threads: Option<usize>,

    #[arg(
        long,
        env = "FACEREC_QUEUE",
        value_name = "N",
        help = with_default(
            "Inference jobs allowed to wait for a thread; when full, requests get 503 with \
             Retry-After instead of queueing without bound",
            defaults().queue,
        )
    )]
    queue: Option<usize>,

    /// Accept image_url (image_url_a, image_url_b): the server fetches the image itself, over
    /// http or https, from public addresses only (see --image-url-allow) [default: off].
    #[arg(long, env = "FACEREC_ALLOW_IMAGE_URLS")]
    allow_image_urls: bool,

    /// A host image URLs may be fetched from although it is not public: a host name, an
    /// address or a CIDR range (images.internal, 10.0.0.5, 10.1.0.0/16); repeat the flag or
    /// separate with commas. Needs --allow-image-urls.
    #[arg(
        long,
        env = "FACEREC_IMAGE_URL_ALLOW",
        value_name = "HOST",
        value_delimiter = ',',
        requires = "allow_image_urls"
    )]
    image_url_allow: Vec<AllowedHost>,

    /// Serve requests without an API key while no key exists, although --bind is not a
    /// loopback address (e.g. behind a proxy that authenticates). Without it, such a server
    /// refuses to start until a key exists (`facerec-server keys create`).
    #[arg(long, env = "FACEREC_ALLOW_ANONYMOUS")]
    allow_anonymous: bool,

    #[arg(
        long,
        env = "FACEREC_RATE_LIMIT",
        value_name = "N",
        help = with_default(
            "Requests per second each API key may send on average (0: no limit)",
            defaults().auth.rate_limit.map_or(0, |r| r.per_second.get()),
        )
    )]
    rate_limit: Option<u32>,

    #[arg(
        long,
        env = "FACEREC_RATE_BURST",
        value_name = "N",
        help = with_default(
            "Requests each API key may send at once, above its rate",
            defaults().auth.rate_limit.map_or(0, |r| r.burst.get()),
        )
    )]
    rate_burst: Option<u32>,

    #[arg(
        long,
        env = "FACEREC_MAX_IMAGE_BYTES",
        value_name = "SIZE",
        value_parser = parse_image_bytes,
        help = with_default(
            "Largest image accepted, uploaded or as base64 or fetched: bytes, or a number with \
             KB, MB (10^3, 10^6), KiB or MiB (2^10, 2^20), at most 16 MiB (\"3MB\", \"5MiB\"); \
             request body limits follow",
            format!("{} (2 MiB)", defaults().limits.decode.max_bytes),
        )
    )]
    max_image_bytes: Option<usize>,

    #[arg(
        long,
        env = "FACEREC_MAX_IMAGE_SIDE",
        value_name = "PIXELS",
        value_parser = clap::value_parser!(u32).range(48..=8192),
        help = with_default(
            "Largest width and height of an image, in pixels (48-8192)",
            defaults().limits.decode.max_side,
        )
    )]
    max_image_side: Option<u32>,

    /// Log format (the filter comes from RUST_LOG, default "info").
    #[arg(long, env = "FACEREC_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Face store maintenance.
    Store {
        #[command(subcommand)]
        action: StoreCommand,
    },
    /// API keys: make, list and revoke them (also while servers run on the store).
    Keys {
        /// Data dir whose keys.json holds the keys (with the default sled store).
        #[arg(long, env = "FACEREC_DATA_DIR", default_value = "./data")]
        data_dir: PathBuf,
        /// The store whose keys to manage: sled:DATA_DIR or postgres://USER@HOST/DB
        /// [default: sled:<--data-dir>].
        #[arg(long, env = "FACEREC_STORE", value_name = "STORE")]
        store: Option<StoreSpec>,
        #[command(subcommand)]
        action: keys::KeysCommand,
    },
}

#[derive(Debug, Subcommand)]
enum StoreCommand {
    /// Copies every face set from one store into another, empty one (sled to PostgreSQL or
    /// back), then checks that both hold the same faces (counts and a SHA-256 of every
    /// face). Copy a store no server is writing to.
    Copy {
        /// The store to copy: sled:DATA_DIR or postgres://USER@HOST/DB.
        #[arg(long, value_name = "STORE")]
        from: StoreSpec,
        /// The store to fill.
        #[arg(long, value_name = "STORE")]
        to: StoreSpec,
        /// Most PostgreSQL connections held.
        #[arg(long, value_name = "N")]
        pool_size: Option<usize>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// The service's defaults, which the flags override (the data dir is the flag's).
fn defaults() -> ApiConfig {
    ApiConfig::new("./data")
}

/// A flag's help with the default the library will use when the flag is not given.
fn with_default(help: &str, default: impl std::fmt::Display) -> String {
    format!("{help} [default: {default}]")
}

impl Args {
    /// The store to serve: `--store`, else sled in `--data-dir`.
    fn store(&self) -> StoreSpec {
        self.store
            .clone()
            .unwrap_or_else(|| StoreSpec::Sled(self.data_dir.clone()))
    }

    /// The service configuration: the library's defaults, overridden by the flags given.
    fn api_config(&self) -> ApiConfig {
        let data_dir = match self.store() {
            StoreSpec::Sled(dir) => dir,
            StoreSpec::Postgres(_) => self.data_dir.clone(),
        };
        let mut config = ApiConfig::new(data_dir);
        if let Some(max) = self.max_tokens {
            config.tokens.max_entries = max;
        }
        if let Some(ttl) = self.token_ttl {
            config.tokens.ttl = ttl;
        }
        if let Some(queue) = self.queue {
            config.queue = queue;
        }
        if let Some(threads) = self.inference_threads {
            config.inference_threads = threads;
        }
        let default_rate = config.auth.rate_limit;
        let per_second = self
            .rate_limit
            .map_or(default_rate.map(|r| r.per_second), NonZeroU32::new);
        config.auth.rate_limit = per_second.map(|per_second| RateLimit {
            per_second,
            burst: self
                .rate_burst
                .and_then(NonZeroU32::new)
                .or(default_rate.map(|r| r.burst))
                .unwrap_or(per_second),
        });
        config.auth.anonymous = self.allow_anonymous || binds_loopback_only(&self.bind);
        if let Some(bytes) = self.max_image_bytes {
            config.limits.decode.max_bytes = bytes;
        }
        if let Some(side) = self.max_image_side {
            config.limits.decode.max_side = side;
        }
        config.limits.image_urls.enabled = self.allow_image_urls;
        config.limits.image_urls.allow = self.image_url_allow.clone();
        config
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // the keys command prints a new key on stdout: its log goes to stderr
    let log_to_stderr = matches!(args.command, Some(Command::Keys { .. }));
    init_logging(args.log_format, log_to_stderr);
    if let Some(Command::Store {
        action:
            StoreCommand::Copy {
                from,
                to,
                pool_size,
            },
    }) = &args.command
    {
        return store::run_copy(from, to, *pool_size);
    }
    if let Some(Command::Keys {
        data_dir,
        store,
        action,
    }) = &args.command
    {
        let spec = store
            .clone()
            .unwrap_or_else(|| StoreSpec::Sled(data_dir.clone()));
        return keys::run(&spec, args.pool_size, action);
    }

    let engine = load_models(
        &args.models_dir,
        args.model.clone(),
        args.api_config().limits.decode.max_side,
        args.int8,
    )?;
    let service = open_service(&args, engine)?;
    if !service.config().auth.anonymous
        && !service.keys().any().context("cannot read the API keys")?
    {
        bail!(
            "refusing to listen on {} without API keys: anyone who can reach it could read, \
             add and delete every face. Make a key first with `facerec-server keys create \
             --name NAME --role admin` (it works while the server runs, too), or pass \
             --allow-anonymous to serve without keys (e.g. behind a proxy that authenticates), \
             or listen on 127.0.0.1",
            args.bind
        );
    }

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
    let addr = listener
        .local_addr()
        .context("reading the listening address")?;
    tracing::info!(
        %addr,
        workers = options.workers,
        console = %format_args!("http://{addr}/"),
        "listening"
    );

    actix_web::rt::System::new()
        .block_on(async { facerec_api::server(service.clone(), listener, &options)?.await })?;
    service.flush().context("flushing the face store")?;
    tracing::info!("stopped; face store flushed");
    Ok(())
}

/// The service on the store `--store` names.
fn open_service(args: &Args, engine: Arc<FaceEngine>) -> anyhow::Result<FaceService> {
    let config = args.api_config();
    let spec = args.store();
    match &spec {
        StoreSpec::Sled(dir) => FaceService::open(engine, config).with_context(|| {
            format!(
                "cannot use data dir {} (pass --data-dir, or --store / FACEREC_STORE)",
                dir.display()
            )
        }),
        StoreSpec::Postgres(url) => {
            let hint = || format!("cannot use {spec} (pass --store or FACEREC_STORE)");
            let pg = Postgres::connect(store::pg_config(url, args.pool_size)).with_context(hint)?;
            let model = engine.model();
            let faces = pg
                .face_store(StoreConfig::new(model.id.clone(), model.dims()))
                .with_context(hint)?;
            let tokens = pg.token_store(config.tokens);
            let keys = pg.key_store();
            FaceService::with_keys(
                engine,
                Arc::new(faces),
                Arc::new(tokens),
                Arc::new(keys),
                config,
            )
            .with_context(hint)
        }
    }
}

/// Whether every address `bind` stands for is a loopback one (127.0.0.0/8, ::1): then only
/// this machine can reach the server. An address that cannot be resolved counts as not.
fn binds_loopback_only(bind: &str) -> bool {
    bind.to_socket_addrs()
        .map(|addrs| {
            let addrs: Vec<_> = addrs.collect();
            !addrs.is_empty() && addrs.iter().all(|a| a.ip().is_loopback())
        })
        .unwrap_or(false)
}

fn init_logging(format: LogFormat, to_stderr: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(move || -> Box<dyn std::io::Write> {
            if to_stderr {
                Box::new(std::io::stderr())
            } else {
                Box::new(std::io::stdout())
            }
        });
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

/// The detector and `model` from `dir`, with a detector that takes images up to `max_side`
/// pixels a side.
fn load_models(
    dir: &Path,
    model: ModelSpec,
    max_side: u32,
    int8: bool,
) -> anyhow::Result<Arc<FaceEngine>> {
    if !dir.is_dir() {
        bail!(
            "models dir {} does not exist: run from the repository root or pass --models-dir \
             (FACEREC_MODELS_DIR)",
            dir.display()
        );
    }
    let started = std::time::Instant::now();
    let mut config = EngineConfig {
        model,
        ..EngineConfig::default()
    };
    config.detector.max_side = config.detector.max_side.max(max_side);
    config.embedder.int8 = int8;
    let engine = FaceEngine::with_config(dir, config)
        .with_context(|| format!("cannot load the models from {}", dir.display()))?;
    let model = engine.model();
    // Which int8 kernel runs ("AVX2", "AVX-512 VNNI"), or "off".
    let int8 = match int8 {
        true => facerec::int8_kernel().unwrap_or("none"),
        false => "off",
    };
    tracing::info!(
        dir = %dir.display(),
        model = %model.id,
        dims = model.dims(),
        threshold = %model.threshold,
        int8,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "models loaded"
    );
    Ok(Arc::new(engine))
}

/// Most `--max-image-bytes` may raise the image limit to: a batch enrolment holds up to 16
/// images of it in memory.
const MAX_IMAGE_BYTES: usize = 16 << 20;

/// An image size: bytes ("3000000"), or a number with a unit KB, MB (powers of 10) or KiB,
/// MiB (powers of 2), case-insensitive, from 1 KiB to 16 MiB.
fn parse_image_bytes(text: &str) -> Result<usize, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().map_err(|_| {
        format!("'{text}' is not a size (bytes, or a number with KB, MB, KiB or MiB)")
    })?;
    let scale = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "kb" => 1e3,
        "mb" => 1e6,
        "kib" => 1024.0,
        "mib" => 1024.0 * 1024.0,
        other => {
            return Err(format!(
                "'{text}': unknown unit '{other}' (use KB, MB, KiB or MiB)"
            ));
        }
    };
    let bytes = (number * scale).round();
    if !(1024.0..=MAX_IMAGE_BYTES as f64).contains(&bytes) {
        return Err(format!(
            "'{text}' is out of range: from 1 KiB to 16 MiB ({MAX_IMAGE_BYTES} bytes)"
        ));
    }
    Ok(bytes as usize)
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

/// A duration as `parse_duration` reads it, in hours, minutes and seconds ("72h", "1m30s").
fn format_duration(d: Duration) -> String {
    let mut left = d.as_secs();
    let mut out = String::new();
    for (unit, secs) in [('h', 3600), ('m', 60), ('s', 1)] {
        if left >= secs {
            out.push_str(&format!("{}{unit}", left / secs));
            left %= secs;
        }
    }
    if out.is_empty() { "0s".to_owned() } else { out }
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
    use clap::CommandFactory;

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
        let config = args.api_config();
        assert_eq!(config.tokens.max_entries, 100_000);
        assert_eq!(config.tokens.ttl, Duration::from_secs(72 * 3600));
        assert_eq!(config.queue, 64);
        assert_eq!(args.log_format, LogFormat::Text);
        // --help shows them, from the same config
        let help = Args::command().render_help().to_string();
        for shown in ["[default: 100000]", "[default: 72h]", "[default: 64]"] {
            assert!(help.contains(shown), "{shown} missing from:\n{help}");
        }
    }

    #[test]
    fn flags_override_the_defaults() {
        let args = Args::try_parse_from([
            "facerec-server",
            "--max-tokens",
            "5",
            "--token-ttl",
            "1h30m",
            "--queue",
            "0",
            "--inference-threads",
            "3",
        ])
        .unwrap();
        let config = args.api_config();
        assert_eq!(config.tokens.max_entries, 5);
        assert_eq!(config.tokens.ttl, Duration::from_secs(5400));
        assert_eq!(config.queue, 0);
        assert_eq!(config.inference_threads, 3);
    }

    #[test]
    fn image_limits_from_flags() {
        let default = Args::try_parse_from(["facerec-server"])
            .unwrap()
            .api_config();
        assert_eq!(default.limits.decode.max_bytes, 2 * 1024 * 1024);
        assert_eq!(default.limits.decode.max_side, 4096);
        let raised = Args::try_parse_from([
            "facerec-server",
            "--max-image-bytes",
            "5MB",
            "--max-image-side",
            "6000",
        ])
        .unwrap()
        .api_config();
        assert_eq!(raised.limits.decode.max_bytes, 5_000_000);
        assert_eq!(raised.limits.decode.max_side, 6000);
        assert!(raised.limits.max_body(1) > 5_000_000 * 4 / 3);
        assert_eq!(parse_image_bytes("3MiB"), Ok(3 << 20));
        assert_eq!(parse_image_bytes("1.5 mb"), Ok(1_500_000));
        assert_eq!(parse_image_bytes("4096"), Ok(4096));
        for bad in ["", "abc", "3GB", "17MiB", "100", "-1MB"] {
            assert!(parse_image_bytes(bad).is_err(), "{bad}");
        }
        for side in ["47", "8193", "x"] {
            assert!(
                Args::try_parse_from(["facerec-server", "--max-image-side", side]).is_err(),
                "{side}"
            );
        }
    }

    #[test]
    fn image_urls_are_off_unless_turned_on() {
        let off = Args::try_parse_from(["facerec-server"])
            .unwrap()
            .api_config();
        assert!(!off.limits.image_urls.enabled);
        let on = Args::try_parse_from([
            "facerec-server",
            "--allow-image-urls",
            "--image-url-allow",
            "127.0.0.1,images.internal",
            "--image-url-allow",
            "10.1.0.0/16",
        ])
        .unwrap()
        .api_config();
        assert!(on.limits.image_urls.enabled);
        let allowed: Vec<String> = on
            .limits
            .image_urls
            .allow
            .iter()
            .map(|a| a.to_string())
            .collect();
        assert_eq!(allowed, ["127.0.0.1", "images.internal", "10.1.0.0/16"]);
        // an allow list alone turns nothing on, and a bad entry is named
        assert!(Args::try_parse_from(["facerec-server", "--image-url-allow", "10.0.0.1"]).is_err());
        let bad = Args::try_parse_from([
            "facerec-server",
            "--allow-image-urls",
            "--image-url-allow",
            "http://x/",
        ])
        .unwrap_err()
        .to_string();
        assert!(bad.contains("http://x/"), "{bad}");
    }

    #[test]
    fn durations_print_as_they_parse() {
        for (secs, text) in [
            (259_200, "72h"),
            (129_600, "36h"),
            (90, "1m30s"),
            (3601, "1h1s"),
        ] {
            assert_eq!(format_duration(Duration::from_secs(secs)), text);
            assert_eq!(parse_duration(text), Ok(Duration::from_secs(secs)));
        }
    }

    #[test]
    fn a_missing_models_dir_is_named_with_the_fix() {
        let err = load_models(
            Path::new("/nonexistent/models"),
            ModelSpec::default(),
            4096,
            false,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("/nonexistent/models"), "{err}");
        assert!(err.contains("--models-dir"), "{err}");
    }
}
