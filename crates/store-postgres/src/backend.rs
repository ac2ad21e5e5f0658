//! The connection side: a runtime of the crate's own, the bounded pool, running one operation
//! with a deadline from blocking code, and sorting driver errors into "retry later" and
//! "failed".

use std::future::Future;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use facerec_store::{BoxError, Error, Result};

use crate::PgConfig;

/// An error inside an async operation, sorted out by [`Backend::run`].
#[derive(Debug)]
pub(crate) enum PgError {
    /// The driver failed.
    Db(tokio_postgres::Error),
    /// No connection could be had.
    Pool(PoolError),
    /// The operation was refused for a reason of the store's own (not found, ...).
    Store(Error),
}

impl From<tokio_postgres::Error> for PgError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e)
    }
}

impl From<PoolError> for PgError {
    fn from(e: PoolError) -> Self {
        Self::Pool(e)
    }
}

impl From<Error> for PgError {
    fn from(e: Error) -> Self {
        Self::Store(e)
    }
}

/// Whether a driver error means "the database cannot be reached now" (connection lost or
/// refused, server shutting down or starting, too many connections) rather than "the
/// database refused this statement".
fn is_unavailable(e: &tokio_postgres::Error) -> bool {
    if e.is_closed() {
        return true;
    }
    match e.code() {
        // No SQLSTATE: an I/O or protocol error on the way to the server.
        None => true,
        Some(code) => {
            let code = code.code();
            code.starts_with("08") // connection exception
                || matches!(code, "57P01" | "57P02" | "57P03" | "53300" | "40001" | "40P01")
        }
    }
}

impl PgError {
    /// The store error for this failure while doing `context`.
    pub(crate) fn into_store(self, context: String) -> Error {
        match self {
            PgError::Store(e) => e,
            PgError::Db(e) if is_unavailable(&e) => Error::Unavailable {
                context,
                source: Box::new(e),
            },
            PgError::Db(e) => Error::Backend {
                context,
                source: Box::new(e),
            },
            PgError::Pool(PoolError::Backend(e)) => PgError::Db(e).into_store(context),
            PgError::Pool(e @ (PoolError::Timeout(_) | PoolError::Closed)) => Error::Unavailable {
                context,
                source: Box::new(e),
            },
            PgError::Pool(e) => Error::Backend {
                context,
                source: Box::new(e),
            },
        }
    }
}

/// The runtime that drives the driver, and the pool.
pub(crate) struct Backend {
    runtime: Option<tokio::runtime::Runtime>,
    pub(crate) pool: Pool,
    pub(crate) pg: tokio_postgres::Config,
    pub(crate) config: PgConfig,
    /// The database, for messages (no password).
    pub(crate) place: String,
}

impl std::fmt::Debug for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backend")
            .field("place", &self.place)
            .field("pool", &self.pool.status())
            .finish_non_exhaustive()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        // Never blocks, so a store may be dropped anywhere, also inside another runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// `postgres://user@host:port/db` of a config, without its password.
fn describe(pg: &tokio_postgres::Config) -> String {
    let hosts: Vec<String> = pg
        .get_hosts()
        .iter()
        .zip(pg.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            tokio_postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
            tokio_postgres::config::Host::Unix(p) => format!("{}:{port}", p.display()),
        })
        .collect();
    format!(
        "database postgres://{}@{}/{}",
        pg.get_user().unwrap_or(""),
        hosts.join(","),
        pg.get_dbname().unwrap_or("")
    )
}

impl Backend {
    /// A runtime and a pool for `config.url`; connects lazily.
    pub(crate) fn new(config: PgConfig) -> Result<Self> {
        let invalid = |reason: String| Error::InvalidConfig { reason };
        let mut pg: tokio_postgres::Config = config
            .url
            .parse()
            .map_err(|e| invalid(format!("PostgreSQL URL is not usable: {e}")))?;
        if pg.get_user().is_none() {
            return Err(invalid(
                "the PostgreSQL URL names no user: use postgres://USER@HOST/DB".to_owned(),
            ));
        }
        pg.connect_timeout(config.connect_timeout);
        pg.application_name("facerec");
        // The database gives up too, soon after the client has: a statement cut off by the
        // deadline does not keep a connection (or a lock) busy for long.
        // JIT compiles for hundreds of milliseconds what runs in one here: off.
        let statement_ms = (config.op_timeout * 2).as_millis();
        let ours = format!("-c statement_timeout={statement_ms} -c jit=off");
        let options = match pg.get_options() {
            Some(given) => format!("{given} {ours}"),
            None => ours,
        };
        pg.options(&options);
        pg.keepalives_idle(Duration::from_secs(10));
        let place = describe(&pg);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("facerec-postgres")
            .enable_all()
            .build()
            .map_err(|e| Error::Io {
                context: "starting the PostgreSQL runtime".to_owned(),
                source: e,
            })?;
        let manager = Manager::from_config(
            pg.clone(),
            tokio_postgres::NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(config.pool_size.max(1))
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(config.op_timeout))
            .create_timeout(Some(config.connect_timeout))
            .recycle_timeout(Some(config.connect_timeout))
            .build()
            .map_err(|e| invalid(format!("building the connection pool: {e}")))?;
        Ok(Self {
            runtime: Some(runtime),
            pool,
            pg,
            config,
            place,
        })
    }

    /// The runtime's handle (for spawning background tasks).
    pub(crate) fn handle(&self) -> Option<tokio::runtime::Handle> {
        self.runtime.as_ref().map(|r| r.handle().clone())
    }

    /// Runs `operation` on the crate's runtime and waits for it, at most `deadline`; a
    /// missed deadline is [`Error::Unavailable`]. Call from blocking code only (a thread
    /// that is not driving async tasks), as every [`facerec_store::FaceStore`] method is.
    pub(crate) fn run_for<T, F>(
        &self,
        deadline: Duration,
        context: impl FnOnce() -> String,
        operation: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = std::result::Result<T, PgError>> + Send + 'static,
    {
        let stopped = |context: String| Error::Unavailable {
            context,
            source: "the PostgreSQL runtime has stopped".into(),
        };
        let Some(runtime) = &self.runtime else {
            return Err(stopped(context()));
        };
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        runtime.spawn(async move {
            let outcome = tokio::time::timeout(deadline, operation).await;
            // The caller may be gone (it never is: it waits below).
            let _ = tx.send(outcome);
        });
        match rx.recv() {
            Ok(Ok(Ok(value))) => Ok(value),
            Ok(Ok(Err(e))) => Err(e.into_store(context())),
            Ok(Err(_elapsed)) => Err(Error::Unavailable {
                context: context(),
                source: BoxError::from(format!(
                    "PostgreSQL did not answer within {} ms",
                    deadline.as_millis()
                )),
            }),
            Err(_) => Err(stopped(context())),
        }
    }

    /// [`run_for`](Self::run_for) with the configured operation deadline.
    pub(crate) fn run<T, F>(&self, context: impl FnOnce() -> String, operation: F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = std::result::Result<T, PgError>> + Send + 'static,
    {
        self.run_for(self.config.op_timeout, context, operation)
    }

    /// [`run`](Self::run) of `operation` on a connection from the pool (waiting for one
    /// counts against the deadline).
    pub(crate) fn with_client<T, F, Fut>(
        &self,
        context: impl FnOnce() -> String,
        operation: F,
    ) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(deadpool_postgres::Object) -> Fut + Send + 'static,
        Fut: Future<Output = std::result::Result<T, PgError>> + Send + 'static,
    {
        let pool = self.pool.clone();
        self.run(context, async move { operation(pool.get().await?).await })
    }

    /// Whether the database answers a trivial query within the deadline.
    pub(crate) fn ping(&self) -> Result<()> {
        self.with_client(
            || "checking the database".to_owned(),
            move |client| async move {
                client.execute("SELECT 1", &[]).await?;
                Ok(())
            },
        )
    }
}

/// Encodes an embedding as stored: `dims` f32, little-endian.
pub(crate) fn embedding_bytes(embedding: &[f32]) -> Vec<u8> {
    embedding.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Decodes a stored embedding of `dims` values.
pub(crate) fn embedding_from(
    bytes: &[u8],
    dims: usize,
    what: impl FnOnce() -> String,
) -> Result<Vec<f32>> {
    if bytes.len() != dims * 4 {
        return Err(Error::Corrupt {
            what: what(),
            reason: format!(
                "embedding is {} bytes; this store holds {dims}-d embeddings ({} bytes)",
                bytes.len(),
                dims * 4
            ),
        });
    }
    Ok(bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_round_trip_and_wrong_sizes_are_corruption() {
        let v = vec![1.5, -0.25, f32::MAX, 0.0];
        let bytes = embedding_bytes(&v);
        assert_eq!(bytes.len(), 16);
        assert_eq!(embedding_from(&bytes, 4, String::new).unwrap(), v);
        assert!(matches!(
            embedding_from(&bytes, 5, || "face x".into()),
            Err(Error::Corrupt { .. })
        ));
    }

    #[test]
    fn urls_are_described_without_passwords_and_need_a_user() {
        let config = PgConfig::new("postgres://ann:secret@db.example:6543/faces");
        let backend = Backend::new(config).unwrap();
        assert_eq!(
            backend.place,
            "database postgres://ann@db.example:6543/faces"
        );
        assert!(!format!("{backend:?}").contains("secret"));
        let err = Backend::new(PgConfig::new("postgres://db.example/faces")).unwrap_err();
        assert!(err.to_string().contains("names no user"), "{err}");
        let err = Backend::new(PgConfig::new("mysql://x")).unwrap_err();
        assert!(matches!(err, Error::InvalidConfig { .. }), "{err}");
    }
}
