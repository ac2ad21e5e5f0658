//! facerec's face sets and face tokens in PostgreSQL, so that several facerec servers behind
//! a load balancer share one face set: a face enrolled through one server is found by a
//! search on any other, and a token from `/detect` on one works on the next.
//!
//! * [`Postgres::connect`] makes the pool and brings the schema up to date with versioned
//!   migrations (under an advisory lock: servers may start together).
//! * [`Postgres::face_store`] is a [`FaceStore`](facerec_store::FaceStore) ([`PgStore`]):
//!   records in the database, searches exact and in memory on every server, kept current
//!   from a numbered change log with `LISTEN`/`NOTIFY` (a missed notification or a lost
//!   connection is caught up, not lost). A database made with another model is refused.
//! * [`Postgres::token_store`] is a [`TokenStore`](facerec_store::TokenStore)
//!   ([`PgTokens`]): tokens and crops in an `UNLOGGED` table, bounded in count and age.
//!
//! Every operation has a deadline ([`PgConfig::op_timeout`]); when the database is down or
//! slow it fails with [`Error::Unavailable`](facerec_store::Error::Unavailable) instead of
//! hanging, and works again when the database is back. The store runs its own small async
//! runtime: its methods are blocking calls, to be made from blocking threads (as the HTTP
//! API does), not from inside async tasks.
//!
//! ```
//! use facerec_store::{FaceRecord, FaceStore, FaceToken, StoreConfig};
//! use facerec_store_postgres::{PgConfig, Postgres};
//!
//! // A fresh database on the test server (skips, saying so, where there is none).
//! let Some(db) = facerec_fixtures::postgres::fresh_database("doc") else { return Ok(()) };
//! let pg = Postgres::connect(PgConfig::new(&db.url))?;
//! let store = pg.face_store(StoreConfig::new("my-model", 2))?;
//! let ann = FaceToken::parse("ann")?;
//! store.add("staff", FaceRecord::new(ann.clone(), "Ann", vec![0.0, 1.0], "my-model"))?;
//!
//! // A second server on the same database sees the face.
//! let other = Postgres::connect(PgConfig::new(&db.url))?.face_store(StoreConfig::new("my-model", 2))?;
//! let hits = other.search("staff", &[0.0, 0.0], 1.5, None)?;
//! assert_eq!((hits[0].name.as_str(), hits[0].distance), ("Ann", 1.0));
//!
//! // Another model is refused.
//! assert!(pg.face_store(StoreConfig::new("other-model", 2)).is_err());
//! # Ok::<(), facerec_store::Error>(())
//! ```
#![deny(missing_docs)]

mod backend;
mod faces;
mod keys;
mod listener;
mod schema;
mod tokens;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use facerec_store::{Result, StoreConfig, TokenCacheConfig};

pub use faces::PgStore;
pub use keys::PgKeys;
pub use tokens::PgTokens;

use crate::backend::Backend;

/// How to reach PostgreSQL and how long to wait for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgConfig {
    /// `postgres://USER[:PASSWORD]@HOST[:PORT]/DB[?options]` (libpq-style key=value strings
    /// work too).
    pub url: String,
    /// Most connections held (8). Each request needs one for a few milliseconds; the
    /// follower and the `LISTEN` connection are extra (the latter outside the pool).
    pub pool_size: usize,
    /// Deadline of one operation, waiting for a connection included (1.5 s): past it the
    /// request fails with `Unavailable` (HTTP 503) instead of waiting on.
    pub op_timeout: Duration,
    /// Deadline of opening one connection (1 s).
    pub connect_timeout: Duration,
    /// Deadline of loading every face set at start (10 min).
    pub load_timeout: Duration,
    /// Catch up with the change log at least this often, notifications or not (1 s).
    pub poll_every: Duration,
    /// How long changes stay in the log (24 h); a server away longer reloads everything.
    pub change_retention: Duration,
}

impl PgConfig {
    /// The defaults for the database at `url`.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            pool_size: 8,
            op_timeout: Duration::from_millis(1500),
            connect_timeout: Duration::from_secs(1),
            load_timeout: Duration::from_secs(600),
            poll_every: Duration::from_secs(1),
            change_retention: Duration::from_secs(24 * 3600),
        }
    }
}

/// A connection pool to one database, with its schema up to date; makes the stores.
#[derive(Debug, Clone)]
pub struct Postgres {
    backend: Arc<Backend>,
}

impl Postgres {
    /// Connects and applies the migrations the database lacks. Fails with
    /// [`Error::Unavailable`](facerec_store::Error::Unavailable) when the database cannot be
    /// reached, [`Error::FormatTooNew`](facerec_store::Error::FormatTooNew) when a newer
    /// program made it.
    pub fn connect(config: PgConfig) -> Result<Self> {
        let backend = Arc::new(Backend::new(config)?);
        let (pool, place) = (backend.pool.clone(), backend.place.clone());
        let applied = backend.run_for(
            backend.config.load_timeout,
            || format!("migrating {}", backend.place),
            async move {
                let mut client = pool.get().await?;
                schema::migrate(&mut client, &place).await
            },
        )?;
        tracing::info!(place = %backend.place, migrations_applied = applied.len(), "connected to PostgreSQL");
        Ok(Self { backend })
    }

    /// The database, for messages: `database postgres://user@host:port/db` (no password).
    pub fn place(&self) -> &str {
        &self.backend.place
    }

    /// The face store for `config.model_id` embeddings of `config.dims` values: records
    /// the model in a new database, refuses one made with another
    /// ([`Error::ModelMismatch`](facerec_store::Error::ModelMismatch)), loads every face
    /// set and starts following the other servers' changes.
    pub fn face_store(&self, config: StoreConfig) -> Result<PgStore> {
        config.validate()?;
        let (pool, place, store_config) = (
            self.backend.pool.clone(),
            self.backend.place.clone(),
            config.clone(),
        );
        self.backend.run(
            || format!("checking the model of {}", self.backend.place),
            async move {
                let mut client = pool.get().await?;
                schema::check_model(&mut client, &store_config, &place).await
            },
        )?;
        PgStore::open(Arc::clone(&self.backend), config)
    }

    /// The model id and embedding size recorded in the database, or `None` before the first
    /// [`face_store`](Self::face_store) (for tools that copy a store whatever its model).
    pub fn recorded_model(&self) -> Result<Option<(String, usize)>> {
        let (pool, place) = (self.backend.pool.clone(), self.backend.place.clone());
        self.backend.run(
            || format!("reading the model of {}", self.backend.place),
            async move { schema::recorded_model(&pool.get().await?, &place).await },
        )
    }

    /// The shared API keys.
    pub fn key_store(&self) -> PgKeys {
        PgKeys::new(Arc::clone(&self.backend))
    }

    /// The shared token store, bounded by `config`.
    pub fn token_store(&self, config: TokenCacheConfig) -> PgTokens {
        PgTokens::new(Arc::clone(&self.backend), config)
    }
}
