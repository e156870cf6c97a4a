//! Per-request context: request id, source address and user agent, computed once by a
//! middleware and read by handlers and the audit trail.
//!
//! The source address is the socket peer. `X-Forwarded-For` is believed only when the peer
//! is a configured trusted proxy, and then only back to the first untrusted hop, so a client
//! cannot choose the address recorded against it.

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

use crate::state::AppState;

/// What every handler knows about the request it serves.
#[derive(Debug, Clone)]
pub struct RequestMeta {
    pub request_id: String,
    pub source_ip: IpAddr,
    pub user_agent: String,
}

/// The client address: the peer, or (through trusted proxies only) the nearest untrusted
/// address in `X-Forwarded-For`.
pub fn client_ip(peer: IpAddr, forwarded_for: Option<&str>, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let Some(header) = forwarded_for else { return peer };
    // Walk from the nearest hop backwards: the first address not of a trusted proxy is the client.
    let hops: Vec<IpAddr> = header.split(',').filter_map(|hop| hop.trim().parse().ok()).collect();
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        client = hop;
        if !is_trusted(&hop) {
            break;
        }
    }
    client
}

/// Middleware: assigns the request id (echoed in `X-Request-Id`) and resolves the source.
pub async fn request_context(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
        .unwrap_or(IpAddr::from([127, 0, 0, 1]));
    let headers = request.headers();
    let forwarded = headers.get("x-forwarded-for").and_then(|v| v.to_str().ok());
    let source_ip = client_ip(peer, forwarded, &state.config.trusted_proxies);
    let user_agent = headers
        .get(axum::http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|ua| ua.chars().take(256).collect())
        .unwrap_or_default();
    let request_id = uuid::Uuid::new_v4().simple().to_string();
    request.extensions_mut().insert(RequestMeta { request_id: request_id.clone(), source_ip, user_agent });
    let mut response = next.run(request).await;
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn untrusted_peer_cannot_spoof() {
        assert_eq!(client_ip(ip("10.0.0.9"), Some("1.2.3.4"), &[]), ip("10.0.0.9"));
        let trusted: Vec<IpNet> = vec!["192.168.0.0/24".parse().unwrap()];
        assert_eq!(client_ip(ip("10.0.0.9"), Some("1.2.3.4"), &trusted), ip("10.0.0.9"));
    }

    #[test]
    fn trusted_proxy_chain_yields_first_untrusted_hop() {
        let trusted: Vec<IpNet> = vec!["192.168.0.0/24".parse().unwrap()];
        assert_eq!(client_ip(ip("192.168.0.1"), Some("1.2.3.4"), &trusted), ip("1.2.3.4"));
        // The client put a fake address first; the proxy appended the real one.
        assert_eq!(client_ip(ip("192.168.0.1"), Some("6.6.6.6, 1.2.3.4, 192.168.0.7"), &trusted), ip("1.2.3.4"));
        assert_eq!(client_ip(ip("192.168.0.1"), None, &trusted), ip("192.168.0.1"));
    }
}
