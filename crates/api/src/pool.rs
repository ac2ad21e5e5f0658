//! The bounded inference pool: CPU work (decode, detect, embed) runs on its own threads, never
//! on the async HTTP workers, and a full queue is answered at once instead of growing.
//!
//! Requests start in arrival order: jobs wait in one FIFO queue served by plain threads, and
//! a running job is never held up behind a later one. Inside a job, the parallel sections (a
//! photo's pyramid levels, its faces' embeddings) use every core only while no other job is
//! running or waiting: then they run on rayon's global pool, and the job's thread just waits
//! for them. When other jobs are there, the cores are theirs: the job runs its sections one
//! after the other on a one-thread rayon pool of its own thread, which nothing else can
//! steal from or into. (Jobs used to be rayon tasks themselves: a worker waiting inside a
//! parallel section would steal a whole later request and finish it first, chaining
//! latencies: p99 at 30 s for a 1920x1280 photo at 16 clients.)

use std::panic::AssertUnwindSafe;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};

use tokio::sync::{Semaphore, oneshot};

use crate::ApiError;

/// A job as the threads take it.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// A fixed set of threads serving one FIFO queue, plus a bounded number of waiting jobs.
///
/// Admission is a semaphore of `threads + queue` permits taken without waiting: when none is
/// left the job is refused with [`ApiError::Overloaded`] (503 + `Retry-After`). An admitted
/// job holds its permit until it has finished, even if the client went away.
pub(crate) struct InferencePool {
    /// Jobs in arrival order; the threads end when it is dropped.
    queue: Sender<Job>,
    threads: usize,
    admission: Arc<Semaphore>,
    capacity: usize,
}

impl std::fmt::Debug for InferencePool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InferencePool")
            .field("threads", &self.threads)
            .field("capacity", &self.capacity)
            .field("in_flight", &self.in_flight())
            .finish()
    }
}

impl InferencePool {
    /// `threads` inference threads (at least 1) and room for `queue` waiting jobs.
    pub(crate) fn new(threads: usize, queue: usize) -> std::io::Result<Self> {
        let threads = threads.max(1);
        let (sender, receiver) = channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        let capacity = threads + queue;
        let admission = Arc::new(Semaphore::new(capacity));
        for i in 0..threads {
            let receiver = Arc::clone(&receiver);
            let admission = Arc::clone(&admission);
            let alone = move || capacity - admission.available_permits() <= 1;
            let own = rayon::ThreadPoolBuilder::new()
                .num_threads(1)
                .thread_name(move |_| format!("facerec-inference-{i}-serial"))
                .build()
                .map_err(std::io::Error::other)?;
            std::thread::Builder::new()
                .name(format!("facerec-inference-{i}"))
                .spawn(move || serve(&receiver, &own, alone))?;
        }
        Ok(Self {
            queue: sender,
            threads,
            admission,
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
        self.threads
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
        let job: Job = Box::new(move || {
            // A panicking model must cost one request, not a thread of the pool.
            let result = std::panic::catch_unwind(AssertUnwindSafe(job)).unwrap_or_else(|_| {
                tracing::error!("inference job panicked");
                Err(ApiError::Internal("inference job panicked".to_owned()))
            });
            drop(permit);
            // The receiver is gone when the client disconnected; nothing to do then.
            let _ = tx.send(result);
        });
        self.queue
            .send(job)
            .map_err(|_| ApiError::Internal("the inference threads have stopped".to_owned()))?;
        rx.await
            .map_err(|_| ApiError::Internal("inference job was dropped".to_owned()))?
    }
}

/// One inference thread: the oldest waiting job, run to its end, then the next. A job that
/// is `alone` (no other running or waiting) runs its parallel sections on every core; else
/// on `own`, one thread, one section after the other.
fn serve(queue: &Mutex<Receiver<Job>>, own: &rayon::ThreadPool, alone: impl Fn() -> bool) {
    loop {
        // The lock is held only to take a job, not while it runs.
        let next = match queue.lock() {
            Ok(receiver) => receiver.recv(),
            Err(poisoned) => poisoned.into_inner().recv(),
        };
        match next {
            Ok(job) if alone() => job(),
            Ok(job) => own.install(job),
            // The pool was dropped: no job can come any more.
            Err(_) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::future::Future;
    use std::sync::mpsc;

    use tokio::task::{JoinHandle, spawn_local, yield_now};

    /// Runs `test` on a current-thread runtime whose tasks need not be `Send`.
    fn local<F: Future>(test: F) -> F::Output {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        tokio::task::LocalSet::new().block_on(&rt, test)
    }

    /// Puts a job on `pool` that runs until the returned sender is used; returns once it runs.
    async fn hold(
        pool: &Arc<InferencePool>,
    ) -> (JoinHandle<Result<(), ApiError>>, mpsc::Sender<()>) {
        let (started_tx, started_rx) = mpsc::channel();
        let (release_tx, release_rx) = mpsc::channel::<()>();
        let pool = Arc::clone(pool);
        let job = spawn_local(async move {
            pool.run(move || {
                started_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                Ok(())
            })
            .await
        });
        while started_rx.try_recv().is_err() {
            yield_now().await;
        }
        (job, release_tx)
    }

    #[test]
    fn a_full_pool_refuses_at_once_and_recovers() {
        let pool = Arc::new(InferencePool::new(1, 0).unwrap());
        local(async {
            let (busy, release) = hold(&pool).await;
            assert_eq!(pool.in_flight(), 1);
            let refused = pool.run(|| Ok(2)).await;
            assert!(matches!(refused, Err(ApiError::Overloaded { capacity: 1 })));
            release.send(()).unwrap();
            busy.await.unwrap().unwrap();
            assert_eq!(pool.run(|| Ok(3)).await.unwrap(), 3);
            assert_eq!(pool.in_flight(), 0);
        });
    }

    #[test]
    fn jobs_start_in_arrival_order() {
        let pool = Arc::new(InferencePool::new(1, 8).unwrap());
        let order = Arc::new(Mutex::new(Vec::new()));
        local(async {
            let (first, release) = hold(&pool).await;
            let mut waiting = Vec::new();
            for i in 0..6 {
                let queued = Arc::clone(&pool);
                let order = Arc::clone(&order);
                waiting.push(spawn_local(async move {
                    queued
                        .run(move || {
                            order.lock().unwrap().push(i);
                            Ok(())
                        })
                        .await
                }));
                // each is queued before the next is made
                while pool.in_flight() < i + 2 {
                    yield_now().await;
                }
            }
            release.send(()).unwrap();
            first.await.unwrap().unwrap();
            for w in waiting {
                w.await.unwrap().unwrap();
            }
        });
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_job_with_company_keeps_to_its_own_thread() {
        let pool = Arc::new(InferencePool::new(2, 0).unwrap());
        let thread = || std::thread::current().name().unwrap_or_default().to_owned();
        local(async {
            // alone: on the queue's thread itself (its sections may use every core)
            let alone = pool.run(move || Ok(thread())).await.unwrap();
            assert!(alone.starts_with("facerec-inference-"), "{alone}");
            assert!(!alone.ends_with("-serial"), "{alone}");
            // with company: on the one-thread pool of the thread that took it
            let (busy, release) = hold(&pool).await;
            let crowded = pool.run(move || Ok(thread())).await.unwrap();
            assert!(crowded.ends_with("-serial"), "{crowded}");
            release.send(()).unwrap();
            busy.await.unwrap().unwrap();
        });
    }

    #[test]
    fn a_panicking_job_is_an_internal_error() {
        let pool = InferencePool::new(1, 1).unwrap();
        local(async {
            let result: Result<(), _> = pool.run(|| panic!("model exploded")).await;
            assert!(matches!(result, Err(ApiError::Internal(_))));
            assert_eq!(pool.in_flight(), 0);
            // the thread that ran it serves the next job
            assert_eq!(pool.run(|| Ok(7)).await.unwrap(), 7);
        });
    }
}
