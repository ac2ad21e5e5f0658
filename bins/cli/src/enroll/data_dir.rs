//! `facerec enroll --data-dir`: batches enrolled with the library, no HTTP in between.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::web::Bytes;
use anyhow::{Result, anyhow};
use facerec::FaceEngine;
use facerec_api::{ApiConfig, ApiError, EnrollImage, FaceService, StartError};
use futures_util::StreamExt;

use super::{EnrollArgs, Outcome, Plan, Recorder, Upload, read_batch};

/// The face service on a data dir, with room in its inference queue for every photo of the
/// batches in flight.
pub(super) fn open_data_dir(
    data_dir: &Path,
    engine: FaceEngine,
    parallel: usize,
) -> Result<FaceService> {
    let mut config = ApiConfig::new(data_dir);
    config.queue = parallel * 16 * config.inference_threads.max(1);
    FaceService::open(Arc::new(engine), config).map_err(|e| {
        let locked = matches!(
            &e,
            StartError::Store {
                source: facerec_store::Error::Locked { .. },
                ..
            }
        );
        let e = anyhow::Error::new(e);
        if locked {
            e.context(format!(
                "the data dir {} is in use, most likely by a running facerec-server: enrol \
                 through it with --server URL instead of --data-dir",
                data_dir.display()
            ))
        } else {
            e.context(format!("opening the data dir {}", data_dir.display()))
        }
    })
}

/// Enrols the plan's batches with the library, `--parallel` at a time, on an actix system
/// (the service's store tasks need its runtime).
pub(super) fn enroll_in_data_dir(
    service: &FaceService,
    args: &EnrollArgs,
    plan: &Plan,
    recorder: &mut Recorder,
) -> Result<()> {
    let batches: Vec<&[Upload]> = plan.uploads.chunks(usize::from(args.batch)).collect();
    let stop = AtomicBool::new(false);
    actix_web::rt::System::new().block_on(async {
        let stop = &stop;
        let mut results =
            futures_util::stream::iter(batches.iter().enumerate())
                .take_while(|_| std::future::ready(!stop.load(Ordering::Relaxed)))
                .map(|(i, batch)| async move {
                    (i, enroll_locally(service, &args.face_set, batch).await)
                })
                .buffer_unordered(usize::from(args.parallel));
        let mut first_error = None;
        while let Some((i, result)) = results.next().await {
            let recorded = result.and_then(|outcomes| recorder.record(batches[i], outcomes));
            if let Err(e) = recorded {
                stop.store(true, Ordering::Relaxed);
                first_error.get_or_insert(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    })
}

async fn enroll_locally(
    service: &FaceService,
    set: &str,
    batch: &[Upload],
) -> Result<Vec<Outcome>> {
    let read = read_batch(batch);
    let mut outcomes: Vec<Option<Outcome>> =
        read.iter().map(|r| r.as_ref().err().cloned()).collect();
    let mut sent = Vec::new();
    let mut images = Vec::new();
    for (i, bytes) in read.into_iter().enumerate() {
        if let Ok(bytes) = bytes {
            sent.push(i);
            images.push(EnrollImage {
                name: batch[i].photo.name.clone(),
                file_name: batch[i].photo.file.clone(),
                bytes: Bytes::from(bytes),
            });
        }
    }
    if !images.is_empty() {
        let results = service
            .enroll(set.to_owned(), images)
            .await
            .map_err(|e: ApiError| anyhow!("enrolling a batch: {e}"))?;
        for r in results {
            let slot = *sent
                .get(r.index)
                .ok_or_else(|| anyhow!("a result for photo {} of {}", r.index, sent.len()))?;
            outcomes[slot] = Some(match r.outcome {
                Ok(face) => Outcome::Enrolled {
                    token: face.token.to_string(),
                    face_count: face.face_count,
                },
                Err(e) => Outcome::from_error(
                    e.code.code(),
                    e.code.name(),
                    &e.detail,
                    &batch[slot].photo.file,
                ),
            });
        }
    }
    outcomes
        .into_iter()
        .zip(batch)
        .map(|(o, u)| o.ok_or_else(|| anyhow!("no result for {}", u.photo.file)))
        .collect()
}
