//! The embedded runtime's DNS server: instances resolve service names
//! (`<component>.<application>.<environment>.<project>.<domain>`) to service addresses, as
//! CoreDNS does for a Kubernetes cluster. It answers on the gateway address of each
//! environment network (port 53, UDP), which is the name server in every instance's
//! `resolv.conf`, with search domains so that `web.store` finds the service of the same
//! environment.
//!
//! Names of the domain are answered from the service table (unknown ones with NXDOMAIN);
//! reverse lookups of private addresses are answered locally (RFC 6303); anything else is
//! forwarded to the host's own name servers, so instances resolve outside names as the host
//! does.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;

/// Seconds a resolver may cache an answer: short, addresses change with services.
const TTL: u32 = 5;

const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(3);

/// The names the server answers for.
#[derive(Debug, Default)]
pub struct Zone {
    /// Lower case, without the trailing dot.
    domain: String,
    records: RwLock<HashMap<String, Ipv4Addr>>,
}

impl Zone {
    pub fn new(domain: &str) -> Self {
        Self { domain: domain.trim_end_matches('.').to_ascii_lowercase(), records: RwLock::default() }
    }

    /// Replaces every record (names as [`crate::services::ServiceKey::dns_name`] gives them).
    pub fn set(&self, records: HashMap<String, Ipv4Addr>) {
        let records = records.into_iter().map(|(name, address)| (name.to_ascii_lowercase(), address)).collect();
        *self.records.write().unwrap_or_else(|poison| poison.into_inner()) = records;
    }

    fn lookup(&self, name: &str) -> Option<Ipv4Addr> {
        self.records.read().unwrap_or_else(|poison| poison.into_inner()).get(name).copied()
    }

    fn is_ours(&self, name: &str) -> bool {
        name == self.domain || name.ends_with(&format!(".{}", self.domain))
    }
}

/// What to do with one query.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Send this response.
    Local(Vec<u8>),
    /// Not ours: ask the host's name servers.
    Forward,
    /// Not a DNS query: ignore.
    Drop,
}

/// Reverse zones of private addresses (RFC 6303): never sent upstream.
fn is_private_reverse(name: &str) -> bool {
    let Some(reversed) = name.strip_suffix(".in-addr.arpa") else { return false };
    let octets: Vec<&str> = reversed.split('.').rev().collect();
    match octets.as_slice() {
        ["10", ..] | ["127", ..] => true,
        ["192", "168", ..] => true,
        ["172", second, ..] => second.parse::<u8>().is_ok_and(|s| (16..=31).contains(&s)),
        _ => false,
    }
}

/// Answers `query` from `zone` if it is ours.
pub fn answer(zone: &Zone, query: &[u8]) -> Reply {
    let Ok(request) = Message::from_vec(query) else { return Reply::Drop };
    if request.message_type() != MessageType::Query {
        return Reply::Drop;
    }
    let Some(question) = request.queries().first() else { return Reply::Drop };
    let name = question.name().to_ascii().trim_end_matches('.').to_ascii_lowercase();
    let ours = zone.is_ours(&name);
    if !ours && !is_private_reverse(&name) {
        return Reply::Forward;
    }
    let mut response = Message::new();
    response
        .set_id(request.id())
        .set_message_type(MessageType::Response)
        .set_op_code(request.op_code())
        .set_recursion_desired(request.recursion_desired())
        .set_recursion_available(true)
        .set_authoritative(true)
        .add_query(question.clone());
    match (ours.then(|| zone.lookup(&name)).flatten(), question.query_type()) {
        (Some(address), RecordType::A | RecordType::ANY) => {
            response.add_answer(Record::from_rdata(question.name().clone(), TTL, RData::A(A(address))));
        }
        // The name exists, not with this type: NODATA.
        (Some(_), _) => {}
        (None, _) => {
            response.set_response_code(ResponseCode::NXDomain);
        }
    }
    match response.to_vec() {
        Ok(bytes) => Reply::Local(bytes),
        Err(_) => Reply::Drop,
    }
}

/// The name servers of a `resolv.conf`, on port 53.
pub fn name_servers(resolv_conf: &str) -> Vec<SocketAddr> {
    resolv_conf
        .lines()
        .filter_map(|line| line.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.trim().parse::<IpAddr>().ok())
        .map(|address| SocketAddr::new(address, 53))
        .collect()
}

/// The server: one UDP listener per environment gateway.
pub struct DnsServer {
    zone: Arc<Zone>,
    upstream: Arc<Vec<SocketAddr>>,
    port: u16,
    listeners: std::sync::Mutex<HashMap<Ipv4Addr, tokio::task::JoinHandle<()>>>,
}

impl DnsServer {
    /// `upstream`: where names outside the zone are forwarded (usually the host's).
    pub fn new(zone: Arc<Zone>, upstream: Vec<SocketAddr>, port: u16) -> Self {
        Self { zone, upstream: Arc::new(upstream), port, listeners: std::sync::Mutex::default() }
    }

    pub fn zone(&self) -> &Arc<Zone> {
        &self.zone
    }

    /// Answers on `address` from now on (once per address; the address need not be up yet).
    pub fn listen(&self, address: Ipv4Addr) -> std::io::Result<()> {
        let mut listeners = self.listeners.lock().unwrap_or_else(|poison| poison.into_inner());
        if listeners.get(&address).is_some_and(|task| !task.is_finished()) {
            return Ok(());
        }
        let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None)?;
        // The bridge gets its address with its first instance; bind before that.
        socket.set_freebind_v4(true)?;
        socket.set_reuse_address(true)?;
        socket.set_nonblocking(true)?;
        socket.bind(&SocketAddr::from((address, self.port)).into())?;
        let socket = Arc::new(UdpSocket::from_std(socket.into())?);
        let (zone, upstream) = (self.zone.clone(), self.upstream.clone());
        listeners.insert(address, tokio::spawn(serve(socket, zone, upstream)));
        Ok(())
    }
}

impl DnsServer {
    /// Stops answering on `address` (its network is gone).
    pub fn stop_listening(&self, address: Ipv4Addr) {
        if let Some(task) = self.listeners.lock().unwrap_or_else(|poison| poison.into_inner()).remove(&address) {
            task.abort();
        }
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        for task in self.listeners.lock().unwrap_or_else(|poison| poison.into_inner()).values() {
            task.abort();
        }
    }
}

async fn serve(socket: Arc<UdpSocket>, zone: Arc<Zone>, upstream: Arc<Vec<SocketAddr>>) {
    let mut buffer = vec![0u8; 4096];
    loop {
        let (length, client) = match socket.recv_from(&mut buffer).await {
            Ok(received) => received,
            Err(error) => {
                tracing::warn!(%error, "DNS: cannot receive");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let query = buffer[..length].to_vec();
        match answer(&zone, &query) {
            Reply::Local(response) => {
                let _ = socket.send_to(&response, client).await;
            }
            Reply::Forward => {
                let (socket, upstream) = (socket.clone(), upstream.clone());
                tokio::spawn(async move {
                    let response = match forward(&query, &upstream).await {
                        Some(response) => response,
                        None => server_failure(&query),
                    };
                    let _ = socket.send_to(&response, client).await;
                });
            }
            Reply::Drop => {}
        }
    }
}

/// SERVFAIL for `query` (no upstream server answered), so that the client stops waiting.
fn server_failure(query: &[u8]) -> Vec<u8> {
    let Ok(request) = Message::from_vec(query) else { return Vec::new() };
    let mut response = Message::error_msg(request.id(), request.op_code(), ResponseCode::ServFail);
    response.add_queries(request.queries().to_vec());
    response.to_vec().unwrap_or_default()
}

/// Asks each upstream server in turn; the first response.
async fn forward(query: &[u8], upstream: &[SocketAddr]) -> Option<Vec<u8>> {
    for server in upstream {
        let bind: SocketAddr = if server.is_ipv4() { ([0, 0, 0, 0], 0).into() } else { ([0u16; 8], 0).into() };
        let Ok(socket) = UdpSocket::bind(bind).await else { continue };
        if socket.send_to(query, server).await.is_err() {
            continue;
        }
        let mut buffer = vec![0u8; 4096];
        if let Ok(Ok((length, _))) = tokio::time::timeout(UPSTREAM_TIMEOUT, socket.recv_from(&mut buffer)).await {
            buffer.truncate(length);
            return Some(buffer);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use hickory_proto::op::Query;
    use hickory_proto::rr::Name;

    use super::*;

    fn query(name: &str, kind: RecordType) -> Vec<u8> {
        let mut message = Message::new();
        message.set_id(7).set_recursion_desired(true).add_query(Query::query(Name::from_ascii(name).unwrap(), kind));
        message.to_vec().unwrap()
    }

    fn response(reply: Reply) -> Message {
        match reply {
            Reply::Local(bytes) => Message::from_vec(&bytes).unwrap(),
            other => panic!("expected a local answer, got {other:?}"),
        }
    }

    fn zone() -> Zone {
        let zone = Zone::new("flotilla.internal.");
        zone.set(HashMap::from([("web.store.prod.shop.flotilla.internal".into(), Ipv4Addr::new(10, 96, 0, 1))]));
        zone
    }

    #[test]
    fn service_names_resolve_to_their_address() {
        let answer = response(answer(&zone(), &query("Web.Store.prod.shop.flotilla.internal.", RecordType::A)));
        assert_eq!(answer.id(), 7);
        assert_eq!(answer.response_code(), ResponseCode::NoError);
        assert!(answer.authoritative());
        let records: Vec<&RData> = answer.answers().iter().map(Record::data).collect();
        assert_eq!(records, vec![&RData::A(A(Ipv4Addr::new(10, 96, 0, 1)))]);
    }

    #[test]
    fn unknown_names_of_the_zone_do_not_exist_and_other_types_are_empty() {
        let missing = response(answer(&zone(), &query("api.store.prod.shop.flotilla.internal.", RecordType::A)));
        assert_eq!(missing.response_code(), ResponseCode::NXDomain);
        let ipv6 = response(answer(&zone(), &query("web.store.prod.shop.flotilla.internal.", RecordType::AAAA)));
        assert_eq!(ipv6.response_code(), ResponseCode::NoError);
        assert!(ipv6.answers().is_empty());
    }

    #[test]
    fn private_reverse_lookups_stay_local_and_other_names_go_upstream() {
        let reverse = response(answer(&zone(), &query("1.0.96.10.in-addr.arpa.", RecordType::PTR)));
        assert_eq!(reverse.response_code(), ResponseCode::NXDomain);
        assert!(is_private_reverse("4.3.20.172.in-addr.arpa"));
        assert!(!is_private_reverse("4.3.40.172.in-addr.arpa"));
        assert_eq!(answer(&zone(), &query("example.org.", RecordType::A)), Reply::Forward);
        assert_eq!(answer(&zone(), b"not dns"), Reply::Drop);
    }

    #[tokio::test]
    async fn without_an_upstream_answer_the_client_gets_a_server_failure() {
        let failure = Message::from_vec(&server_failure(&query("example.org.", RecordType::A))).unwrap();
        assert_eq!((failure.id(), failure.response_code()), (7, ResponseCode::ServFail));
        assert_eq!(forward(&query("example.org.", RecordType::A), &[]).await, None);
    }

    #[test]
    fn name_servers_are_read_from_resolv_conf() {
        let servers = name_servers("# comment\nnameserver 192.0.2.53\nsearch example\nnameserver ::1\n");
        assert_eq!(servers, vec!["192.0.2.53:53".parse().unwrap(), "[::1]:53".parse().unwrap()]);
    }
}
