//! [`PgKeys`]: API keys in one table every server shares.

use std::sync::Arc;

use facerec_store::{Error, KeyHash, KeyRecord, KeyStore, MAX_KEYS, Result, Role};
use tokio_postgres::Row;

use crate::backend::{Backend, PgError};

/// A [`KeyStore`] in PostgreSQL: a key made or revoked on one server (or by the `keys`
/// command) counts on every server from its next request, as each request looks its key
/// up by hash (a unique index).
///
/// Made by [`Postgres::key_store`](crate::Postgres::key_store).
pub struct PgKeys {
    backend: Arc<Backend>,
}

impl std::fmt::Debug for PgKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgKeys")
            .field("place", &self.backend.place)
            .finish()
    }
}

const COLUMNS: &str = "name, role, face_sets, sha256, created_unix_ms";

fn record(row: &Row) -> std::result::Result<KeyRecord, PgError> {
    let corrupt = |reason: String| {
        PgError::Store(Error::Corrupt {
            what: "table api_keys".to_owned(),
            reason,
        })
    };
    let name: String = row.get(0);
    let role: String = row.get(1);
    let role: Role = role
        .parse()
        .map_err(|e: Error| corrupt(format!("key '{name}': {e}")))?;
    let hash: Vec<u8> = row.get(3);
    let hash: [u8; 32] = hash
        .try_into()
        .map_err(|_| corrupt(format!("key '{name}' has a bad hash")))?;
    let created: i64 = row.get(4);
    Ok(KeyRecord {
        role,
        sets: row.get(2),
        hash: KeyHash(hash),
        created_unix_ms: u64::try_from(created).unwrap_or(0),
        name,
    })
}

impl PgKeys {
    pub(crate) fn new(backend: Arc<Backend>) -> Self {
        Self { backend }
    }
}

impl KeyStore for PgKeys {
    fn create(&self, key: KeyRecord) -> Result<()> {
        key.validate()?;
        let context = format!("making API key '{}'", key.name);
        self.backend.with_client(
            || context,
            move |client| async move {
                let count: i64 = client
                    .query_one("SELECT count(*) FROM api_keys", &[])
                    .await?
                    .get(0);
                if count >= MAX_KEYS as i64 {
                    return Err(PgError::Store(Error::InvalidKey {
                        reason: format!("a store holds at most {MAX_KEYS} keys"),
                    }));
                }
                let created = i64::try_from(key.created_unix_ms).unwrap_or(i64::MAX);
                let inserted = client
                    .execute(
                        "INSERT INTO api_keys (name, role, face_sets, sha256, created_unix_ms)
                         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO NOTHING",
                        &[
                            &key.name,
                            &key.role.as_str(),
                            &key.sets,
                            &key.hash.0.as_slice(),
                            &created,
                        ],
                    )
                    .await?;
                if inserted == 0 {
                    return Err(PgError::Store(Error::KeyExists { name: key.name }));
                }
                Ok(())
            },
        )
    }

    fn revoke(&self, name: &str) -> Result<KeyRecord> {
        let name = name.to_owned();
        let context = format!("revoking API key '{name}'");
        self.backend.with_client(
            || context,
            move |client| async move {
                let row = client
                    .query_opt(
                        &format!("DELETE FROM api_keys WHERE name = $1 RETURNING {COLUMNS}"),
                        &[&name],
                    )
                    .await?;
                match row {
                    Some(row) => record(&row),
                    None => Err(PgError::Store(Error::KeyNotFound { name })),
                }
            },
        )
    }

    fn list(&self) -> Result<Vec<KeyRecord>> {
        self.backend.with_client(
            || "listing the API keys".to_owned(),
            move |client| async move {
                let rows = client
                    .query(
                        &format!("SELECT {COLUMNS} FROM api_keys ORDER BY name"),
                        &[],
                    )
                    .await?;
                rows.iter().map(record).collect()
            },
        )
    }

    fn any(&self) -> Result<bool> {
        self.backend.with_client(
            || "looking for API keys".to_owned(),
            move |client| async move {
                let row = client
                    .query_one("SELECT EXISTS (SELECT 1 FROM api_keys)", &[])
                    .await?;
                Ok(row.get(0))
            },
        )
    }

    fn find(&self, hash: &KeyHash) -> Result<Option<KeyRecord>> {
        let wanted = *hash;
        self.backend.with_client(
            || "looking up an API key".to_owned(),
            move |client| async move {
                let row = client
                    .query_opt(
                        &format!("SELECT {COLUMNS} FROM api_keys WHERE sha256 = $1"),
                        &[&wanted.0.as_slice()],
                    )
                    .await?;
                let Some(row) = row else { return Ok(None) };
                let key = record(&row)?;
                // the index found it; the comparison that decides is constant-time
                Ok(key.hash.ct_eq(&wanted).then_some(key))
            },
        )
    }
}
