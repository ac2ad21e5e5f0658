//! `facerec-server keys`: make, list and revoke API keys in the store a server uses (also
//! while it runs: keys live in `DATA_DIR/keys.json`, beside the sled data, or in the shared
//! PostgreSQL database).

use std::sync::Arc;

use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use facerec_store::{FileKeys, KeyStore, NewKey, Role};
use facerec_store_postgres::Postgres;

use crate::store::{StoreSpec, pg_config};

#[derive(Debug, Subcommand)]
pub(crate) enum KeysCommand {
    /// Makes a key and prints it (once: only its SHA-256 is kept). The key goes to stdout
    /// alone, the rest to stderr, so `KEY=$(facerec-server keys create ...)` works.
    Create {
        /// A unique name, to list and revoke it by (A-Z a-z 0-9 _ - .).
        #[arg(long)]
        name: String,
        /// read: detect, search, compare, list; write: also add and remove faces; admin:
        /// also manage keys over HTTP and read /metrics.
        #[arg(long, value_enum)]
        role: RoleArg,
        /// Face sets the key is limited to (comma-separated) [default: every set].
        #[arg(long, value_name = "SET", value_delimiter = ',')]
        sets: Vec<String>,
    },
    /// Lists the keys: name, role, face sets, when made.
    List {
        /// One JSON object per line.
        #[arg(long)]
        json: bool,
    },
    /// Revokes a key: refused from the next request on, by every server of the store.
    Revoke {
        /// The key's name.
        name: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum RoleArg {
    Read,
    Write,
    Admin,
}

impl From<RoleArg> for Role {
    fn from(role: RoleArg) -> Self {
        match role {
            RoleArg::Read => Role::Read,
            RoleArg::Write => Role::Write,
            RoleArg::Admin => Role::Admin,
        }
    }
}

/// The key store of a face store: `DATA_DIR/keys.json` for sled, the `api_keys` table for
/// PostgreSQL.
pub(crate) fn open(
    spec: &StoreSpec,
    pool_size: Option<usize>,
) -> anyhow::Result<Arc<dyn KeyStore>> {
    Ok(match spec {
        StoreSpec::Sled(dir) => {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot make data dir {}", dir.display()))?;
            Arc::new(FileKeys::in_dir(dir))
        }
        StoreSpec::Postgres(url) => {
            let pg = Postgres::connect(pg_config(url, pool_size))
                .with_context(|| format!("cannot use {spec}"))?;
            Arc::new(pg.key_store())
        }
    })
}

pub(crate) fn run(
    spec: &StoreSpec,
    pool_size: Option<usize>,
    command: &KeysCommand,
) -> anyhow::Result<()> {
    let keys = open(spec, pool_size)?;
    match command {
        KeysCommand::Create { name, role, sets } => {
            let sets = (!sets.is_empty()).then(|| sets.clone());
            let key = NewKey::generate(name, (*role).into(), sets)?;
            keys.create(key.record.clone())
                .with_context(|| format!("cannot make key '{name}' in {spec}"))?;
            eprintln!(
                "made API key '{}' (role {}, face sets: {}) in {spec}; it is printed once, \
                 here, and not kept: store it now",
                key.record.name,
                key.record.role,
                describe_sets(key.record.sets.as_deref())
            );
            println!("{}", key.secret);
        }
        KeysCommand::List { json } => {
            let list = keys
                .list()
                .with_context(|| format!("cannot list the keys of {spec}"))?;
            if list.is_empty() && !json {
                eprintln!("no API keys in {spec}");
            }
            for key in list {
                if *json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "name": key.name,
                            "role": key.role.as_str(),
                            "face_sets": key.sets,
                            "created_unix_ms": key.created_unix_ms,
                        })
                    );
                } else {
                    println!(
                        "{}\t{}\t{}\tmade {}",
                        key.name,
                        key.role,
                        describe_sets(key.sets.as_deref()),
                        key.created_unix_ms / 1000
                    );
                }
            }
        }
        KeysCommand::Revoke { name } => {
            let revoked = keys
                .revoke(name)
                .with_context(|| format!("cannot revoke key '{name}' in {spec}"))?;
            eprintln!("revoked API key '{}' (role {})", revoked.name, revoked.role);
        }
    }
    Ok(())
}

fn describe_sets(sets: Option<&[String]>) -> String {
    sets.map_or_else(|| "all".to_owned(), |sets| sets.join(","))
}
