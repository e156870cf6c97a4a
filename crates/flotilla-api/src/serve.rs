//! The HTTP/1.1 server loop: accepts connections and serves the router on each with hyper,
//! configured for the registry's large uploads, and drains in-flight requests on shutdown.
//!
//! `axum::serve` would do the same with hyper's defaults; this loop exists for two settings it
//! cannot take:
//! - [`READ_BUFFER_MAX`]: hyper reads a request body into a buffer that grows while the socket
//!   fills it, up to ~400 KiB by default, and hands each read to the handler as a chunk of
//!   its own. For a 256 MiB blob push that is at least ~650 reads and hand-overs, each of
//!   which may park and wake a worker on a machine whose cores also hash the blob.
//!   Measured with this project's benchmark (256 MiB pushes, client and server on the same
//!   2 cores, two runs alternated with the default): 0.82 -> 0.90 GB/s median. hyper also
//!   refuses a request head larger than this buffer; a head that large is an attack anyway.
//! - a timer, so that a connection that does not finish sending a request's head within
//!   [`HEAD_TIMEOUT`] is closed, rather than held open for ever (idle keep-alive connections
//!   included: clients open a new one).

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tower::ServiceExt as _;

/// The most bytes hyper reads from a connection at once.
pub const READ_BUFFER_MAX: usize = 4 * 1024 * 1024;
/// How long a client may take to send a request's head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(30);

/// Serves `app` on `listener` until `shutdown` resolves, then drains in-flight requests: no
/// new connection is accepted, each open one ends after the request it is serving.
///
/// Every request carries the client's address as a [`ConnectInfo`]`<SocketAddr>` extension.
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    serve_with(listener, app, shutdown, HEAD_TIMEOUT).await
}

/// [`serve`], with a client given `head_timeout` to send each request's head.
pub async fn serve_with(
    listener: tokio::net::TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    head_timeout: Duration,
) -> std::io::Result<()> {
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(head_timeout).max_buf_size(READ_BUFFER_MAX);
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    pause_after(&error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let service = app.clone().map_request(move |mut request: axum::http::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(remote));
            request
        });
        let connection =
            graceful.watch(builder.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service)));
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%remote, %error, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// After a failed `accept`: nothing for an error of that one connection (it was reset before
/// it was taken), else a second, so that running out of file descriptors does not spin.
async fn pause_after(error: &std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(error.kind(), ConnectionAborted | ConnectionRefused | ConnectionReset) {
        return;
    }
    tracing::error!(%error, "cannot accept a connection; trying again in a second");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
