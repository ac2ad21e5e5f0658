//! [`PgStore`]: face sets in PostgreSQL, searched in memory, kept current by following the
//! change log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{Duration, Instant};

use deadpool_postgres::{GenericClient, Pool};
use facerec_store::{
    Error, FaceIndex, FaceMatrix, FaceRecord, FaceSetInfo, FaceStore, FaceSummary, FaceToken,
    Match, Result, StoreConfig, Upsert, validate_set_name,
};
use futures_util::{StreamExt, pin_mut};
use tokio_postgres::IsolationLevel;

use crate::backend::{Backend, PgError, embedding_bytes, embedding_from};
use crate::schema::{CHANGE_LOCK, CHANNEL};
use crate::writer::{Write, Writer, Written};

/// Changes read per query while catching up.
const CHANGE_BATCH: i64 = 10_000;

/// A [`FaceStore`] in PostgreSQL, for several servers sharing one face set.
///
/// Records live in the database; every add and remove commits there before it returns.
/// Each store keeps every face set in memory ([`FaceIndex`]) and searches there, exactly,
/// as the sled store does. It follows the database's numbered change log: after its own
/// writes (so a server sees its own add at once), on every `NOTIFY` from another server's
/// write, and every [`PgConfig::poll_every`](crate::PgConfig::poll_every) in case a
/// notification was missed; after a lost connection it reconnects and reads the changes it
/// has not seen, or reloads everything if the log was pruned past them.
///
/// Made by [`Postgres::face_store`](crate::Postgres::face_store).
pub struct PgStore {
    backend: Arc<Backend>,
    follower: Arc<Follower>,
    writer: Arc<Writer>,
    config: StoreConfig,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore")
            .field("place", &self.backend.place)
            .field("config", &self.config)
            .field("applied", &self.follower.applied())
            .finish_non_exhaustive()
    }
}

/// The in-memory side: the index, the last change applied to it, and the lock that keeps
/// changes applied in order.
pub(crate) struct Follower {
    index: FaceIndex,
    applied: AtomicI64,
    apply: tokio::sync::Mutex<()>,
    pub(crate) wake: tokio::sync::Notify,
    dims: usize,
    /// Sent with this store's notifications, so that it ignores its own (it has applied
    /// its writes before they return).
    pub(crate) instance: String,
}

impl Follower {
    fn applied(&self) -> i64 {
        self.applied.load(Ordering::Acquire)
    }

    /// Reads every change after the last one applied and applies it, in order; reloads
    /// everything when the log no longer holds them.
    pub(crate) async fn catch_up(&self, pool: &Pool) -> std::result::Result<(), PgError> {
        let _in_order = self.apply.lock().await;
        let mut client = pool.get().await?;
        loop {
            let from = self.applied();
            // One statement, one snapshot: the prune mark and the changes after `from`, at
            // least one row (the mark) even when there is no change.
            let rows = client
                .query(
                    "SELECT log.pruned_through, c.seq, c.set_name, c.token, c.name, c.embedding,
                            c.set_exists
                     FROM (SELECT pruned_through FROM facerec_log) log
                     LEFT JOIN LATERAL (
                         SELECT c.seq, c.set_name, c.token, f.name, f.embedding,
                                s.name IS NOT NULL AS set_exists
                         FROM face_changes c
                         LEFT JOIN faces f ON f.set_name = c.set_name AND f.token = c.token
                         LEFT JOIN face_sets s ON s.name = c.set_name
                         WHERE c.seq > $1 ORDER BY c.seq LIMIT $2) c ON true
                     ORDER BY c.seq",
                    &[&from, &CHANGE_BATCH],
                )
                .await?;
            let pruned: i64 = rows.first().map_or(0, |row| row.get(0));
            if pruned > from {
                self.reload(&mut client, from, pruned).await?;
                continue;
            }
            let mut changes = 0;
            for row in &rows {
                let Some(seq) = row.get::<_, Option<i64>>(1) else {
                    continue;
                };
                changes += 1;
                self.apply_change(
                    seq,
                    row.get(2),
                    row.get(3),
                    row.get(4),
                    row.get(5),
                    row.get::<_, Option<bool>>(6).unwrap_or(false),
                );
            }
            if changes < CHANGE_BATCH {
                return Ok(());
            }
        }
    }

    /// Replaces the index with every face, read in one snapshot (the log no longer holds
    /// the changes after `from`).
    async fn reload(
        &self,
        client: &mut deadpool_postgres::Object,
        from: i64,
        pruned: i64,
    ) -> std::result::Result<(), PgError> {
        let started = Instant::now();
        let tx = client
            .build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let (index, seq) = load_all(&tx, self.dims).await?;
        tx.commit().await?;
        let faces = index.faces();
        self.index.replace(index);
        self.applied.store(seq, Ordering::Release);
        tracing::warn!(
            from,
            pruned,
            seq,
            faces,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "the change log was pruned past what this server had seen: reloaded every face"
        );
        Ok(())
    }

    /// Makes the index hold, for the set and token a change touched, what the database
    /// holds now (the change's own content may be older than a later change already
    /// committed: applying the current state in log order ends in the current state).
    fn apply_change(
        &self,
        seq: i64,
        set: &str,
        token: Option<&str>,
        name: Option<&str>,
        embedding: Option<&[u8]>,
        set_exists: bool,
    ) {
        match token {
            None => {
                self.index.drop_set(set);
                if set_exists {
                    self.index.ensure(set);
                }
            }
            Some(token) => {
                if set_exists {
                    self.index.ensure(set);
                }
                match (name, embedding) {
                    (Some(name), Some(bytes)) => {
                        let applied = FaceToken::parse(token).and_then(|t| {
                            let what = || format!("face '{token}' of set '{set}'");
                            let embedding = embedding_from(bytes, self.dims, what)?;
                            self.index.upsert(set, &t, name, &embedding)
                        });
                        if let Err(e) = applied {
                            tracing::error!(seq, set, token, "cannot apply a change: {e}");
                        }
                    }
                    _ => {
                        self.index.remove(set, token);
                    }
                }
            }
        }
        self.applied.store(seq, Ordering::Release);
    }

    /// Waits until change `seq` is applied (catching up if needed).
    pub(crate) async fn ensure_applied(
        &self,
        pool: &Pool,
        seq: i64,
    ) -> std::result::Result<(), PgError> {
        if self.applied() >= seq {
            return Ok(());
        }
        self.catch_up(pool).await
    }
}

/// Every face set and face, read in one snapshot, and the number of the last change that
/// snapshot includes.
async fn load_all(
    tx: &impl GenericClient,
    dims: usize,
) -> std::result::Result<(FaceIndex, i64), PgError> {
    // Reading a million faces takes longer than one request may.
    tx.batch_execute("SET LOCAL statement_timeout = 0").await?;
    let seq: i64 = tx
        .query_one(
            "SELECT greatest((SELECT coalesce(max(seq), 0) FROM face_changes),
                             (SELECT pruned_through FROM facerec_log))",
            &[],
        )
        .await?
        .get(0);
    let mut sets: BTreeMap<String, FaceMatrix> = BTreeMap::new();
    for row in tx.query("SELECT name FROM face_sets", &[]).await? {
        sets.insert(row.get(0), FaceMatrix::new(dims));
    }
    let rows = tx
        .query_raw(
            "SELECT set_name, token, name, embedding FROM faces",
            std::iter::empty::<i32>(),
        )
        .await?;
    pin_mut!(rows);
    let mut embedding = Vec::with_capacity(dims);
    while let Some(row) = rows.next().await {
        let row = row?;
        let (set, token, name, bytes): (&str, &str, &str, &[u8]) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        let corrupt = |reason: String| Error::Corrupt {
            what: format!("face '{token}' of set '{set}'"),
            reason,
        };
        let token = FaceToken::parse(token).map_err(|e| corrupt(e.to_string()))?;
        embedding.clear();
        embedding.extend(embedding_from(bytes, dims, || {
            format!("face '{token}' of set '{set}'")
        })?);
        let matrix = sets
            .get_mut(set)
            .ok_or_else(|| corrupt("its face set is not listed".to_owned()))?;
        matrix
            .upsert(&token, name, &embedding)
            .map_err(|e| corrupt(e.to_string()))?;
    }
    for matrix in sets.values_mut() {
        matrix.shrink_to_fit();
    }
    Ok((FaceIndex::from_sets(dims, sets)?, seq))
}

impl PgStore {
    /// Loads every face set (in one snapshot) and starts following the change log.
    pub(crate) fn open(backend: Arc<Backend>, config: StoreConfig) -> Result<Self> {
        let started = Instant::now();
        let pool = backend.pool.clone();
        let dims = config.dims;
        let (index, seq) = backend.run_for(
            backend.config.load_timeout,
            || "loading the face sets".to_owned(),
            async move {
                let mut client = pool.get().await?;
                let tx = client
                    .build_transaction()
                    .isolation_level(IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()
                    .await?;
                let loaded = load_all(&tx, dims).await?;
                tx.commit().await?;
                Ok(loaded)
            },
        )?;
        let follower = Arc::new(Follower {
            index,
            applied: AtomicI64::new(seq),
            apply: tokio::sync::Mutex::new(()),
            wake: tokio::sync::Notify::new(),
            dims,
            instance: FaceToken::generate().to_string(),
        });
        tracing::info!(
            place = %backend.place,
            model_id = %config.model_id,
            dims,
            sets = follower.index.sets().len(),
            faces = follower.index.faces(),
            seq,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "opened face store"
        );
        crate::listener::start(&backend, Arc::clone(&follower))?;
        let handle = backend.handle().ok_or_else(|| Error::Unavailable {
            context: "starting the writer".to_owned(),
            source: "the PostgreSQL runtime has stopped".into(),
        })?;
        let writer = Writer::start(&handle, backend.pool.clone(), Arc::clone(&follower), dims);
        Ok(Self {
            backend,
            follower,
            writer: Arc::new(writer),
            config,
        })
    }

    /// Number of the last change this store has applied.
    pub fn applied_change(&self) -> i64 {
        self.follower.applied()
    }

    /// Heap bytes of the in-memory face sets (see [`FaceIndex::heap_bytes`]).
    pub fn matrix_bytes(&self) -> usize {
        self.follower.index.heap_bytes()
    }

    /// Reads the changes not yet applied now, without waiting for a notification.
    pub fn catch_up(&self) -> Result<()> {
        let (pool, follower) = self.parts();
        self.backend.run(
            || "catching up with the change log".to_owned(),
            async move { follower.catch_up(&pool).await },
        )
    }

    /// The pool and the follower, for an operation's future.
    fn parts(&self) -> (Pool, Arc<Follower>) {
        (self.backend.pool.clone(), Arc::clone(&self.follower))
    }
}

/// Tells the other servers (the notification goes out at commit) and commits.
pub(crate) async fn commit(
    tx: deadpool_postgres::Transaction<'_>,
    follower: &Follower,
) -> std::result::Result<(), PgError> {
    tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &follower.instance])
        .await?;
    tx.commit().await?;
    Ok(())
}

/// Takes the change lock and numbers one change per (set, token), in order; returns the
/// last number.
pub(crate) async fn log_changes(
    tx: &deadpool_postgres::Transaction<'_>,
    sets: &[&str],
    tokens: &[&str],
) -> std::result::Result<i64, PgError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CHANGE_LOCK])
        .await?;
    let row = tx
        .query_one(
            "WITH logged AS (
                 INSERT INTO face_changes (set_name, token)
                 SELECT s, t FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS u(s, t, i)
                 ORDER BY i
                 RETURNING seq)
             SELECT max(seq) FROM logged",
            &[&sets, &tokens],
        )
        .await?;
    Ok(row.get(0))
}

/// Takes the change lock and numbers the deletion of a whole set.
async fn log_set_deleted(
    tx: &deadpool_postgres::Transaction<'_>,
    set: &str,
) -> std::result::Result<i64, PgError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&CHANGE_LOCK])
        .await?;
    let row = tx
        .query_one(
            "INSERT INTO face_changes (set_name, token) VALUES ($1, NULL) RETURNING seq",
            &[&set],
        )
        .await?;
    Ok(row.get(0))
}

/// A record's columns as the queries bind them.
pub(crate) struct Row {
    pub(crate) token: String,
    pub(crate) name: String,
    pub(crate) embedding: Vec<u8>,
    pub(crate) created_unix_ms: i64,
}

impl Row {
    pub(crate) fn of(record: &FaceRecord) -> Self {
        Self {
            token: record.token.to_string(),
            name: record.name.clone(),
            embedding: embedding_bytes(&record.embedding),
            created_unix_ms: i64::try_from(record.created_unix_ms).unwrap_or(i64::MAX),
        }
    }
}

pub(crate) fn record_from(
    row: &tokio_postgres::Row,
    set: &str,
    dims: usize,
) -> std::result::Result<FaceRecord, PgError> {
    let token: &str = row.get("token");
    let what = || format!("face '{token}' of set '{set}'");
    let corrupt = |reason: String| Error::Corrupt {
        what: what(),
        reason,
    };
    Ok(FaceRecord {
        token: FaceToken::parse(token).map_err(|e| corrupt(e.to_string()))?,
        name: row.get("name"),
        embedding: embedding_from(row.get("embedding"), dims, what)?,
        model_id: row.get("model_id"),
        created_unix_ms: u64::try_from(row.get::<_, i64>("created_unix_ms")).unwrap_or(0),
    })
}

impl PgStore {
    /// Hands `write` to the group-commit writer and waits for its commit (within the
    /// operation deadline); `context` names it in errors.
    fn write(&self, context: String, write: Write) -> Result<Written> {
        let writer = Arc::clone(&self.writer);
        self.backend
            .run(|| context, async move { writer.write(write).await })
    }
}

/// The writer answered a write with the result of another kind (a bug, not a database
/// failure).
fn unexpected_answer() -> Error {
    Error::Backend {
        context: "writing a face".to_owned(),
        source: "the writer answered with the result of another write".into(),
    }
}

/// SQL `LIMIT`/`OFFSET` from a `usize` (large values mean "all").
fn sql_count(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

impl FaceStore for PgStore {
    fn model_id(&self) -> &str {
        &self.config.model_id
    }

    fn dims(&self) -> usize {
        self.config.dims
    }

    fn add(&self, set: &str, record: FaceRecord) -> Result<Upsert> {
        validate_set_name(set)?;
        self.config.check_record(&record)?;
        let write = Write::Add {
            set: set.to_owned(),
            row: Row::of(&record),
            model: record.model_id,
        };
        let context = format!("adding face '{}' to set '{set}'", record.token);
        match self.write(context, write)? {
            Written::Added(upsert) => Ok(upsert),
            Written::Removed(_) => Err(unexpected_answer()),
        }
    }

    fn add_many(&self, set: &str, records: Vec<FaceRecord>) -> Result<usize> {
        validate_set_name(set)?;
        for r in &records {
            self.config.check_record(r)?;
        }
        if records.is_empty() {
            return Ok(0);
        }
        // The last record of a token wins, as a run of adds would have it.
        let mut last: BTreeMap<String, Row> = BTreeMap::new();
        for r in &records {
            last.insert(r.token.to_string(), Row::of(r));
        }
        let rows: Vec<Row> = last.into_values().collect();
        let set = set.to_owned();
        let model = self.config.model_id.clone();
        let context = format!("adding {} faces to set '{set}'", records.len());
        let (pool, follower) = self.parts();
        self.backend.run(
            || context,
            async move {
                let (inserted, seq) = {
                    let mut client = pool.get().await?;
                    let tx = client.transaction().await?;
                    tx.execute(
                    "INSERT INTO face_sets (name) VALUES ($1) ON CONFLICT DO NOTHING",
                    &[&set],
                )
                .await?;
                let tokens: Vec<&str> = rows.iter().map(|r| r.token.as_str()).collect();
                let names: Vec<&str> = rows.iter().map(|r| r.name.as_str()).collect();
                let embeddings: Vec<&[u8]> = rows.iter().map(|r| r.embedding.as_slice()).collect();
                let created: Vec<i64> = rows.iter().map(|r| r.created_unix_ms).collect();
                let inserted: i64 = tx
                    .query_one(
                        "WITH upserted AS (
                             INSERT INTO faces (set_name, token, name, embedding, model_id, created_unix_ms)
                             SELECT $1, t, n, e, $5, c
                             FROM unnest($2::text[], $3::text[], $4::bytea[], $6::int8[]) AS u(t, n, e, c)
                             ON CONFLICT (set_name, token) DO UPDATE SET
                                 name = EXCLUDED.name, embedding = EXCLUDED.embedding,
                                 model_id = EXCLUDED.model_id,
                                 created_unix_ms = EXCLUDED.created_unix_ms
                             RETURNING xmax = 0 AS new)
                         SELECT count(*) FILTER (WHERE new) FROM upserted",
                        &[&set, &tokens, &names, &embeddings, &model, &created],
                    )
                    .await?
                    .get(0);
                    let sets = vec![set.as_str(); tokens.len()];
                    let seq = log_changes(&tx, &sets, &tokens).await?;
                    commit(tx, &follower).await?;
                    (inserted, seq)
                };
                follower.ensure_applied(&pool, seq).await?;
                Ok(usize::try_from(inserted).unwrap_or(0))
            },
        )
    }

    fn remove(&self, set: &str, token: &FaceToken) -> Result<FaceRecord> {
        validate_set_name(set)?;
        let write = Write::Remove {
            set: set.to_owned(),
            token: token.to_string(),
        };
        let context = format!("removing face '{token}' from set '{set}'");
        match self.write(context, write)? {
            Written::Removed(record) => Ok(record),
            Written::Added(_) => Err(unexpected_answer()),
        }
    }

    fn get(&self, set: &str, token: &FaceToken) -> Result<Option<FaceRecord>> {
        validate_set_name(set)?;
        let (set, token, dims) = (set.to_owned(), token.to_string(), self.config.dims);
        let context = format!("reading face '{token}' of set '{set}'");
        self.backend.with_client(
            || context,
            move |client| async move {
                let row = client
                    .query_opt(
                        "SELECT token, name, embedding, model_id, created_unix_ms FROM faces
                         WHERE set_name = $1 AND token = $2",
                        &[&set, &token],
                    )
                    .await?;
                row.map(|row| record_from(&row, &set, dims)).transpose()
            },
        )
    }

    fn search(
        &self,
        set: &str,
        query: &[f32],
        threshold: f32,
        top_k: Option<usize>,
    ) -> Result<Vec<Match>> {
        validate_set_name(set)?;
        self.follower.index.search(set, query, threshold, top_k)
    }

    fn sets(&self) -> Result<Vec<FaceSetInfo>> {
        Ok(self.follower.index.sets())
    }

    fn faces(&self, set: &str, offset: usize, limit: usize) -> Result<Vec<FaceSummary>> {
        validate_set_name(set)?;
        let set = set.to_owned();
        let context = format!("listing faces of set '{set}'");
        self.backend.with_client(
            || context,
            move |client| async move {
                let rows = client
                    .query(
                        "SELECT token, name, created_unix_ms FROM faces WHERE set_name = $1
                         ORDER BY token LIMIT $2 OFFSET $3",
                        &[&set, &sql_count(limit), &sql_count(offset)],
                    )
                    .await?;
                rows.iter()
                    .map(|row| {
                        let token: &str = row.get(0);
                        Ok(FaceSummary {
                            token: FaceToken::parse(token).map_err(|e| Error::Corrupt {
                                what: format!("face '{token}' of set '{set}'"),
                                reason: e.to_string(),
                            })?,
                            name: row.get(1),
                            created_unix_ms: u64::try_from(row.get::<_, i64>(2)).unwrap_or(0),
                        })
                    })
                    .collect()
            },
        )
    }

    fn records(
        &self,
        set: &str,
        after: Option<&FaceToken>,
        limit: usize,
    ) -> Result<Vec<FaceRecord>> {
        validate_set_name(set)?;
        let (set, dims) = (set.to_owned(), self.config.dims);
        let after = after.map(ToString::to_string);
        let context = format!("reading faces of set '{set}'");
        self.backend.with_client(
            || context,
            move |client| async move {
                let rows = client
                    .query(
                        "SELECT token, name, embedding, model_id, created_unix_ms FROM faces
                         WHERE set_name = $1 AND ($2::text IS NULL OR token > $2)
                         ORDER BY token LIMIT $3",
                        &[&set, &after, &sql_count(limit)],
                    )
                    .await?;
                rows.iter()
                    .map(|row| record_from(row, &set, dims))
                    .collect()
            },
        )
    }

    fn len(&self, set: &str) -> Result<usize> {
        validate_set_name(set)?;
        Ok(self.follower.index.len(set))
    }

    fn delete_set(&self, set: &str) -> Result<bool> {
        validate_set_name(set)?;
        let set = set.to_owned();
        let context = format!("deleting face set '{set}'");
        let (pool, follower) = self.parts();
        self.backend.run(|| context, async move {
            let seq = {
                let mut client = pool.get().await?;
                let tx = client.transaction().await?;
                let deleted = tx
                    .execute("DELETE FROM face_sets WHERE name = $1", &[&set])
                    .await?;
                if deleted == 0 {
                    return Ok(false);
                }
                let seq = log_set_deleted(&tx, &set).await?;
                commit(tx, &follower).await?;
                seq
            };
            follower.ensure_applied(&pool, seq).await?;
            Ok(true)
        })
    }

    fn flush(&self) -> Result<()> {
        // Every write has committed before it returned.
        Ok(())
    }

    fn ping(&self) -> Result<()> {
        self.backend.ping()
    }
}

/// How long the log keeps changes before [`prune`] deletes them.
pub(crate) async fn prune(pool: &Pool, keep: Duration) -> std::result::Result<u64, PgError> {
    let client = pool.get().await?;
    let row = client
        .query_one(
            "WITH gone AS (
                 DELETE FROM face_changes WHERE at < now() - $1::float8 * interval '1 second'
                 RETURNING seq),
             marked AS (
                 UPDATE facerec_log
                 SET pruned_through = greatest(pruned_through, (SELECT coalesce(max(seq), 0) FROM gone))
                 RETURNING pruned_through)
             SELECT count(*) FROM gone",
            &[&keep.as_secs_f64()],
        )
        .await?;
    Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
}
