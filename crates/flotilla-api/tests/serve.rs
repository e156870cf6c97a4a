//! The server loop ([`flotilla_api::serve`]) on loopback: the client's address reaches the
//! handlers, shutdown lets the request in flight finish and accepts no more, and a client that
//! does not finish its request's head is disconnected.
#![allow(clippy::unwrap_used)] // tests: a panic is a failed test

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};

/// Sends a `GET` of `path` on `stream` (closing the connection after it) and returns the
/// whole answer as text.
async fn get_on(stream: &mut TcpStream, path: &str) -> String {
    let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_string(&mut answer)).await.unwrap().unwrap();
    answer
}

#[tokio::test]
async fn every_request_carries_the_client_address() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new()
        .route("/who", get(|ConnectInfo(client): ConnectInfo<SocketAddr>| async move { client.to_string() }));
    let server = tokio::spawn(flotilla_api::serve(listener, app, std::future::pending()));
    for _ in 0..2 {
        let mut stream = TcpStream::connect(address).await.unwrap();
        let client = stream.local_addr().unwrap();
        let answer = get_on(&mut stream, "/who").await;
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer.ends_with(&format!("\r\n\r\n{client}")),
            "the handler saw another address than {client}: {answer}"
        );
    }
    server.abort();
}

#[tokio::test]
async fn shutdown_finishes_the_request_in_flight_and_accepts_no_more() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (entered, release) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let handler = {
        let (entered, release) = (entered.clone(), release.clone());
        move || async move {
            entered.notify_one();
            release.notified().await;
            "finished"
        }
    };
    let app = Router::new().route("/slow", get(handler));
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(flotilla_api::serve(listener, app, async move {
        let _ = stopped.await;
    }));

    let mut stream = TcpStream::connect(address).await.unwrap();
    let in_flight = tokio::spawn(async move { get_on(&mut stream, "/slow").await });
    tokio::time::timeout(Duration::from_secs(10), entered.notified()).await.unwrap();
    stop.send(()).unwrap();

    // The listener closes; the server waits for the request it is serving.
    let refused = async {
        while TcpStream::connect(address).await.is_ok() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(10), refused).await.expect("the listener still accepts after shutdown");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!server.is_finished(), "the server stopped before the request in flight was answered");

    release.notify_one();
    let answer = in_flight.await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("finished"), "{answer}");
    tokio::time::timeout(Duration::from_secs(10), server).await.expect("the server did not stop").unwrap().unwrap();
}

#[tokio::test]
async fn a_client_that_does_not_finish_its_head_is_disconnected() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let app = Router::new().route("/", get(|| async { "ok" }));
    let head_timeout = Duration::from_millis(300);
    let server = tokio::spawn(flotilla_api::serve::serve_with(listener, app, std::future::pending(), head_timeout));

    let mut slow = TcpStream::connect(address).await.unwrap();
    slow.write_all(b"GET / HTTP/1.1\r\nhost: test\r\n").await.unwrap();
    let mut rest = Vec::new();
    // hyper answers 408 before it closes the connection, or closes it at once.
    let closed = tokio::time::timeout(Duration::from_secs(10), slow.read_to_end(&mut rest)).await;
    assert!(closed.is_ok(), "a connection that never finished its head was still open after 10 s");
    let text = String::from_utf8_lossy(&rest);
    assert!(rest.is_empty() || text.starts_with("HTTP/1.1 408"), "{text}");

    // A client that sends its head in time is served.
    let mut prompt = TcpStream::connect(address).await.unwrap();
    let answer = get_on(&mut prompt, "/").await;
    assert!(answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok"), "{answer}");
    server.abort();
}
