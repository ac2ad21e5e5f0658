//! The bounded inference pool: CPU work (decode, detect, embed) runs on its own threads, never
//! on the async HTTP workers, and a full queue is answered at once instead of growing.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use tokio::sync::{Semaphore, oneshot};

use crate::ApiError;

/// A fixed set of threads plus a bounded number of waiting jobs.
///
/// Admission is a semaphore of `threads + queue` permits taken without waiting: when none is
/// left the job is refused with [`ApiError::Overloaded`] (503 + `Retry-After`). An admitted
/// job holds its permit until it has finished, even if the client went away.
pub(crate) struct InferencePool {
    pool: rayon::ThreadPool,
    admission: Arc<Semaphore>,
    capacity: usize,
}

impl std::fmt::Debug for InferencePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferencePool")
            .field("threads", &self.pool.current_num_threads())
            .field("capacity", &self.capacity)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl InferencePool {
    /// `threads` inference threads (at least 1) and room for `queue` waiting jobs.
    pub(crate) fn new(threads: usize, queue: usize) -> Result<Self, rayon::ThreadPoolBuildError> {
        let threads = threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("facerec-inference-{i}"))
            .build()?;
        let capacity = threads + queue;
        Ok(Self {
            pool,
            admission: Arc::new(Semaphore::new(capacity)),
            capacity,
        })
    }

    /// Jobs running or waiting now.
    pub(crate) fn in_flight(&self) -> usize {
        self.capacity - self.admission.available_permits()
    }

    /// Running plus waiting jobs allowed.
    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }

    /// Threads running jobs.
    pub(crate) fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// Runs `job` on the pool, or refuses it at once when the pool and its queue are full.
    pub(crate) async fn run<T, F>(&self, job: F) -> Result<T, ApiError>
    where
        T: Send + 'static,
        F: FnOnce() -> Result<T, ApiError> + Send + 'static,
    {
        let permit = Arc::clone(&self.admission)
            .try_acquire_owned()
            .map_err(|_| ApiError::Overloaded {
                capacity: self.capacity,
            })?;
        let (tx, rx) = oneshot::channel();
        self.pool.spawn(move || {
            // A panicking model must cost one request, not the process (rayon aborts on an
            // uncaught panic in a spawned job).
            let result = std::panic::catch_unwind(AssertUnwindSafe(job)).unwrap_or_else(|_| {
                tracing::error!("inference job panicked");
                Err(ApiError::Internal("inference job panicked".to_owned()))
            });
            drop(permit);
            // The receiver is gone when the client disconnected; nothing to do then.
            let _ = tx.send(result);
        });
        rx.await
            .map_err(|_| ApiError::Internal("inference job was dropped".to_owned()))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_pool_refuses_at_once_and_recovers() {
        let pool = Arc::new(InferencePool::new(1, 0).unwrap());
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let local = tokio::task::LocalSet::new();
        local.block_on(&rt, async {
            let (started_tx, started_rx) = std::sync::mpsc::channel();
            let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
            let busy = tokio::task::spawn_local({
                let pool = Arc::clone(&pool);
                async move {
                    pool.run(move || {
                        started_tx.send(()).unwrap();
                        release_rx.recv().unwrap();
                        Ok(1)
                    })
                    .await
                }
            });
            while started_rx.try_recv().is_err() {
                tokio::task::yield_now().await;
            }
            assert_eq!(pool.in_flight(), 1);
            let refused = pool.run(|| Ok(2)).await;
            assert!(matches!(refused, Err(ApiError::Overloaded { capacity: 1 })));
            release_tx.send(()).unwrap();
            assert_eq!(busy.await.unwrap().unwrap(), 1);
            assert_eq!(pool.run(|| Ok(3)).await.unwrap(), 3);
            assert_eq!(pool.in_flight(), 0);
        });
    }

    #[test]
    fn a_panicking_job_is_an_internal_error() {
        let pool = InferencePool::new(1, 1).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let result: Result<(), _> = rt.block_on(pool.run(|| panic!("model exploded")));
        assert!(matches!(result, Err(ApiError::Internal(_))));
        assert_eq!(pool.in_flight(), 0);
    }
}
