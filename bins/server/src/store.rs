//! Which face store the server runs on (`--store`), opening it, and `store copy`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use facerec_store::{FaceRecord, FaceStore, FaceToken, SledStore, StoreConfig};
use facerec_store_postgres::{PgConfig, Postgres};
use sha2::{Digest, Sha256};

/// Where the face sets live: `sled:DATA_DIR` (embedded, one server) or a PostgreSQL URL
/// (shared by several servers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreSpec {
    /// A data dir: face sets in DATA_DIR/faces, crops in DATA_DIR/crops.
    Sled(PathBuf),
    /// `postgres://USER@HOST[:PORT]/DB`.
    Postgres(String),
}

impl FromStr for StoreSpec {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(dir) = text.strip_prefix("sled:") {
            if dir.is_empty() {
                return Err("'sled:' needs a data dir, e.g. sled:./data".to_owned());
            }
            return Ok(Self::Sled(PathBuf::from(dir)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            return Ok(Self::Postgres(text.to_owned()));
        }
        Err(format!(
            "'{text}' is not a store: use sled:DATA_DIR or postgres://USER@HOST/DB"
        ))
    }
}

impl fmt::Display for StoreSpec {
    /// The store as it can be shown: a PostgreSQL password is hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Sled(dir) => write!(f, "sled:{}", dir.display()),
            Self::Postgres(url) => f.write_str(&hide_password(url)),
        }
    }
}

/// `postgres://user:secret@host/db` as `postgres://user:***@host/db`.
fn hide_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((user_info, host)) => match user_info.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}{tail}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// The PostgreSQL settings the flags give.
pub(crate) fn pg_config(url: &str, pool_size: Option<usize>) -> PgConfig {
    let mut config = PgConfig::new(url);
    if let Some(size) = pool_size {
        config.pool_size = size;
    }
    config
}

/// A store spec's face store, for embeddings of `model` (`dims` values).
fn open_face_store(
    spec: &StoreSpec,
    model: &str,
    dims: usize,
    pool_size: Option<usize>,
) -> anyhow::Result<Arc<dyn FaceStore>> {
    let config = StoreConfig::new(model, dims);
    Ok(match spec {
        StoreSpec::Sled(dir) => Arc::new(
            SledStore::open(dir.join("faces"), config)
                .with_context(|| format!("opening {spec}"))?,
        ),
        StoreSpec::Postgres(url) => Arc::new(
            Postgres::connect(pg_config(url, pool_size))
                .and_then(|pg| pg.face_store(config))
                .with_context(|| format!("opening {spec}"))?,
        ),
    })
}

/// The model a store's faces were made with, if it has any.
fn recorded_model(
    spec: &StoreSpec,
    pool_size: Option<usize>,
) -> anyhow::Result<Option<(String, usize)>> {
    match spec {
        StoreSpec::Sled(dir) => {
            SledStore::recorded_model(dir.join("faces")).with_context(|| format!("reading {spec}"))
        }
        StoreSpec::Postgres(url) => Postgres::connect(pg_config(url, pool_size))
            .and_then(|pg| pg.recorded_model())
            .with_context(|| format!("reading {spec}")),
    }
}

/// What a copy did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Copied {
    /// Face sets copied.
    pub(crate) sets: usize,
    /// Faces copied.
    pub(crate) faces: usize,
    /// SHA-256 over every face (set, token, name, time, embedding) in order, equal on both
    /// sides.
    pub(crate) checksum: String,
}

/// Faces read or written per batch.
const BATCH: usize = 5_000;

/// Copies every face set of `from` into `to` (which must hold no faces yet), then reads both
/// back and compares their counts and checksums.
pub(crate) fn copy(
    from: &StoreSpec,
    to: &StoreSpec,
    pool_size: Option<usize>,
    progress: &mut dyn FnMut(&str, usize),
) -> anyhow::Result<Copied> {
    if from == to {
        bail!("--from and --to are the same store ({from})");
    }
    let Some((model, dims)) = recorded_model(from, pool_size)? else {
        bail!("{from} holds no face store (nothing was ever enrolled there)");
    };
    let source = open_face_store(from, &model, dims, pool_size)?;
    let target = open_face_store(to, &model, dims, pool_size)?;
    let already: usize = target.sets()?.iter().map(|s| s.count).sum();
    if already > 0 {
        bail!("{to} already holds {already} faces: copy into an empty store");
    }
    let sets = source.sets()?;
    let mut faces = 0;
    for set in &sets {
        let mut after: Option<FaceToken> = None;
        loop {
            let batch = source.records(&set.name, after.as_ref(), BATCH)?;
            let Some(last) = batch.last() else { break };
            after = Some(last.token.clone());
            faces += batch.len();
            target
                .add_many(&set.name, batch)
                .with_context(|| format!("writing face set '{}' to {to}", set.name))?;
            progress(&set.name, faces);
        }
    }
    let (sum_from, n_from) = checksum(&*source)?;
    let (sum_to, n_to) = checksum(&*target)?;
    if (n_from, &sum_from) != (n_to, &sum_to) {
        bail!(
            "the copy differs from its source: {n_from} faces with checksum {sum_from} in \
             {from}, {n_to} with {sum_to} in {to}"
        );
    }
    Ok(Copied {
        sets: sets.len(),
        faces: n_from,
        checksum: sum_from,
    })
}

/// SHA-256 over every face of every set, in set and token order, and the number of faces.
pub(crate) fn checksum(store: &dyn FaceStore) -> anyhow::Result<(String, usize)> {
    let mut hash = Sha256::new();
    let mut faces = 0;
    for set in store.sets()? {
        let mut after: Option<FaceToken> = None;
        loop {
            let batch = store.records(&set.name, after.as_ref(), BATCH)?;
            let Some(last) = batch.last() else { break };
            after = Some(last.token.clone());
            for record in &batch {
                hash_record(&mut hash, &set.name, record);
            }
            faces += batch.len();
        }
    }
    let digest: String = hash.finalize().iter().map(|b| format!("{b:02x}")).collect();
    Ok((digest, faces))
}

fn hash_record(hash: &mut Sha256, set: &str, record: &FaceRecord) {
    for text in [set, record.token.as_str(), &record.name, &record.model_id] {
        hash.update((text.len() as u64).to_le_bytes());
        hash.update(text.as_bytes());
    }
    hash.update(record.created_unix_ms.to_le_bytes());
    for x in &record.embedding {
        hash.update(x.to_le_bytes());
    }
}

/// Runs `store copy`, printing progress and the result.
pub(crate) fn run_copy(
    from: &StoreSpec,
    to: &StoreSpec,
    pool_size: Option<usize>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut last_print = Instant::now();
    let copied = copy(from, to, pool_size, &mut |set, faces| {
        if last_print.elapsed().as_secs() >= 2 {
            last_print = Instant::now();
            eprintln!("  {faces} faces copied (now in set '{set}')");
        }
    })?;
    println!(
        "copied {} faces in {} face sets from {from} to {to} in {:.1} s; counts and checksums \
         agree (sha256 {})",
        copied.faces,
        copied.sets,
        started.elapsed().as_secs_f64(),
        copied.checksum
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_specs_parse_and_hide_passwords() {
        assert_eq!(
            "sled:./data".parse::<StoreSpec>(),
            Ok(StoreSpec::Sled(PathBuf::from("./data")))
        );
        let pg: StoreSpec = "postgres://ann:secret@db:5432/faces".parse().unwrap();
        assert_eq!(pg.to_string(), "postgres://ann:***@db:5432/faces");
        assert_eq!(
            "postgresql://ann@db/faces"
                .parse::<StoreSpec>()
                .unwrap()
                .to_string(),
            "postgresql://ann@db/faces"
        );
        for bad in ["", "sled:", "./data", "mysql://x", "redis://db"] {
            assert!(bad.parse::<StoreSpec>().is_err(), "{bad}");
        }
    }
}
