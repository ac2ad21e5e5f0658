//! [`PgTokens`]: temporary face tokens and their crops in one table every server shares.

use std::sync::Arc;

use facerec_store::{FaceToken, NewToken, Result, TokenCacheConfig, TokenStore};

use crate::backend::{Backend, embedding_bytes, embedding_from};

/// A [`TokenStore`] in an `UNLOGGED` PostgreSQL table: a token from `/detect` on one server
/// works on every other. Bounded like [`facerec_store::LocalTokens`]: beyond
/// `max_entries` the oldest go (by insertion number, so at most `max_entries` are kept), and
/// tokens older than `ttl` (by the database's clock) are not returned and are purged. An
/// `UNLOGGED` table is emptied if PostgreSQL crashes: tokens may be lost then, faces never.
///
/// Made by [`Postgres::token_store`](crate::Postgres::token_store).
pub struct PgTokens {
    backend: Arc<Backend>,
    config: TokenCacheConfig,
}

impl std::fmt::Debug for PgTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTokens")
            .field("place", &self.backend.place)
            .field("config", &self.config)
            .finish()
    }
}

impl PgTokens {
    pub(crate) fn new(backend: Arc<Backend>, config: TokenCacheConfig) -> Self {
        Self {
            backend,
            config: TokenCacheConfig {
                max_entries: config.max_entries.max(1),
                ..config
            },
        }
    }

    /// One column of a live token.
    fn column<T: Send + 'static>(
        &self,
        token: &FaceToken,
        column: &'static str,
        what: &'static str,
        convert: impl FnOnce(Vec<u8>) -> Result<T> + Send + 'static,
    ) -> Result<Option<T>> {
        let (token, ttl) = (token.to_string(), self.config.ttl.as_secs_f64());
        let context = format!("reading the {what} of face token '{token}'");
        let bytes = self.backend.with_client(
            || context,
            move |client| async move {
                let row = client
                    .query_opt(
                        &format!(
                            "SELECT {column} FROM face_tokens WHERE token = $1
                             AND created_at > now() - $2::float8 * interval '1 second'"
                        ),
                        &[&token, &ttl],
                    )
                    .await?;
                Ok(row.map(|r| r.get::<_, Vec<u8>>(0)))
            },
        )?;
        bytes.map(convert).transpose()
    }
}

impl TokenStore for PgTokens {
    fn config(&self) -> TokenCacheConfig {
        self.config
    }

    fn insert(&self, tokens: Vec<NewToken>) -> Result<usize> {
        if tokens.is_empty() {
            return Ok(0);
        }
        let pool = self.backend.pool.clone();
        let max = i64::try_from(self.config.max_entries).unwrap_or(i64::MAX);
        let context = format!("keeping {} face tokens", tokens.len());
        self.backend.run(|| context, async move {
            let names: Vec<String> = tokens.iter().map(|t| t.token.to_string()).collect();
            let embeddings: Vec<Vec<u8>> = tokens
                .iter()
                .map(|t| embedding_bytes(&t.embedding))
                .collect();
            let crops: Vec<&[u8]> = tokens.iter().map(|t| t.crop.as_slice()).collect();
            let client = pool.get().await?;
            client
                .execute(
                    "INSERT INTO face_tokens (token, embedding, crop)
                         SELECT t, e, c FROM unnest($1::text[], $2::bytea[], $3::bytea[])
                             WITH ORDINALITY AS u(t, e, c, i)
                         ORDER BY i",
                    &[&names, &embeddings, &crops],
                )
                .await?;
            let evicted = client
                .execute(
                    "DELETE FROM face_tokens
                         WHERE id <= (SELECT max(id) FROM face_tokens) - $1",
                    &[&max],
                )
                .await?;
            Ok(usize::try_from(evicted).unwrap_or(usize::MAX))
        })
    }

    fn embedding(&self, token: &FaceToken) -> Result<Option<Vec<f32>>> {
        let what = format!("face token '{token}'");
        self.column(token, "embedding", "embedding", move |bytes| {
            let dims = bytes.len() / 4;
            embedding_from(&bytes, dims, || what)
        })
    }

    fn crop(&self, token: &FaceToken) -> Result<Option<Vec<u8>>> {
        self.column(token, "crop", "crop", Ok)
    }

    fn len(&self) -> Result<usize> {
        let pool = self.backend.pool.clone();
        self.backend
            .run(|| "counting face tokens".to_owned(), async move {
                let n: i64 = pool
                    .get()
                    .await?
                    .query_one("SELECT count(*) FROM face_tokens", &[])
                    .await?
                    .get(0);
                Ok(usize::try_from(n).unwrap_or(0))
            })
    }

    fn purge_expired(&self) -> Result<usize> {
        let pool = self.backend.pool.clone();
        let ttl = self.config.ttl.as_secs_f64();
        self.backend
            .run(|| "purging expired face tokens".to_owned(), async move {
                let n = pool
                    .get()
                    .await?
                    .execute(
                        "DELETE FROM face_tokens
                         WHERE created_at <= now() - $1::float8 * interval '1 second'",
                        &[&ttl],
                    )
                    .await?;
                Ok(usize::try_from(n).unwrap_or(usize::MAX))
            })
    }

    fn ping(&self) -> Result<()> {
        self.backend.ping()
    }
}
