//! Exact search over 100k and 1M random 128-d embeddings (norm 1.3, like the
//! real model), threshold 0.6: the in-memory [`FaceMatrix`] directly,
//! [`SledStore`] for 100k, and the PostgreSQL store for 100k and 1M (with the
//! time to write them and to load them at start; skipped, saying so, without a
//! PostgreSQL server): the group `search`.
//!
//! Medians are in `target/criterion/search/*/new/estimates.json`. Also prints the
//! memory used per face beyond the embedding (RSS delta and computed heap bytes).
//! Each face set is built when its first bench runs, so a run filtered to other
//! groups does not pay for it.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::cell::OnceCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use facerec_fixtures::Rng;
use facerec_store::{FaceMatrix, FaceRecord, FaceStore, FaceToken, SledStore, StoreConfig};

const DIMS: usize = 128;
const NORM: f32 = 1.3;
const THRESHOLD: f32 = 0.6;
const MODEL: &str = "bench-model";

/// A random direction scaled to `NORM`.
fn random_embedding(rng: &mut Rng) -> Vec<f32> {
    // sum of three uniforms: roughly Gaussian, so directions are spread
    let mut v: Vec<f32> = (0..DIMS)
        .map(|_| rng.next_f32() + rng.next_f32() + rng.next_f32())
        .collect();
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    v.iter_mut().for_each(|x| *x *= NORM / n);
    v
}

/// A 24-character token like the API layer's.
fn random_token(rng: &mut Rng) -> FaceToken {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_-";
    let text: String = (0..24)
        .map(|_| ALPHABET[(rng.next_u64() % 64) as usize] as char)
        .collect();
    FaceToken::parse(&text).unwrap()
}

/// A query near face number `near` (so the result is not always empty).
fn query_near(v: &[f32], rng: &mut Rng) -> Vec<f32> {
    v.iter().map(|x| x + 0.02 * rng.next_f32()).collect()
}

fn rss_bytes() -> Option<usize> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: usize = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}

fn build_matrix(n: usize, seed: u64) -> (FaceMatrix, Vec<f32>) {
    let mut rng = Rng(seed);
    let started = Instant::now();
    let rss0 = rss_bytes();
    let mut m = FaceMatrix::with_capacity(DIMS, n);
    let mut query = Vec::new();
    for i in 0..n {
        let v = random_embedding(&mut rng);
        if i == n / 3 {
            query = query_near(&v, &mut rng);
        }
        let token = random_token(&mut rng);
        m.upsert(&token, &format!("person {i}"), &v).unwrap();
    }
    let rss1 = rss_bytes();
    let embedding_bytes = DIMS * 4;
    let heap = m.heap_bytes();
    eprintln!(
        "matrix of {n} faces built in {:.1?}: heap {} MB computed = {} bytes/face, {} over the embedding",
        started.elapsed(),
        heap >> 20,
        heap / n,
        heap / n - embedding_bytes
    );
    if let (Some(a), Some(b)) = (rss0, rss1) {
        let per = b.saturating_sub(a) / n;
        eprintln!(
            "  RSS delta {} MB = {per} bytes/face, {} over the embedding (nproc {})",
            b.saturating_sub(a) >> 20,
            per.saturating_sub(embedding_bytes),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
    }
    (m, query)
}

fn matrix_search(c: &mut Criterion) {
    let mut group = c.benchmark_group("search");
    for (label, n) in [("100k", 100_000usize), ("1M", 1_000_000)] {
        let built: OnceCell<(FaceMatrix, Vec<f32>)> = OnceCell::new();
        let matrix = || {
            built.get_or_init(|| {
                let (m, query) = build_matrix(n, 0xFACE + n as u64);
                let hits = m.search(&query, THRESHOLD, None).unwrap();
                eprintln!("  {label}: {} match(es) below {THRESHOLD}", hits.len());
                assert!(!hits.is_empty());
                (m, query)
            })
        };
        if n >= 1_000_000 {
            group.sample_size(20);
            group.measurement_time(Duration::from_secs(8));
        }
        group.bench_function(format!("matrix_{label}"), |b| {
            let (m, query) = matrix();
            b.iter(|| black_box(m.search(black_box(query), THRESHOLD, None).unwrap()))
        });
        group.bench_function(format!("matrix_{label}_top1"), |b| {
            let (m, query) = matrix();
            b.iter(|| black_box(m.search(black_box(query), THRESHOLD, Some(1)).unwrap()))
        });
    }
    group.finish();
}

/// Times searches of set `bench` of `store` for `query`.
fn search_bench_set(b: &mut criterion::Bencher<'_>, store: &dyn FaceStore, query: &[f32]) {
    b.iter(|| {
        black_box(
            store
                .search("bench", black_box(query), THRESHOLD, None)
                .unwrap(),
        )
    });
}

fn sled_search(c: &mut Criterion) {
    let n = 100_000;
    let dir = std::env::temp_dir().join(format!("facerec-bench-search-{}", std::process::id()));
    let opened: OnceCell<(SledStore, Vec<f32>)> = OnceCell::new();
    let mut group = c.benchmark_group("search");
    group.bench_function("sled_100k", |b| {
        let (store, query) = opened.get_or_init(|| sled_store(&dir, n));
        search_bench_set(b, store, query);
    });
    group.finish();
    if let Some((store, _)) = opened.into_inner() {
        drop(store);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

/// A sled store of `n` random faces in set `bench` under `dir`, written, closed and opened
/// again; and a query near one of them.
fn sled_store(dir: &std::path::Path, n: usize) -> (SledStore, Vec<f32>) {
    let _ = std::fs::remove_dir_all(dir);
    let store = SledStore::open(dir, StoreConfig::new(MODEL, DIMS)).unwrap();
    let mut rng = Rng(0x5EED);
    let started = Instant::now();
    let mut query = Vec::new();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        let v = random_embedding(&mut rng);
        if i == n / 2 {
            query = query_near(&v, &mut rng);
        }
        let token = random_token(&mut rng);
        batch.push(FaceRecord::new(token, format!("person {i}"), v, MODEL));
        if batch.len() == 10_000 {
            store.add_many("bench", std::mem::take(&mut batch)).unwrap();
        }
    }
    eprintln!(
        "sled store of {n} faces written in {:.1?}",
        started.elapsed()
    );
    drop(store);
    let started = Instant::now();
    let store = SledStore::open(dir, StoreConfig::new(MODEL, DIMS)).unwrap();
    eprintln!(
        "  reopened (matrix rebuilt from sled) in {:.1?}; matrix {} bytes/face",
        started.elapsed(),
        store.matrix_bytes() / n
    );
    (store, query)
}

/// A PostgreSQL store of `n` random faces (the same as the matrix bench's) in a fresh
/// database, written in batches, then opened again by a second store as a starting server
/// would: its load time and memory are printed.
fn postgres_store(
    n: usize,
    seed: u64,
) -> Option<(
    facerec_fixtures::postgres::TestDatabase,
    facerec_store_postgres::PgStore,
    Vec<f32>,
)> {
    use facerec_store_postgres::{PgConfig, Postgres};
    let db = facerec_fixtures::postgres::fresh_database("bench")?;
    let writer = Postgres::connect(PgConfig::new(&db.url))
        .unwrap()
        .face_store(StoreConfig::new(MODEL, DIMS))
        .unwrap();
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut query = Vec::new();
    let mut batch = Vec::with_capacity(10_000);
    for i in 0..n {
        let v = random_embedding(&mut rng);
        if i == n / 3 {
            query = query_near(&v, &mut rng);
        }
        batch.push(FaceRecord::new(
            random_token(&mut rng),
            format!("person {i}"),
            v,
            MODEL,
        ));
        if batch.len() == 10_000 {
            writer
                .add_many("bench", std::mem::take(&mut batch))
                .unwrap();
        }
    }
    let written = started.elapsed();
    drop(writer);
    let rss0 = rss_bytes();
    let started = Instant::now();
    let store = Postgres::connect(PgConfig::new(&db.url))
        .unwrap()
        .face_store(StoreConfig::new(MODEL, DIMS))
        .unwrap();
    let loaded = started.elapsed();
    let rss1 = rss_bytes();
    eprintln!(
        "PostgreSQL store of {n} faces written in {written:.1?} ({:.0} faces/s in batches of \
         10,000); loaded at start in {loaded:.2?}; matrix {} bytes/face; RSS delta of the load \
         {} MB (nproc {})",
        n as f64 / written.as_secs_f64(),
        store.matrix_bytes() / n,
        rss1.zip(rss0).map_or(0, |(b, a)| b.saturating_sub(a) >> 20),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    Some((db, store, query))
}

fn postgres_search(c: &mut Criterion) {
    let mut group = c.benchmark_group("search");
    for (label, n) in [("100k", 100_000usize), ("1M", 1_000_000)] {
        type Opened = Option<(
            facerec_fixtures::postgres::TestDatabase,
            facerec_store_postgres::PgStore,
            Vec<f32>,
        )>;
        let opened: OnceCell<Opened> = OnceCell::new();
        if n >= 1_000_000 {
            group.sample_size(20);
            group.measurement_time(Duration::from_secs(8));
        }
        group.bench_function(format!("postgres_{label}"), |b| {
            // the same faces and query as matrix_{label}
            let Some((_, store, query)) = opened
                .get_or_init(|| postgres_store(n, 0xFACE + n as u64))
                .as_ref()
            else {
                b.iter(|| ());
                return;
            };
            search_bench_set(b, store, query);
        });
    }
    group.finish();
}

criterion_group!(benches, matrix_search, sled_search, postgres_search);
