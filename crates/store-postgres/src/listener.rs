//! Following the other servers: a `LISTEN` connection of its own that wakes the follower on
//! every notification, a timer that wakes it anyway, and the follower task that catches up
//! (and now and then prunes the change log).

use std::sync::Arc;
use std::time::{Duration, Instant};

use deadpool_postgres::Pool;
use facerec_store::{Error, Result};
use futures_util::StreamExt;
use tokio_postgres::AsyncMessage;

use crate::backend::Backend;
use crate::faces::{Follower, prune};
use crate::schema::CHANNEL;

/// How often a server prunes the change log.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Starts the listener and the follower on the backend's runtime.
pub(crate) fn start(backend: &Backend, follower: Arc<Follower>) -> Result<()> {
    let handle = backend.handle().ok_or_else(|| Error::Unavailable {
        context: "starting to follow the change log".to_owned(),
        source: "the PostgreSQL runtime has stopped".into(),
    })?;
    let config = &backend.config;
    handle.spawn(follow(
        Arc::clone(&follower),
        backend.pool.clone(),
        config.change_retention,
    ));
    handle.spawn(listen(
        backend.pg.clone(),
        follower,
        config.poll_every,
        backend.place.clone(),
    ));
    Ok(())
}

/// Catches up whenever woken; after a failure, retries every 250 ms until it works (one
/// warning when it starts failing, one line when it works again).
async fn follow(follower: Arc<Follower>, pool: Pool, retention: Duration) {
    let mut failing_since: Option<Instant> = None;
    let mut last_prune = Instant::now();
    loop {
        follower.wake.notified().await;
        match follower.catch_up(&pool).await {
            Ok(()) => {
                if let Some(since) = failing_since.take() {
                    tracing::info!(
                        after_ms = since.elapsed().as_millis() as u64,
                        "following the change log again"
                    );
                }
            }
            Err(e) => {
                if failing_since.is_none() {
                    let e = e.into_store("following the change log".to_owned());
                    tracing::warn!("{e}; retrying");
                    failing_since = Some(Instant::now());
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
                follower.wake.notify_one();
                continue;
            }
        }
        if last_prune.elapsed() >= PRUNE_EVERY {
            last_prune = Instant::now();
            match prune(&pool, retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(changes = n, "pruned the change log"),
                Err(e) => tracing::warn!("{}", e.into_store("pruning the change log".to_owned())),
            }
        }
    }
}

/// Holds a `LISTEN` connection and wakes the follower on each notification, after each
/// (re)connection, and every `poll_every` in any case.
async fn listen(
    pg: tokio_postgres::Config,
    follower: Arc<Follower>,
    poll_every: Duration,
    place: String,
) {
    let mut backoff = Duration::from_millis(100);
    let mut down_since: Option<Instant> = None;
    loop {
        let connected = match pg.connect(tokio_postgres::NoTls).await {
            Ok((client, mut connection)) => {
                let (tx, mut notified) = tokio::sync::mpsc::unbounded_channel();
                let own = follower.instance.clone();
                let driver = tokio::spawn(async move {
                    let mut messages =
                        futures_util::stream::poll_fn(move |cx| connection.poll_message(cx));
                    while let Some(message) = messages.next().await {
                        match message {
                            // this store's own writes are applied already
                            Ok(AsyncMessage::Notification(n)) if n.payload() == own => {}
                            Ok(AsyncMessage::Notification(_)) => {
                                if tx.send(()).is_err() {
                                    break;
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                tracing::debug!("the LISTEN connection ended: {e}");
                                break;
                            }
                        }
                    }
                });
                let listened = match client.batch_execute(&format!("LISTEN {CHANNEL}")).await {
                    Ok(()) => {
                        if let Some(since) = down_since.take() {
                            tracing::info!(
                                %place,
                                after_ms = since.elapsed().as_millis() as u64,
                                "listening for changes again"
                            );
                        }
                        backoff = Duration::from_millis(100);
                        // Whatever happened while not listening is read now.
                        follower.wake.notify_one();
                        let mut tick = tokio::time::interval(poll_every);
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                        loop {
                            tokio::select! {
                                got = notified.recv() => match got {
                                    Some(()) => follower.wake.notify_one(),
                                    None => break,
                                },
                                _ = tick.tick() => follower.wake.notify_one(),
                            }
                        }
                        true
                    }
                    Err(e) => {
                        tracing::debug!("LISTEN failed: {e}");
                        false
                    }
                };
                driver.abort();
                listened
            }
            Err(e) => {
                if down_since.is_none() {
                    tracing::warn!(%place, "cannot listen for changes: {e}; retrying");
                }
                false
            }
        };
        if connected {
            tracing::warn!(%place, "lost the LISTEN connection; reconnecting");
        }
        down_since.get_or_insert_with(Instant::now);
        // Still poll while disconnected: the pool may reach the database before LISTEN does.
        follower.wake.notify_one();
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}
