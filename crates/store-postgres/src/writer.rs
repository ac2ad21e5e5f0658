//! Group commit: the single-face writes of all the requests a server is serving at once go to
//! PostgreSQL together, in one transaction, so that they share one commit (one WAL flush) and
//! one turn of the change lock. A lone write is its own batch and waits for nobody.

use std::sync::Arc;

use deadpool_postgres::Pool;
use facerec_store::{Error, FaceRecord, Upsert};
use futures_util::future::try_join_all;
use tokio::sync::{mpsc, oneshot};

use crate::backend::PgError;
use crate::faces::{Follower, Row, commit, log_changes, record_from};

/// Most writes in one transaction.
const MAX_BATCH: usize = 256;
/// Most writes waiting for the writer; beyond, a write is refused at once as unavailable.
const QUEUE: usize = 4096;

/// One face written.
pub(crate) enum Write {
    /// Add or replace a face.
    Add {
        /// Its face set.
        set: String,
        /// Its columns.
        row: Row,
        /// Its model id.
        model: String,
    },
    /// Remove a face.
    Remove {
        /// Its face set.
        set: String,
        /// Its token.
        token: String,
    },
}

/// What a write did.
pub(crate) enum Written {
    /// The face was added or replaced.
    Added(Upsert),
    /// The face was removed; its record as it was.
    Removed(FaceRecord),
}

struct Job {
    write: Write,
    reply: oneshot::Sender<Result<Written, Error>>,
}

/// The queue in front of the writer task.
pub(crate) struct Writer {
    queue: mpsc::Sender<Job>,
}

impl Writer {
    /// Starts the writer task on `runtime`.
    pub(crate) fn start(
        runtime: &tokio::runtime::Handle,
        pool: Pool,
        follower: Arc<Follower>,
        dims: usize,
    ) -> Self {
        let (queue, jobs) = mpsc::channel(QUEUE);
        runtime.spawn(run(jobs, pool, follower, dims));
        Self { queue }
    }

    /// Writes one face with whatever other writes are waiting; returns once the batch has
    /// committed and this server has applied it.
    pub(crate) async fn write(&self, write: Write) -> Result<Written, PgError> {
        let (reply, answer) = oneshot::channel();
        self.queue.try_send(Job { write, reply }).map_err(|_| {
            PgError::Store(Error::Unavailable {
                context: "queueing a write".to_owned(),
                source: format!("{QUEUE} writes are already waiting for the database").into(),
            })
        })?;
        answer
            .await
            .map_err(|_| {
                PgError::Store(Error::Unavailable {
                    context: "waiting for a write".to_owned(),
                    source: "the writer task has stopped".into(),
                })
            })?
            .map_err(PgError::Store)
    }
}

async fn run(mut jobs: mpsc::Receiver<Job>, pool: Pool, follower: Arc<Follower>, dims: usize) {
    while let Some(first) = jobs.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // A request that has given up (its deadline passed) is not written.
        batch.retain(|job| !job.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        let writes: Vec<&Write> = batch.iter().map(|job| &job.write).collect();
        let outcome = match commit_batch(&pool, &follower, &writes, dims).await {
            Ok((results, Some(seq))) => follower.ensure_applied(&pool, seq).await.map(|()| results),
            Ok((results, None)) => Ok(results),
            Err(e) => Err(e),
        };
        match outcome {
            Ok(results) => {
                for (job, result) in batch.into_iter().zip(results) {
                    let _ = job.reply.send(result);
                }
            }
            Err(e) => {
                let e = e.into_store(format!("writing {} faces", batch.len()));
                tracing::debug!("a batch of writes failed: {e}");
                for job in batch {
                    let _ = job.reply.send(Err(same_error(&e)));
                }
            }
        }
    }
}

/// An error for each write of a failed batch (the driver's error is not `Clone`).
fn same_error(e: &Error) -> Error {
    match e {
        Error::Unavailable { context, source } => Error::Unavailable {
            context: context.clone(),
            source: source.to_string().into(),
        },
        other => Error::Backend {
            context: "writing a batch of faces".to_owned(),
            source: other.to_string().into(),
        },
    }
}

/// Runs every write in one transaction (statements pipelined, in order), logs one change per
/// face written and commits. Returns each write's result and the last change number.
async fn commit_batch(
    pool: &Pool,
    follower: &Follower,
    writes: &[&Write],
    dims: usize,
) -> Result<(Vec<Result<Written, Error>>, Option<i64>), PgError> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let add_set = tx
        .prepare_cached("INSERT INTO face_sets (name) VALUES ($1) ON CONFLICT DO NOTHING")
        .await?;
    let add_face = tx
        .prepare_cached(
            "INSERT INTO faces (set_name, token, name, embedding, model_id, created_unix_ms)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (set_name, token) DO UPDATE SET
                 name = EXCLUDED.name, embedding = EXCLUDED.embedding,
                 model_id = EXCLUDED.model_id, created_unix_ms = EXCLUDED.created_unix_ms
             RETURNING xmax = 0",
        )
        .await?;
    let remove_face = tx
        .prepare_cached(
            "DELETE FROM faces WHERE set_name = $1 AND token = $2
             RETURNING token, name, embedding, model_id, created_unix_ms",
        )
        .await?;
    // Sent together, run in order: a later write of the same face sees the earlier one.
    let statements = writes.iter().map(|write| {
        let (tx, add_set, add_face, remove_face) = (&tx, &add_set, &add_face, &remove_face);
        async move {
            match write {
                Write::Add { set, row, model } => {
                    tx.execute(add_set, &[set]).await?;
                    let inserted: bool = tx
                        .query_one(
                            add_face,
                            &[
                                set,
                                &row.token,
                                &row.name,
                                &row.embedding,
                                model,
                                &row.created_unix_ms,
                            ],
                        )
                        .await?
                        .get(0);
                    Ok::<_, PgError>(Ok(Written::Added(if inserted {
                        Upsert::Inserted
                    } else {
                        Upsert::Replaced
                    })))
                }
                Write::Remove { set, token } => {
                    match tx.query_opt(remove_face, &[set, token]).await? {
                        Some(row) => Ok(Ok(Written::Removed(record_from(&row, set, dims)?))),
                        None => Ok(Err(Error::NotFound {
                            set: set.clone(),
                            token: token.clone(),
                        })),
                    }
                }
            }
        }
    });
    let results = try_join_all(statements).await?;
    let (sets, tokens): (Vec<&str>, Vec<&str>) = writes
        .iter()
        .zip(&results)
        .filter(|(_, result)| result.is_ok())
        .map(|(write, _)| match write {
            Write::Add { set, row, .. } => (set.as_str(), row.token.as_str()),
            Write::Remove { set, token } => (set.as_str(), token.as_str()),
        })
        .unzip();
    let seq = if tokens.is_empty() {
        tx.commit().await?;
        None
    } else {
        let seq = log_changes(&tx, &sets, &tokens).await?;
        commit(tx, follower).await?;
        Some(seq)
    };
    Ok((results, seq))
}
