//! The schema, made by versioned migrations at start, and the record of which model's
//! embeddings the database holds.

use deadpool_postgres::{GenericClient, Object};
use facerec_store::{Error, StoreConfig};

use crate::backend::PgError;

/// The migrations, in order: (version, name, SQL). Applied ones are recorded in
/// `facerec_migrations`; a database with a version this list lacks was made by a newer
/// program and is refused.
pub(crate) const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "face sets",
        include_str!("../migrations/0001_face_sets.sql"),
    ),
    (
        2,
        "face tokens",
        include_str!("../migrations/0002_face_tokens.sql"),
    ),
    (
        3,
        "api keys",
        include_str!("../migrations/0003_api_keys.sql"),
    ),
];

/// Advisory lock keys (arbitrary constants of this program).
pub(crate) const MIGRATION_LOCK: i64 = 0x6661_6365_7265_6301;
/// Taken by every writer before it numbers its change, so that changes commit in number
/// order and a follower that has seen number n has seen everything before it.
pub(crate) const CHANGE_LOCK: i64 = 0x6661_6365_7265_6302;

/// The channel of change notifications.
pub(crate) const CHANNEL: &str = "facerec_changes";

/// Applies the migrations this database lacks, one transaction each, under an advisory lock
/// so that servers starting together do not race. Returns the versions applied now.
pub(crate) async fn migrate(client: &mut Object, place: &str) -> Result<Vec<i32>, PgError> {
    let tx = client.transaction().await?;
    // Before anything else: even CREATE TABLE IF NOT EXISTS races with itself.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS facerec_migrations (
             version    integer PRIMARY KEY,
             name       text NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await?;
    let applied: Vec<i32> = tx
        .query(
            "SELECT version FROM facerec_migrations ORDER BY version",
            &[],
        )
        .await?
        .iter()
        .map(|row| row.get(0))
        .collect();
    let newest_known = MIGRATIONS.last().map_or(0, |m| m.0);
    if let Some(&newest) = applied.iter().max()
        && newest > newest_known
    {
        return Err(PgError::Store(Error::FormatTooNew {
            place: place.to_owned(),
            found: u32::try_from(newest).unwrap_or(0),
            supported: u32::try_from(newest_known).unwrap_or(0),
        }));
    }
    let mut now = Vec::new();
    for &(version, name, sql) in MIGRATIONS {
        if applied.contains(&version) {
            continue;
        }
        tx.batch_execute(sql).await?;
        tx.execute(
            "INSERT INTO facerec_migrations (version, name) VALUES ($1, $2)",
            &[&version, &name],
        )
        .await?;
        tracing::info!(version, name, "applied PostgreSQL migration");
        now.push(version);
    }
    tx.commit().await?;
    Ok(now)
}

/// The model id and dims recorded, if any.
pub(crate) async fn recorded_model(
    client: &impl GenericClient,
    place: &str,
) -> Result<Option<(String, usize)>, PgError> {
    let rows = client
        .query(
            "SELECT key, value FROM facerec_meta WHERE key IN ('model_id', 'dims')",
            &[],
        )
        .await?;
    let get = |key: &str| {
        rows.iter()
            .find(|r| r.get::<_, &str>(0) == key)
            .map(|r| r.get::<_, String>(1))
    };
    match (get("model_id"), get("dims")) {
        (Some(model), Some(dims)) => {
            let dims = dims.parse::<usize>().map_err(|_| {
                PgError::Store(Error::Corrupt {
                    what: format!("facerec_meta of {place}"),
                    reason: format!("dims is '{dims}'"),
                })
            })?;
            Ok(Some((model, dims)))
        }
        _ => Ok(None),
    }
}

/// Records the model on first use, or refuses a database made with another model or size.
pub(crate) async fn check_model(
    client: &mut Object,
    config: &StoreConfig,
    place: &str,
) -> Result<(), PgError> {
    let tx = client.transaction().await?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await?;
    match recorded_model(&tx, place).await? {
        None => {
            tx.execute(
                "INSERT INTO facerec_meta (key, value) VALUES ('model_id', $1), ('dims', $2)",
                &[&config.model_id, &config.dims.to_string()],
            )
            .await?;
            tx.commit().await?;
            tracing::info!(model_id = %config.model_id, dims = config.dims, place, "recorded the model of a new face store");
            Ok(())
        }
        Some((stored_model, stored_dims)) => {
            if stored_model != config.model_id || stored_dims != config.dims {
                let err = Error::ModelMismatch {
                    place: place.to_owned(),
                    stored_model,
                    stored_dims,
                    model: config.model_id.clone(),
                    dims: config.dims,
                };
                tracing::error!("{err}");
                return Err(PgError::Store(err));
            }
            Ok(())
        }
    }
}
