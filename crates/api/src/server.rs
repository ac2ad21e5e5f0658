//! Running the app: the HTTP server the binary awaits, and the same server on a background
//! thread for tests and embedding.

use std::io;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use actix_web::HttpServer;
use actix_web::dev::{Server, ServerHandle};

use crate::{FaceService, app};

/// How the HTTP server runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerOptions {
    /// HTTP worker threads (the number of CPUs).
    pub workers: usize,
    /// Time in-flight requests get to finish on shutdown (30 s).
    pub shutdown_timeout: Duration,
    /// After answering early (e.g. 413) a request whose body is still coming, how long the
    /// rest is read and discarded so that the client can read the answer (5 s).
    pub linger: Duration,
    /// Most open connections per worker (1024): each may hold an upload of up to the body
    /// limit while it is read.
    pub max_connections: usize,
    /// Whether SIGINT/SIGTERM stop the server gracefully (the binary: yes; tests: no).
    pub handle_signals: bool,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            workers: crate::config::cpus(),
            shutdown_timeout: Duration::from_secs(30),
            linger: Duration::from_secs(5),
            max_connections: 1024,
            handle_signals: true,
        }
    }
}

/// The HTTP server for `service` on `listener`. Await it inside an actix system (e.g.
/// `actix_web::rt::System::new().block_on(..)`); it returns after a graceful stop (SIGINT or
/// SIGTERM when `options.handle_signals`), once in-flight requests are done. Flush the store
/// afterwards with [`FaceService::flush`].
pub fn server(
    service: FaceService,
    listener: TcpListener,
    options: &ServerOptions,
) -> io::Result<Server> {
    let mut http = HttpServer::new(move || app(service.clone()))
        .workers(options.workers.max(1))
        .shutdown_timeout(options.shutdown_timeout.as_secs())
        .client_disconnect_timeout(options.linger)
        .max_connections(options.max_connections.max(1))
        .listen(listener)?;
    if !options.handle_signals {
        http = http.disable_signals();
    }
    Ok(http.run())
}

/// A server running on its own thread (see [`spawn`]).
#[derive(Debug)]
pub struct RunningServer {
    addr: SocketAddr,
    handle: ServerHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
    service: FaceService,
}

/// Binds `addr` (e.g. `127.0.0.1:0`) and runs the server on a new thread with its own actix
/// system; returns once it is listening. The same code path as the binary, minus signals.
pub fn spawn(
    service: FaceService,
    addr: impl ToSocketAddrs,
    options: ServerOptions,
) -> io::Result<RunningServer> {
    let listener = TcpListener::bind(addr)?;
    let local = listener.local_addr()?;
    let (tx, rx) = std::sync::mpsc::channel();
    let thread_service = service.clone();
    let thread = std::thread::Builder::new()
        .name(format!("facerec-http-{}", local.port()))
        .spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let options = ServerOptions {
                    handle_signals: false,
                    ..options
                };
                let server = match server(thread_service, listener, &options) {
                    Ok(server) => server,
                    Err(e) => {
                        let _ = tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                        return Err(e);
                    }
                };
                let _ = tx.send(Ok(server.handle()));
                server.await
            })
        })?;
    let handle = rx
        .recv()
        .map_err(|_| io::Error::other("the server thread ended before listening"))??;
    tracing::info!(addr = %local, "server listening");
    Ok(RunningServer {
        addr: local,
        handle,
        thread: Some(thread),
        service,
    })
}

impl RunningServer {
    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// The service it serves.
    pub fn service(&self) -> &FaceService {
        &self.service
    }

    /// Stops gracefully (in-flight requests finish), waits until no worker holds the service
    /// any more (at most 10 s), flushes the store and gives the service back: dropping it
    /// then closes the store, so the data dir can be opened again.
    pub fn stop(mut self) -> io::Result<FaceService> {
        self.shutdown(true)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.service.handles() > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        self.service
            .flush()
            .map_err(|e| io::Error::other(e.to_string()))?;
        Ok(self.service.clone())
    }

    fn shutdown(&mut self, graceful: bool) -> io::Result<()> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        // The stop command is sent when `stop` is called; its future only waits for it.
        drop(self.handle.stop(graceful));
        thread
            .join()
            .map_err(|_| io::Error::other("the server thread panicked"))?
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown(false) {
            tracing::warn!("stopping the server: {e}");
        }
    }
}
