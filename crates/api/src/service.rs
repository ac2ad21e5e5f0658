//! The state behind the handlers and the one operation each handler calls. Operations take
//! domain arguments (tokens, names, sets, image bytes, thresholds) and return everything the
//! reply needs; nothing here knows HTTP.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use facerec::{BoundingBox, DecodeLimits, Embedding, Face, FaceEngine, ModelSpec};
use facerec_store::{
    FaceRecord, FaceSetInfo, FaceStore, FaceSummary, FaceToken, FileKeys, KeyHash, KeyRecord,
    KeyStore, LocalTokens, Match, NewKey, NewToken, Role, SledStore, StoreConfig, TokenStore,
};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use image::DynamicImage;

use crate::auth::{Access, Caller};
use crate::crop::encode_crop;
use crate::enroll::{EnrollError, EnrollImage, EnrollResult, EnrolledFace, enrolment_token};
use crate::metrics::{Gauges, Metrics, Stage};
use crate::pool::InferencePool;
use crate::{ApiConfig, ApiError, Limits};

/// How often expired tokens (and their crops) are purged, at most.
const PURGE_EVERY: Duration = Duration::from_secs(60);

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data dir (or a folder in it) cannot be made or used.
    #[error("data dir {path} is not usable")]
    DataDir {
        /// The folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The face store cannot be opened.
    #[error("cannot open the face store in {path}")]
    Store {
        /// Its folder.
        path: PathBuf,
        /// Why.
        #[source]
        source: facerec_store::Error,
    },
    /// The face store holds embeddings of another model than the engine makes.
    #[error(
        "the face store holds {store_model} ({store_dims}-d) embeddings; the engine makes \
         {model} ({dims}-d): run the model that made them (--model) or use another store"
    )]
    ModelMismatch {
        /// Model id of the store.
        store_model: String,
        /// Embedding size of the store.
        store_dims: usize,
        /// Model id of the engine.
        model: String,
        /// Embedding size of the engine.
        dims: usize,
    },
    /// The inference pool cannot be built.
    #[error("cannot start {threads} inference threads")]
    Pool {
        /// Threads asked for.
        threads: usize,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The Face API's state: models, face store, token store (with the crops), inference pool
/// and metrics. Cheap to clone (an `Arc` inside); one per server.
#[derive(Clone, Debug)]
pub struct FaceService {
    shared: Arc<Shared>,
}

struct Shared {
    engine: Arc<FaceEngine>,
    store: Arc<dyn FaceStore>,
    tokens: Arc<dyn TokenStore>,
    keys: Arc<dyn KeyStore>,
    /// Requests left to each key (by name), when rate limited.
    limiter: Option<DefaultKeyedRateLimiter<String>>,
    pool: InferencePool,
    metrics: Metrics,
    config: ApiConfig,
    started: Instant,
    /// Milliseconds after `started` of the last purge of expired tokens.
    last_purge_ms: AtomicU64,
}

/// A face given by its token (from `/detect`, or of an enrolled face) or by a photo, whose
/// largest face is the one meant.
#[derive(Debug)]
pub(crate) enum FaceQuery {
    /// A token.
    Token(FaceToken),
    /// A JPEG or PNG photo.
    Image {
        /// Its bytes.
        bytes: Bytes,
        /// What to call the photo when it has no face (the upload field).
        label: &'static str,
        /// The smallest face to look for, in pixels (`min_face`); `None`: the engine's.
        min_face: Option<u32>,
    },
}

/// A search threshold: a distance on the model's scale, kept with the text it was given as
/// so that the answer can echo it unchanged.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Threshold {
    value: f32,
    text: String,
}

impl Threshold {
    /// Parses a threshold: a finite number with `0 < t <= max`; the error says why not.
    pub(crate) fn parse(text: &str, max: f32) -> Result<Self, String> {
        let text = text.trim();
        let bad = |why: &str| {
            format!(
                "'{}' {why}; use a distance above 0 and at most {max} (0.6 recommended)",
                text.escape_default()
            )
        };
        let value: f32 = text.parse().map_err(|_| bad("is not a number"))?;
        if !value.is_finite() {
            return Err(bad("is not a finite number"));
        }
        if value <= 0.0 || value > max {
            return Err(bad("is out of range"));
        }
        Ok(Self {
            value,
            text: text.to_owned(),
        })
    }

    /// The distance.
    pub(crate) fn value(&self) -> f32 {
        self.value
    }

    /// The text it was given as (trimmed).
    pub(crate) fn as_str(&self) -> &str {
        &self.text
    }
}

/// A face found by `/detect` (or the query face of an image search), with its new token.
#[derive(Debug, Clone)]
pub(crate) struct DetectedFace {
    pub(crate) token: FaceToken,
    /// File name of its crop.
    pub(crate) crop: String,
    /// Bounding box clamped to the image.
    pub(crate) bbox: BoundingBox,
    pub(crate) score: f32,
    pub(crate) landmarks: [[f32; 2]; 5],
}

/// A face as enrolled in (or removed from) a face set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SetFace {
    pub(crate) token: FaceToken,
    pub(crate) name: String,
    pub(crate) set: String,
}

/// Which matches a search answers, nearest first.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ranking {
    /// At most this many (all when `None`).
    pub(crate) top_k: Option<usize>,
    /// Only the nearest face of each name (`group_by=name`), so that many photos of one
    /// person do not fill the answer.
    pub(crate) best_per_name: bool,
}

impl Ranking {
    /// Keeps what this ranking asks for of `matches` (nearest first, as a store answers).
    fn select(self, matches: Vec<Match>) -> Vec<Match> {
        let limit = self.top_k.unwrap_or(usize::MAX);
        if !self.best_per_name {
            return matches.into_iter().take(limit).collect();
        }
        let mut seen = std::collections::HashSet::new();
        matches
            .into_iter()
            .filter(|m| seen.insert(m.name.clone()))
            .take(limit)
            .collect()
    }
}

/// The result of a search.
#[derive(Debug)]
pub(crate) struct SearchOutcome {
    /// The query face's token (a new one when the query was a photo).
    pub(crate) token: FaceToken,
    pub(crate) set: String,
    pub(crate) threshold: Threshold,
    pub(crate) matches: Vec<Match>,
}

/// The result of a comparison.
#[derive(Debug)]
pub(crate) struct Comparison {
    pub(crate) token_a: FaceToken,
    pub(crate) token_b: FaceToken,
    pub(crate) distance: f32,
    /// The model's recommended threshold; below it, the same person.
    pub(crate) threshold: f32,
}

/// A page of a face set.
#[derive(Debug)]
pub(crate) struct FaceSetPage {
    pub(crate) set: String,
    pub(crate) offset: usize,
    pub(crate) limit: usize,
    /// Faces in the whole set.
    pub(crate) total: usize,
    pub(crate) faces: Vec<FaceSummary>,
}

/// What `/ready` reports.
#[derive(Debug)]
pub(crate) struct Readiness {
    pub(crate) model: ModelSpec,
    pub(crate) face_sets: usize,
    pub(crate) tokens: usize,
    /// Requests other than health, readiness and the console need an API key.
    pub(crate) keys_required: bool,
    /// Since the service was opened.
    pub(crate) uptime: Duration,
}

impl FaceService {
    /// The embedded default: the sled face store in `<data_dir>/faces` for the engine's
    /// model, and tokens in memory with their crops in `<data_dir>/crops` (emptied: tokens
    /// do not survive a restart).
    pub fn open(engine: Arc<FaceEngine>, config: ApiConfig) -> Result<Self, StartError> {
        let data_dir = |path: PathBuf| move |source| StartError::DataDir { path, source };
        std::fs::create_dir_all(&config.data_dir).map_err(data_dir(config.data_dir.clone()))?;
        let crops_dir = config.crops_dir();
        let tokens =
            LocalTokens::open(&crops_dir, config.tokens).map_err(|source| StartError::Store {
                path: crops_dir,
                source,
            })?;
        let faces_dir = config.faces_dir();
        let model = engine.model();
        let store = SledStore::open(&faces_dir, StoreConfig::new(model.id.clone(), model.dims()))
            .map_err(|source| StartError::Store {
            path: faces_dir,
            source,
        })?;
        Self::new(engine, Arc::new(store), Arc::new(tokens), config)
    }

    /// A service on the given face store and token store (e.g. shared ones in PostgreSQL),
    /// with API keys in `<data_dir>/keys.json` ([`FileKeys`]); `config.tokens` is the
    /// stores' business, not read here. The store must hold embeddings of the engine's
    /// model.
    pub fn new(
        engine: Arc<FaceEngine>,
        store: Arc<dyn FaceStore>,
        tokens: Arc<dyn TokenStore>,
        config: ApiConfig,
    ) -> Result<Self, StartError> {
        let keys = Arc::new(FileKeys::in_dir(&config.data_dir));
        Self::with_keys(engine, store, tokens, keys, config)
    }

    /// [`new`](Self::new) with the API keys in `keys` (e.g. the shared PostgreSQL ones).
    pub fn with_keys(
        engine: Arc<FaceEngine>,
        store: Arc<dyn FaceStore>,
        tokens: Arc<dyn TokenStore>,
        keys: Arc<dyn KeyStore>,
        config: ApiConfig,
    ) -> Result<Self, StartError> {
        let model = engine.model();
        if store.model_id() != model.id || store.dims() != model.dims() {
            return Err(StartError::ModelMismatch {
                store_model: store.model_id().to_owned(),
                store_dims: store.dims(),
                model: model.id.clone(),
                dims: model.dims(),
            });
        }
        let pool =
            InferencePool::new(config.inference_threads, config.queue).map_err(|source| {
                StartError::Pool {
                    threads: config.inference_threads,
                    source,
                }
            })?;
        let token_bounds = tokens.config();
        tracing::info!(
            model = %model.id,
            dims = model.dims(),
            max_tokens = token_bounds.max_entries,
            token_ttl_s = token_bounds.ttl.as_secs(),
            inference_threads = pool.threads(),
            queue = config.queue,
            "face service ready"
        );
        let limiter = config.auth.rate_limit.map(|rate| {
            DefaultKeyedRateLimiter::keyed(
                Quota::per_second(rate.per_second).allow_burst(rate.burst),
            )
        });
        Ok(Self {
            shared: Arc::new(Shared {
                engine,
                store,
                tokens,
                keys,
                limiter,
                pool,
                metrics: Metrics::new(),
                config,
                started: Instant::now(),
                last_purge_ms: AtomicU64::new(0),
            }),
        })
    }

    /// The configuration in force.
    pub fn config(&self) -> &ApiConfig {
        &self.shared.config
    }

    /// The request limits.
    pub fn limits(&self) -> &Limits {
        &self.shared.config.limits
    }

    /// The embedding model (id, dims, recommended threshold).
    pub fn model(&self) -> &ModelSpec {
        self.shared.engine.model()
    }

    /// Number of face tokens held now.
    pub fn token_count(&self) -> Result<usize, facerec_store::Error> {
        self.shared.tokens.len()
    }

    /// The face store.
    pub fn store(&self) -> &Arc<dyn FaceStore> {
        &self.shared.store
    }

    /// The API keys.
    pub fn keys(&self) -> &Arc<dyn KeyStore> {
        &self.shared.keys
    }

    /// Makes every face store change durable (also done by every add and remove).
    pub fn flush(&self) -> Result<(), facerec_store::Error> {
        self.shared.store.flush()
    }

    /// Number of handles to this service alive (servers, workers, this one).
    pub fn handles(&self) -> usize {
        Arc::strong_count(&self.shared)
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.shared.metrics
    }

    /// Every face of the photo (of at least `min_face` pixels, if given), each with a new
    /// token and a crop.
    pub(crate) async fn detect(
        &self,
        image: Bytes,
        min_face: Option<u32>,
    ) -> Result<Vec<DetectedFace>, ApiError> {
        let shared = Arc::clone(&self.shared);
        let faces = self
            .infer(move || {
                let (image, faces) = shared.analyze(&image, min_face)?;
                tokens_for(&image, faces)
            })
            .await?;
        self.register(faces).await
    }

    /// Stores the embedding of `token` (from the token cache, else already in `set`, which
    /// renames it) under `name` in face set `set`.
    pub(crate) async fn add_face(
        &self,
        token: FaceToken,
        name: String,
        set: String,
    ) -> Result<SetFace, ApiError> {
        let embedding = self.embedding_of(&set, &token).await?;
        let record = FaceRecord::new(
            token,
            name,
            embedding.as_slice().to_vec(),
            self.model().id.clone(),
        );
        let added = SetFace {
            token: record.token.clone(),
            name: record.name.clone(),
            set,
        };
        self.with_store(move |store| {
            store.add(&added.set, record)?;
            Ok(added)
        })
        .await
    }

    /// Deletes a face from a face set; returns what it was.
    pub(crate) async fn remove_face(
        &self,
        token: FaceToken,
        set: String,
    ) -> Result<SetFace, ApiError> {
        self.with_store(move |store| {
            let removed = store.remove(&set, &token)?;
            Ok(SetFace {
                token: removed.token,
                name: removed.name,
                set,
            })
        })
        .await
    }

    /// The faces of `set` nearer to the query face than `threshold`, nearest first, at most
    /// `top_k`.
    pub(crate) async fn search(
        &self,
        query: FaceQuery,
        threshold: Threshold,
        ranking: Ranking,
        set: String,
    ) -> Result<SearchOutcome, ApiError> {
        let (token, embedding) = self.resolve(&set, query).await?;
        self.with_store(move |store| {
            // grouping needs every match within the threshold: top_k applies after it
            let store_top_k = if ranking.best_per_name {
                None
            } else {
                ranking.top_k
            };
            let found = store.search(&set, embedding.as_slice(), threshold.value(), store_top_k)?;
            let matches = ranking.select(found);
            Ok(SearchOutcome {
                token,
                set,
                threshold,
                matches,
            })
        })
        .await
    }

    /// The distance between two faces; enrolled tokens are looked up in `set`.
    pub(crate) async fn compare(
        &self,
        a: FaceQuery,
        b: FaceQuery,
        set: String,
    ) -> Result<Comparison, ApiError> {
        let (token_a, a) = self.resolve(&set, a).await?;
        let (token_b, b) = self.resolve(&set, b).await?;
        Ok(Comparison {
            token_a,
            token_b,
            distance: a.distance(&b),
            threshold: self.model().threshold,
        })
    }

    /// Who is calling with `key` (or none), if they may do what `access` asks (`what` names
    /// the route for messages) and have not used up their rate.
    pub(crate) async fn authenticate(
        &self,
        key: Option<String>,
        access: Access,
        what: String,
    ) -> Result<Caller, ApiError> {
        let caller = match key {
            None => {
                if self.with_key_store(|keys| keys.any()).await? {
                    return Err(ApiError::Unauthorized {
                        reason: format!(
                            "{what} needs an API key: send `Authorization: Bearer <key>` or \
                             `X-API-Key: <key>`"
                        ),
                    });
                }
                if !self.shared.config.auth.anonymous {
                    return Err(ApiError::Unauthorized {
                        reason: "this server serves no request without an API key, and none \
                                 exists yet: make one with `facerec-server keys create --name \
                                 NAME --role admin`"
                            .to_owned(),
                    });
                }
                Caller::Anonymous
            }
            Some(key) => {
                let hash = KeyHash::of(&key);
                match self.with_key_store(move |keys| keys.find(&hash)).await? {
                    Some(record) => Caller::Key(record),
                    None => {
                        return Err(ApiError::Unauthorized {
                            reason: "the API key is unknown or has been revoked".to_owned(),
                        });
                    }
                }
            }
        };
        let needed = match access {
            Access::Open => return Ok(caller),
            Access::Role(role) => role,
            Access::Keys => Role::Admin,
        };
        let key = match &caller {
            Caller::Anonymous if access == Access::Keys => {
                return Err(ApiError::Unauthorized {
                    reason: format!(
                        "{what} needs an admin API key; make the first one with \
                         `facerec-server keys create --name NAME --role admin`"
                    ),
                });
            }
            Caller::Anonymous => return Ok(caller),
            Caller::Key(key) => key,
        };
        if !key.role.allows(needed) {
            return Err(ApiError::Forbidden {
                reason: format!(
                    "API key '{}' has role {}; {what} needs role {needed}",
                    key.name, key.role
                ),
            });
        }
        if access == Access::Keys && key.sets.is_some() {
            return Err(ApiError::Forbidden {
                reason: format!(
                    "API key '{}' is limited to some face sets; {what} needs an admin key \
                     for every set",
                    key.name
                ),
            });
        }
        if let (Some(limiter), Some(rate)) = (&self.shared.limiter, self.config().auth.rate_limit)
            && let Err(not_until) = limiter.check_key(&key.name)
        {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            return Err(ApiError::RateLimited {
                key: key.name.clone(),
                per_second: rate.per_second.get(),
                burst: rate.burst.get(),
                retry_after_s: wait.as_secs_f64().ceil().max(1.0) as u64,
            });
        }
        Ok(caller)
    }

    /// Every API key, by name.
    pub(crate) async fn list_keys(&self) -> Result<Vec<KeyRecord>, ApiError> {
        self.with_key_store(|keys| keys.list()).await
    }

    /// Makes a key; its secret is in the answer and nowhere else.
    pub(crate) async fn create_key(
        &self,
        name: String,
        role: Role,
        sets: Option<Vec<String>>,
    ) -> Result<NewKey, ApiError> {
        let key = NewKey::generate(&name, role, sets)?;
        let record = key.record.clone();
        self.with_key_store(move |keys| keys.create(record)).await?;
        tracing::info!(key = %key.record.name, role = %key.record.role, "API key made");
        Ok(key)
    }

    /// Revokes a key by name; it is refused from the next request on.
    pub(crate) async fn revoke_key(&self, name: String) -> Result<KeyRecord, ApiError> {
        let revoked = self.with_key_store(move |keys| keys.revoke(&name)).await?;
        tracing::info!(key = %revoked.name, "API key revoked");
        Ok(revoked)
    }

    /// Enrols the largest face of each photo under its name in face set `set` (made if
    /// needed), and answers what became of each photo, in order.
    ///
    /// The photos are analysed on the inference pool, as many at once as it has threads;
    /// then every face found is written in one store write ([`FaceStore::add_many`]). A photo
    /// that cannot be read or has no face gets its error in its result and does not stop the
    /// others. A face's token is [`enrolment_token`]`(set, bytes)`: the same photo enrolled
    /// again replaces its record. The whole call fails (and writes nothing) only when the
    /// set name is invalid, the server is overloaded, or the store fails.
    pub async fn enroll(
        &self,
        set: String,
        images: Vec<EnrollImage>,
    ) -> Result<Vec<EnrollResult>, ApiError> {
        use futures_util::StreamExt;
        facerec_store::validate_set_name(&set).map_err(|e| ApiError::BadArgument {
            name: "face_set",
            reason: e.to_string(),
        })?;
        let jobs = images.into_iter().enumerate().map(|(index, image)| {
            let shared = Arc::clone(&self.shared);
            let token = enrolment_token(&set, &image.bytes);
            async move {
                let bytes = image.bytes;
                let analysed = self
                    .infer(move || {
                        let (_, largest, count) = shared.analyze_largest(&bytes, None)?;
                        Ok(largest.map(|face| (face.embedding, count)))
                    })
                    .await;
                let outcome = match analysed {
                    Ok(Some((embedding, face_count))) => Ok((embedding, face_count)),
                    Ok(None) => Err(EnrollError {
                        code: crate::ErrorCode::FaceInfoError,
                        detail: format!("no face found in {}", image.file_name),
                    }),
                    // the photo is not a readable image: its own error
                    Err(e @ ApiError::Image(_)) if e.code() != crate::ErrorCode::InternalError => {
                        Err(EnrollError {
                            code: e.code(),
                            detail: format!("{}: {e}", image.file_name),
                        })
                    }
                    // overloaded, or an inference thread failed: the whole batch fails
                    Err(e) => return Err(e),
                };
                Ok((index, image.name, image.file_name, token, outcome))
            }
        });
        let threads = self.shared.pool.threads().max(1);
        let analysed: Vec<_> = futures_util::stream::iter(jobs)
            .buffered(threads)
            .collect::<Vec<_>>()
            .await
            .into_iter()
            .collect::<Result<_, ApiError>>()?;

        let model = self.model().id.clone();
        let mut records = Vec::new();
        let mut results = Vec::with_capacity(analysed.len());
        for (index, name, file_name, token, outcome) in analysed {
            let outcome = outcome.map(|(embedding, face_count): (Embedding, usize)| {
                records.push(FaceRecord::new(
                    token.clone(),
                    name.clone(),
                    embedding.as_slice().to_vec(),
                    model.clone(),
                ));
                EnrolledFace { token, face_count }
            });
            results.push(EnrollResult {
                index,
                file_name,
                name,
                outcome,
            });
        }
        if !records.is_empty() {
            self.with_store(move |store| store.add_many(&set, records))
                .await?;
        }
        Ok(results)
    }

    /// Every face set with its face count.
    pub(crate) async fn face_sets(&self) -> Result<Vec<FaceSetInfo>, ApiError> {
        self.with_store(|store| store.sets()).await
    }

    /// A page of face set `set`, in token order.
    pub(crate) async fn face_set_page(
        &self,
        set: String,
        offset: usize,
        limit: usize,
    ) -> Result<FaceSetPage, ApiError> {
        self.with_store(move |store| {
            Ok(FaceSetPage {
                total: store.len(&set)?,
                faces: store.faces(&set, offset, limit)?,
                set,
                offset,
                limit,
            })
        })
        .await
    }

    /// The JPEG bytes of a crop, by file name (`<token>.jpg`).
    pub(crate) async fn crop(&self, name: String) -> Result<Vec<u8>, ApiError> {
        let token = FaceToken::from_crop_file_name(&name).ok_or_else(|| ApiError::BadArgument {
            name: "face_name",
            reason: format!(
                "'{}' is not a crop name: crops are named <{} letters or digits>.jpg",
                name.escape_default(),
                FaceToken::GENERATED_LEN
            ),
        })?;
        let crop = self.with_tokens(move |tokens| tokens.crop(&token)).await?;
        crop.ok_or(ApiError::CropNotFound { name })
    }

    /// The models are loaded (they are, or the service would not exist), and the face store
    /// and the token store answer.
    pub(crate) async fn readiness(&self) -> Result<Readiness, ApiError> {
        let tokens = self
            .with_tokens(|tokens| {
                tokens.ping()?;
                tokens.len()
            })
            .await?;
        let face_sets = self
            .with_store(|store| {
                store.ping()?;
                store.sets()
            })
            .await?
            .len();
        let keys_exist = self.with_key_store(|keys| keys.any()).await?;
        Ok(Readiness {
            model: self.model().clone(),
            face_sets,
            tokens,
            keys_required: keys_exist || !self.shared.config.auth.anonymous,
            uptime: self.shared.started.elapsed(),
        })
    }

    /// The Prometheus text of `/metrics`. Gauges the stores cannot give now are left out.
    pub(crate) async fn metrics_text(&self) -> Result<String, ApiError> {
        let shared = Arc::clone(&self.shared);
        blocking(
            move || {
                let s = &shared;
                let face_sets = s
                    .store
                    .sets()
                    .map(|sets| sets.into_iter().map(|i| (i.name, i.count)).collect())
                    .unwrap_or_default();
                Ok(s.metrics.render(&Gauges {
                    face_sets,
                    tokens: s.tokens.len().ok(),
                    max_tokens: s.tokens.config().max_entries,
                    inference_in_flight: s.pool.in_flight(),
                    inference_capacity: s.pool.capacity(),
                    inference_threads: s.pool.threads(),
                }))
            },
            "rendering the metrics",
        )
        .await
    }

    /// Purges expired tokens and their crops, at most once a minute (called on every
    /// request, so no timer task is needed). The deletions run off the async workers.
    pub(crate) fn purge_expired_if_due(&self) {
        let s = &self.shared;
        let now_ms = u64::try_from(s.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last = s.last_purge_ms.load(Ordering::Relaxed);
        let due = now_ms.saturating_sub(last) >= PURGE_EVERY.as_millis() as u64;
        if !due
            || s.last_purge_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_err()
        {
            return;
        }
        let shared = Arc::clone(s);
        tokio::task::spawn_blocking(move || {
            match shared.tokens.purge_expired() {
                Ok(evicted) => shared.metrics.add_tokens_evicted(evicted),
                Err(e) => tracing::warn!("purging expired face tokens: {e}"),
            }
            // forget the buckets of keys that have been full for a while (revoked ones)
            if let Some(limiter) = &shared.limiter {
                limiter.retain_recent();
            }
        });
    }

    /// Runs inference work on the bounded pool, counting refusals.
    async fn infer<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let result = self.shared.pool.run(job).await;
        if matches!(result, Err(ApiError::Overloaded { .. })) {
            self.shared.metrics.add_overloaded();
        }
        result
    }

    /// Runs a face store operation off the async workers, timed as the `store` stage.
    async fn with_store<T: Send + 'static>(
        &self,
        op: impl FnOnce(&dyn FaceStore) -> facerec_store::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.store_task(Stage::Store, "face store task", move |s| op(&*s.store))
            .await
    }

    /// Runs a key store operation off the async workers, timed as the `keys` stage.
    async fn with_key_store<T: Send + 'static>(
        &self,
        op: impl FnOnce(&dyn KeyStore) -> facerec_store::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.store_task(Stage::Keys, "key store task", move |s| op(&*s.keys))
            .await
    }

    /// Runs a token store operation off the async workers, timed as the `tokens` stage.
    async fn with_tokens<T: Send + 'static>(
        &self,
        op: impl FnOnce(&dyn TokenStore) -> facerec_store::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        self.store_task(Stage::Tokens, "token store task", move |s| op(&*s.tokens))
            .await
    }

    /// Runs `op` on a blocking thread (stores may wait on disk or the network), timed as
    /// `stage`; `what` names it if the thread fails.
    async fn store_task<T: Send + 'static>(
        &self,
        stage: Stage,
        what: &'static str,
        op: impl FnOnce(&Shared) -> facerec_store::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let shared = Arc::clone(&self.shared);
        blocking(
            move || {
                shared
                    .metrics
                    .time(stage, || op(&shared))
                    .map_err(ApiError::from)
            },
            what,
        )
        .await
    }

    /// Puts new tokens (with their crops) in the token store; counts what that evicts.
    async fn register(
        &self,
        faces: Vec<(DetectedFace, NewToken)>,
    ) -> Result<Vec<DetectedFace>, ApiError> {
        let (detected, tokens): (Vec<DetectedFace>, Vec<NewToken>) = faces.into_iter().unzip();
        if !tokens.is_empty() {
            let evicted = self.with_tokens(move |t| t.insert(tokens)).await?;
            self.shared.metrics.add_tokens_evicted(evicted);
        }
        Ok(detected)
    }

    /// The embedding of a token: from the token store, else from face set `set`.
    async fn embedding_of(&self, set: &str, token: &FaceToken) -> Result<Arc<Embedding>, ApiError> {
        let key = token.clone();
        if let Some(embedding) = self.with_tokens(move |t| t.embedding(&key)).await? {
            return Ok(Arc::new(Embedding::new(embedding)));
        }
        let (set_name, key) = (set.to_owned(), token.clone());
        let record = self
            .with_store(move |store| store.get(&set_name, &key))
            .await?;
        record
            .map(|r| Arc::new(Embedding::new(r.embedding)))
            .ok_or_else(|| ApiError::UnknownToken {
                token: token.to_string(),
                set: set.to_owned(),
            })
    }

    /// The token and embedding of a face given by token, or by photo (its largest face,
    /// which gets a new token and crop).
    async fn resolve(
        &self,
        set: &str,
        query: FaceQuery,
    ) -> Result<(FaceToken, Arc<Embedding>), ApiError> {
        match query {
            FaceQuery::Token(token) => {
                let embedding = self.embedding_of(set, &token).await?;
                Ok((token, embedding))
            }
            FaceQuery::Image {
                bytes,
                label,
                min_face,
            } => {
                let shared = Arc::clone(&self.shared);
                let (largest, embedding) = self
                    .infer(move || {
                        let (image, largest, _) = shared.analyze_largest(&bytes, min_face)?;
                        let face = largest.ok_or(ApiError::NoFace { field: label })?;
                        let embedding = Arc::new(face.embedding.clone());
                        Ok((tokens_for(&image, vec![face])?, embedding))
                    })
                    .await?;
                let token = self
                    .register(largest)
                    .await?
                    .into_iter()
                    .next()
                    .map(|d| d.token)
                    .ok_or(ApiError::NoFace { field: label })?;
                Ok((token, embedding))
            }
        }
    }
}

/// Runs blocking work on the runtime's blocking threads; a panic or cancellation there is an
/// internal error naming `what`.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
    what: &'static str,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(format!("{what} failed: {e}")))?
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaceService")
            .field("model", &self.engine.model().id)
            .field("store_model", &self.store.model_id())
            .field("tokens", &self.tokens.config())
            .field("pool", &self.pool)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Shared {
    /// Decodes and analyses an image (on an inference thread), for faces of at least
    /// `min_face` pixels (`None`: the engine's smallest).
    fn analyze(
        &self,
        bytes: &[u8],
        min_face: Option<u32>,
    ) -> Result<(DynamicImage, Vec<Face>), ApiError> {
        let image = self.decode(bytes)?;
        let faces = self.metrics.time(Stage::DetectEmbed, || match min_face {
            None => self.engine.analyze(&image),
            Some(side) => self.engine.analyze_min_face(&image, side as f32),
        })?;
        self.found(&image, faces.len());
        Ok((image, faces))
    }

    /// [`analyze`](Self::analyze) embedding only the largest face (what a query or an
    /// enrolment by photo uses); also returns how many faces the photo holds.
    fn analyze_largest(
        &self,
        bytes: &[u8],
        min_face: Option<u32>,
    ) -> Result<(DynamicImage, Option<Face>, usize), ApiError> {
        let image = self.decode(bytes)?;
        let largest = self.metrics.time(Stage::DetectEmbed, || {
            self.engine
                .analyze_largest(&image, min_face.map(|side| side as f32))
        })?;
        let (face, found) = largest.map_or((None, 0), |(face, found)| (Some(face), found));
        self.found(&image, found);
        Ok((image, face, found))
    }

    /// Decodes an upload within the configured limits, timed.
    fn decode(&self, bytes: &[u8]) -> Result<DynamicImage, ApiError> {
        let limits: &DecodeLimits = &self.config.limits.decode;
        Ok(self
            .metrics
            .time(Stage::Decode, || facerec::decode_image(bytes, limits))?)
    }

    /// Counts and logs the faces found in `image`.
    fn found(&self, image: &DynamicImage, faces: usize) {
        self.metrics.add_faces_detected(faces);
        tracing::debug!(
            width = image.width(),
            height = image.height(),
            faces,
            "analysed image"
        );
    }
}

/// Gives each face a new token and its crop (JPEG), ready for the token store; boxes are
/// clamped to the image.
fn tokens_for(
    image: &DynamicImage,
    faces: Vec<Face>,
) -> Result<Vec<(DetectedFace, NewToken)>, ApiError> {
    let (w, h) = (image.width() as f32, image.height() as f32);
    faces
        .into_iter()
        .map(|face| {
            // 62^24 possible tokens: a collision is not a practical concern.
            let token = FaceToken::generate();
            let b = face.bbox;
            let detected = DetectedFace {
                crop: token.crop_file_name().unwrap_or_default(),
                token: token.clone(),
                bbox: BoundingBox::new(
                    b.x1.clamp(0.0, w),
                    b.y1.clamp(0.0, h),
                    b.x2.clamp(0.0, w),
                    b.y2.clamp(0.0, h),
                ),
                score: face.score,
                landmarks: face.landmarks,
            };
            let new = NewToken {
                crop: encode_crop(image, &face.bbox)?,
                token,
                embedding: face.embedding.as_slice().to_vec(),
            };
            Ok((detected, new))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service on a fresh data dir, and a runtime to drive it (no HTTP anywhere).
    struct Fixture {
        service: FaceService,
        runtime: tokio::runtime::Runtime,
        dir: PathBuf,
    }

    impl Fixture {
        fn new(tag: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("facerec-service-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let engine = Arc::new(
                FaceEngine::from_dir(facerec_fixtures::models_dir()).expect("loading the models"),
            );
            let mut config = ApiConfig::new(&dir);
            config.inference_threads = 2;
            let service = FaceService::open(engine, config).expect("opening the service");
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime");
            Self {
                service,
                runtime,
                dir,
            }
        }

        fn run<T>(&self, work: impl Future<Output = T>) -> T {
            self.runtime.block_on(work)
        }

        fn photo(name: &str) -> Bytes {
            Bytes::from(facerec_fixtures::photo_bytes(name))
        }

        /// The token of the largest face of a photo.
        fn detect_largest(&self, name: &str) -> FaceToken {
            let faces = self
                .run(self.service.detect(Self::photo(name), None))
                .unwrap();
            let area = |f: &DetectedFace| (f.bbox.x2 - f.bbox.x1) * (f.bbox.y2 - f.bbox.y1);
            faces
                .iter()
                .max_by(|a, b| area(a).total_cmp(&area(b)))
                .map(|f| f.token.clone())
                .expect("a face")
        }
    }

    impl Drop for Fixture {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }

    fn threshold(text: &str) -> Threshold {
        Threshold::parse(text, 4.0).unwrap()
    }

    #[test]
    fn enrol_search_compare_page_and_remove_through_the_service() {
        let fx = Fixture::new("flow");
        let s = &fx.service;
        let obama = fx.detect_largest("obama.jpg");
        assert!(obama.is_generated_form());
        let crops = std::fs::read_dir(fx.dir.join("crops")).unwrap().count();
        assert_eq!(s.token_count().unwrap(), crops);

        let added = fx
            .run(s.add_face(obama.clone(), "obama".into(), "staff".into()))
            .unwrap();
        assert_eq!(
            added,
            SetFace {
                token: obama.clone(),
                name: "obama".into(),
                set: "staff".into()
            }
        );

        // by photo: a new token for the query face, obama found below 0.6
        let query = FaceQuery::Image {
            bytes: Fixture::photo("obama2.jpg"),
            label: "image_file",
            min_face: None,
        };
        let found = fx
            .run(s.search(
                query,
                threshold(" 0.60 "),
                Ranking::default(),
                "staff".into(),
            ))
            .unwrap();
        assert_ne!(found.token, obama);
        assert_eq!(
            (found.set.as_str(), found.threshold.as_str()),
            ("staff", "0.60")
        );
        assert_eq!(found.matches.len(), 1);
        assert_eq!(found.matches[0].token, obama);
        assert!(found.matches[0].distance < 0.6, "{:?}", found.matches);

        // another set does not hold it
        let elsewhere = fx
            .run(s.search(
                FaceQuery::Token(found.token.clone()),
                threshold("0.6"),
                Ranking::default(),
                "other".into(),
            ))
            .unwrap();
        assert!(elsewhere.matches.is_empty());

        let biden = fx.detect_largest("biden.jpg");
        let verdict = fx
            .run(s.compare(
                FaceQuery::Token(obama.clone()),
                FaceQuery::Token(biden),
                "staff".into(),
            ))
            .unwrap();
        assert!(verdict.distance > verdict.threshold, "{verdict:?}");

        let page = fx.run(s.face_set_page("staff".into(), 0, 10)).unwrap();
        assert_eq!(
            (page.set.as_str(), page.total, page.offset, page.limit),
            ("staff", 1, 0, 10)
        );
        assert_eq!(page.faces[0].name, "obama");

        let removed = fx
            .run(s.remove_face(obama.clone(), "staff".into()))
            .unwrap();
        assert_eq!(removed, added);
        let again = fx.run(s.remove_face(obama, "staff".into())).unwrap_err();
        assert_eq!(again.code().code(), 1006);
    }

    #[test]
    fn unknown_tokens_and_faceless_photos_are_named_errors() {
        let fx = Fixture::new("errors");
        let s = &fx.service;
        let unknown = FaceToken::parse("nosuchtoken").unwrap();
        let err = fx
            .run(s.add_face(unknown.clone(), "x".into(), "default".into()))
            .unwrap_err();
        assert!(
            matches!(&err, ApiError::UnknownToken { token, set } if token == "nosuchtoken" && set == "default"),
            "{err}"
        );
        // a photo without a face (a flat grey square)
        let mut png = Vec::new();
        image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            200,
            200,
            image::Rgb([128, 128, 128]),
        ))
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
        let query = FaceQuery::Image {
            bytes: Bytes::from(png),
            label: "image_file_b",
            min_face: None,
        };
        let err = fx
            .run(s.search(
                query,
                threshold("0.6"),
                Ranking::default(),
                "default".into(),
            ))
            .unwrap_err();
        assert!(
            matches!(
                err,
                ApiError::NoFace {
                    field: "image_file_b"
                }
            ),
            "{err}"
        );
        let faceless = fx
            .run(s.search(
                FaceQuery::Image {
                    bytes: Bytes::from(vec![0u8; 10]),
                    label: "image_file",
                    min_face: None,
                },
                threshold("0.6"),
                Ranking::default(),
                "default".into(),
            ))
            .unwrap_err();
        assert_eq!(faceless.code().code(), 1004, "{faceless}");
    }
}
