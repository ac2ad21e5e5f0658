//! What API keys cost a request: `GET /facesets` through the whole actix app in process (no
//! sockets), with no key store entries (anonymous), with a key checked against
//! `DATA_DIR/keys.json` (the default), and with a key checked against PostgreSQL (skipped,
//! saying so, without a PostgreSQL server); plus `/health`, which no check runs on. The rate
//! limiter is on, with a rate too high to refuse anything, so its check is in the numbers.
//! The group `auth`; the overhead of the key check is the difference between the key benches
//! and `facesets_anonymous`.
#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::num::NonZeroU32;
use std::sync::Arc;

use actix_web::test;
use criterion::{Criterion, criterion_group};
use facerec::FaceEngine;
use facerec_api::{ApiConfig, FaceService, RateLimit};
use facerec_store::{
    FileKeys, KeyStore, LocalTokens, NewKey, Role, SledStore, StoreConfig, TokenCacheConfig,
};

fn config(dir: &std::path::Path) -> ApiConfig {
    let mut config = ApiConfig::new(dir);
    let plenty = NonZeroU32::new(1_000_000_000).unwrap();
    config.auth.rate_limit = Some(RateLimit {
        per_second: plenty,
        burst: plenty,
    });
    config
}

/// Benches `GET path` (with `key` as a bearer key) on an app serving `service`.
fn bench_get(c: &mut Criterion, name: &str, service: &FaceService, path: &str, key: Option<&str>) {
    let system = actix_web::rt::System::new();
    let app = system.block_on(test::init_service(facerec_api::app(service.clone())));
    let key = key.map(|k| format!("Bearer {k}"));
    c.bench_function(&format!("auth/{name}"), |b| {
        b.iter(|| {
            system.block_on(async {
                let mut req = test::TestRequest::get().uri(path);
                if let Some(key) = &key {
                    req = req.insert_header(("Authorization", key.as_str()));
                }
                let res = test::call_service(&app, req.to_request()).await;
                assert_eq!(res.status(), 200);
            })
        })
    });
}

/// Ten keys in `keys`; the secret of the last.
fn some_keys(keys: &dyn KeyStore) -> String {
    let mut secret = String::new();
    for i in 0..10 {
        let key = NewKey::generate(&format!("key-{i}"), Role::Read, None).unwrap();
        keys.create(key.record).unwrap();
        secret = key.secret;
    }
    secret
}

fn auth(c: &mut Criterion) {
    let engine = Arc::new(FaceEngine::from_dir(facerec_fixtures::models_dir()).unwrap());
    let dir = std::env::temp_dir().join(format!("facerec-bench-auth-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);

    let service = FaceService::open(Arc::clone(&engine), config(&dir)).unwrap();
    bench_get(c, "health_open", &service, "/health", None);
    bench_get(c, "facesets_anonymous", &service, "/facesets", None);
    let secret = some_keys(service.keys().as_ref());
    bench_get(c, "facesets_file_key", &service, "/facesets", Some(&secret));
    c.bench_function("auth/file_keys_find", |b| {
        let keys = FileKeys::in_dir(&dir);
        b.iter(|| {
            let hash = facerec_store::KeyHash::of(std::hint::black_box(&secret));
            assert!(keys.find(&hash).unwrap().is_some());
        })
    });
    drop(service);

    match facerec_fixtures::postgres::fresh_database("bench-auth") {
        None => println!("SKIPPED auth/facesets_postgres_key: no PostgreSQL server"),
        Some(db) => {
            let pg = facerec_store_postgres::Postgres::connect(
                facerec_store_postgres::PgConfig::new(&db.url),
            )
            .unwrap();
            let model = engine.model();
            let faces_dir = dir.join("pg-faces");
            let faces =
                SledStore::open(&faces_dir, StoreConfig::new(model.id.clone(), model.dims()))
                    .unwrap();
            let tokens =
                LocalTokens::open(dir.join("pg-crops"), TokenCacheConfig::default()).unwrap();
            let keys = Arc::new(pg.key_store());
            let secret = some_keys(keys.as_ref());
            let service = FaceService::with_keys(
                Arc::clone(&engine),
                Arc::new(faces),
                Arc::new(tokens),
                keys,
                config(&dir),
            )
            .unwrap();
            bench_get(
                c,
                "facesets_postgres_key",
                &service,
                "/facesets",
                Some(&secret),
            );
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(benches, auth);
