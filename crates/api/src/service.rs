//! The state behind the handlers and the one operation each handler calls.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use facerec::{BoundingBox, DecodeLimits, Embedding, Face, FaceEngine, ModelDescriptor};
use facerec_store::{
    FaceRecord, FaceSetInfo, FaceStore, FaceSummary, Match, SledStore, StoreConfig, TokenCache,
    TokenCacheConfig,
};
use image::DynamicImage;

use crate::crops::{CropDir, TOKEN_LEN};
use crate::input::{
    AddFaceInput, CompareInput, FaceSetPageInput, FaceSource, RemoveFaceInput, SearchInput,
};
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
    /// The inference pool cannot be built.
    #[error("cannot start {threads} inference threads: {reason}")]
    Pool {
        /// Threads asked for.
        threads: usize,
        /// Why.
        reason: String,
    },
}

/// The Face API's state: models, face store, token cache, crops, inference pool and metrics.
/// Cheap to clone (an `Arc` inside); one per server.
#[derive(Clone, Debug)]
pub struct FaceService {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    engine: Arc<FaceEngine>,
    store: SledStore,
    tokens: TokenCache<Arc<Embedding>>,
    crops: CropDir,
    pool: InferencePool,
    metrics: Metrics,
    config: ApiConfig,
    started: Instant,
    /// Milliseconds after `started` of the last purge of expired tokens.
    last_purge_ms: AtomicU64,
}

/// A face found by `/detect` (or the query face of an image search), with its new token.
#[derive(Debug, Clone)]
pub(crate) struct DetectedFace {
    pub(crate) token: String,
    pub(crate) crop: String,
    /// Bounding box clamped to the image.
    pub(crate) bbox: BoundingBox,
    pub(crate) score: f32,
    pub(crate) landmarks: [[f32; 2]; 5],
}

/// The result of a search.
#[derive(Debug)]
pub(crate) struct SearchOutcome {
    pub(crate) token: String,
    pub(crate) matches: Vec<Match>,
}

/// The result of a comparison.
#[derive(Debug)]
pub(crate) struct Comparison {
    pub(crate) token_a: String,
    pub(crate) token_b: String,
    pub(crate) distance: f32,
    pub(crate) threshold: f32,
}

/// A page of a face set.
#[derive(Debug)]
pub(crate) struct FaceSetPage {
    pub(crate) total: usize,
    pub(crate) faces: Vec<FaceSummary>,
}

/// What `/ready` reports.
#[derive(Debug)]
pub(crate) struct Readiness {
    pub(crate) model: ModelDescriptor,
    pub(crate) face_sets: usize,
    pub(crate) tokens: usize,
}

impl FaceService {
    /// Opens the face store in `<data_dir>/faces` for the engine's model, empties
    /// `<data_dir>/crops` (tokens do not survive a restart), and starts the inference pool.
    pub fn open(engine: Arc<FaceEngine>, config: ApiConfig) -> Result<Self, StartError> {
        let data_dir = |path: PathBuf| move |source| StartError::DataDir { path, source };
        std::fs::create_dir_all(&config.data_dir).map_err(data_dir(config.data_dir.clone()))?;
        let crops_dir = config.crops_dir();
        let crops = CropDir::open_empty(&crops_dir).map_err(data_dir(crops_dir))?;
        let faces_dir = config.faces_dir();
        let model = engine.model();
        let store = SledStore::open(&faces_dir, StoreConfig::new(model.id.clone(), model.dims))
            .map_err(|source| StartError::Store {
                path: faces_dir,
                source,
            })?;
        let pool = InferencePool::new(config.inference_threads, config.queue).map_err(|e| {
            StartError::Pool {
                threads: config.inference_threads,
                reason: e.to_string(),
            }
        })?;
        let tokens = TokenCache::new(TokenCacheConfig {
            max_entries: config.max_tokens,
            ttl: config.token_ttl,
        });
        tracing::info!(
            data_dir = %config.data_dir.display(),
            model = %model.id,
            dims = model.dims,
            max_tokens = config.max_tokens,
            token_ttl_s = config.token_ttl.as_secs(),
            inference_threads = pool.threads(),
            queue = config.queue,
            "face service ready"
        );
        Ok(Self {
            shared: Arc::new(Shared {
                engine,
                store,
                tokens,
                crops,
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
    pub fn model(&self) -> &ModelDescriptor {
        self.shared.engine.model()
    }

    /// Number of face tokens held now.
    pub fn token_count(&self) -> usize {
        self.shared.tokens.len()
    }

    /// Number of crop files now.
    pub fn crop_count(&self) -> usize {
        self.shared.crops.count()
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

    /// `POST /detect`: every face of the image, each with a new token and a crop.
    pub(crate) async fn detect(&self, image: Bytes) -> Result<Vec<DetectedFace>, ApiError> {
        let shared = Arc::clone(&self.shared);
        self.infer(move || {
            let (image, faces) = shared.analyze(&image)?;
            shared.register(&image, faces)
        })
        .await
    }

    /// `/addface`: stores the token's embedding under a name in a face set.
    pub(crate) async fn add_face(&self, input: AddFaceInput) -> Result<AddFaceInput, ApiError> {
        let embedding = self.embedding_of(&input.set, &input.token).await?;
        let record = FaceRecord::new(
            input.token.clone(),
            input.name.clone(),
            embedding.as_slice().to_vec(),
            self.model().id.clone(),
        );
        let set = input.set.clone();
        self.with_store(move |store| store.add(&set, record))
            .await?;
        Ok(input)
    }

    /// `/removeface`: deletes a face from a face set.
    pub(crate) async fn remove_face(&self, input: RemoveFaceInput) -> Result<FaceRecord, ApiError> {
        self.with_store(move |store| store.remove(&input.set, &input.token))
            .await
    }

    /// `/search`: faces of the set nearer than the threshold, nearest first.
    pub(crate) async fn search(&self, input: SearchInput) -> Result<SearchOutcome, ApiError> {
        let (token, embedding) = self.resolve(&input.set, input.query).await?;
        let SearchInput {
            threshold,
            top_k,
            set,
            ..
        } = input;
        let matches = self
            .with_store(move |store| store.search(&set, embedding.as_slice(), threshold, top_k))
            .await?;
        Ok(SearchOutcome { token, matches })
    }

    /// `/compare`: the distance between two faces.
    pub(crate) async fn compare(&self, input: CompareInput) -> Result<Comparison, ApiError> {
        let (token_a, a) = self.resolve(&input.set, input.a).await?;
        let (token_b, b) = self.resolve(&input.set, input.b).await?;
        Ok(Comparison {
            token_a,
            token_b,
            distance: a.distance(&b),
            threshold: self.model().threshold,
        })
    }

    /// `GET /facesets`.
    pub(crate) async fn face_sets(&self) -> Result<Vec<FaceSetInfo>, ApiError> {
        self.with_store(|store| store.sets()).await
    }

    /// `GET /faceset`.
    pub(crate) async fn face_set_page(
        &self,
        input: FaceSetPageInput,
    ) -> Result<FaceSetPage, ApiError> {
        self.with_store(move |store| {
            Ok(FaceSetPage {
                total: store.len(&input.set)?,
                faces: store.faces(&input.set, input.offset, input.limit)?,
            })
        })
        .await
    }

    /// `GET /crops/{face_name}`.
    pub(crate) async fn crop(&self, name: String) -> Result<Vec<u8>, ApiError> {
        let shared = Arc::clone(&self.shared);
        actix_web::web::block(move || shared.crops.read(&name))
            .await
            .map_err(|e| ApiError::Internal(format!("reading a crop: {e}")))?
    }

    /// `GET /ready`: the models are loaded (they are, or the service would not exist) and the
    /// store answers.
    pub(crate) async fn readiness(&self) -> Result<Readiness, ApiError> {
        let face_sets = self.with_store(|store| store.sets()).await?.len();
        Ok(Readiness {
            model: self.model().clone(),
            face_sets,
            tokens: self.shared.tokens.len(),
        })
    }

    /// `GET /metrics`.
    pub(crate) fn metrics_text(&self) -> String {
        let s = &self.shared;
        let face_sets = s
            .store
            .sets()
            .map(|sets| sets.into_iter().map(|i| (i.name, i.count)).collect())
            .unwrap_or_default();
        s.metrics.render(&Gauges {
            face_sets,
            tokens: s.tokens.len(),
            max_tokens: s.tokens.config().max_entries,
            inference_in_flight: s.pool.in_flight(),
            inference_capacity: s.pool.capacity(),
            inference_threads: s.pool.threads(),
        })
    }

    /// Purges expired tokens and deletes their crops, at most once a minute (called on every
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
        actix_web::rt::task::spawn_blocking(move || {
            let evicted = shared.tokens.purge_expired(Instant::now());
            shared.forget(&evicted);
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
        op: impl FnOnce(&SledStore) -> facerec_store::Result<T> + Send + 'static,
    ) -> Result<T, ApiError> {
        let shared = Arc::clone(&self.shared);
        actix_web::web::block(move || shared.metrics.time(Stage::Store, || op(&shared.store)))
            .await
            .map_err(|e| ApiError::Internal(format!("face store task failed: {e}")))?
            .map_err(ApiError::from)
    }

    /// The embedding of a token: from the token cache, else from face set `set`.
    async fn embedding_of(&self, set: &str, token: &str) -> Result<Arc<Embedding>, ApiError> {
        if let Some(embedding) = self.shared.tokens.get(token) {
            return Ok(embedding);
        }
        let (set_name, token_name) = (set.to_owned(), token.to_owned());
        let record = self
            .with_store(move |store| store.get(&set_name, &token_name))
            .await?;
        record
            .map(|r| Arc::new(Embedding::new(r.embedding)))
            .ok_or_else(|| ApiError::UnknownToken {
                token: token.to_owned(),
                set: set.to_owned(),
            })
    }

    /// The token and embedding of a face given by token, or by image (its largest face, which
    /// gets a new token and crop).
    async fn resolve(
        &self,
        set: &str,
        source: FaceSource,
    ) -> Result<(String, Arc<Embedding>), ApiError> {
        match source {
            FaceSource::Token(token) => {
                let embedding = self.embedding_of(set, &token).await?;
                Ok((token, embedding))
            }
            FaceSource::Image { bytes, field } => {
                let shared = Arc::clone(&self.shared);
                self.infer(move || {
                    let (image, faces) = shared.analyze(&bytes)?;
                    let largest =
                        facerec::largest_face(&faces).ok_or(ApiError::NoFace { field })?;
                    let face = faces
                        .into_iter()
                        .nth(largest)
                        .ok_or(ApiError::NoFace { field })?;
                    let embedding = Arc::new(face.embedding.clone());
                    let detected = shared.register(&image, vec![face])?;
                    let token = detected
                        .into_iter()
                        .next()
                        .map(|d| d.token)
                        .ok_or(ApiError::NoFace { field })?;
                    Ok((token, embedding))
                })
                .await
            }
        }
    }
}

impl Shared {
    /// Decodes and analyses an image (on an inference thread).
    fn analyze(&self, bytes: &[u8]) -> Result<(DynamicImage, Vec<Face>), ApiError> {
        let limits: &DecodeLimits = &self.config.limits.decode;
        let image = self
            .metrics
            .time(Stage::Decode, || facerec::decode_image(bytes, limits))?;
        let faces = self
            .metrics
            .time(Stage::DetectEmbed, || self.engine.analyze(&image))?;
        self.metrics.add_faces_detected(faces.len());
        tracing::debug!(
            width = image.width(),
            height = image.height(),
            faces = faces.len(),
            "analysed image"
        );
        Ok((image, faces))
    }

    /// Gives each face a new token and a crop, and puts the tokens in the cache; deletes the
    /// crops of the tokens this evicts. Crops are written before their tokens go in, so an
    /// evicted token's crop always exists to be deleted.
    fn register(
        &self,
        image: &DynamicImage,
        faces: Vec<Face>,
    ) -> Result<Vec<DetectedFace>, ApiError> {
        let mut detected = Vec::with_capacity(faces.len());
        let mut embeddings = Vec::with_capacity(faces.len());
        for face in faces {
            let token = self.new_token();
            let crop = self.crops.save(&token, image, &face.bbox)?;
            let (w, h) = (image.width() as f32, image.height() as f32);
            let b = face.bbox;
            detected.push(DetectedFace {
                token: token.clone(),
                crop,
                bbox: BoundingBox::new(
                    b.x1.clamp(0.0, w),
                    b.y1.clamp(0.0, h),
                    b.x2.clamp(0.0, w),
                    b.y2.clamp(0.0, h),
                ),
                score: face.score,
                landmarks: face.landmarks,
            });
            embeddings.push((token, Arc::new(face.embedding)));
        }
        for (token, embedding) in embeddings {
            let evicted = self.tokens.insert(token, embedding);
            self.forget(&evicted);
        }
        Ok(detected)
    }

    /// Deletes the crops of evicted tokens.
    fn forget(&self, evicted: &[String]) {
        if !evicted.is_empty() {
            self.metrics.add_tokens_evicted(evicted.len());
            self.crops.remove(evicted);
        }
    }

    /// 24 random letters and digits, not in use.
    fn new_token(&self) -> String {
        const ALPHANUMERIC: [char; 62] = [
            '0', '1', '2', '3', '4', '5', '6', '7', '8', '9', 'A', 'B', 'C', 'D', 'E', 'F', 'G',
            'H', 'I', 'J', 'K', 'L', 'M', 'N', 'O', 'P', 'Q', 'R', 'S', 'T', 'U', 'V', 'W', 'X',
            'Y', 'Z', 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o',
            'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z',
        ];
        loop {
            let token = nanoid::nanoid!(TOKEN_LEN, &ALPHANUMERIC);
            // 62^24 tokens make a collision all but impossible; the check makes it impossible.
            if !self.tokens.contains(&token) {
                return token;
            }
        }
    }
}
