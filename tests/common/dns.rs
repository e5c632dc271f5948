//! A real DNS server inside the test process, for headless-Service-style
//! seeding: one name answers with every address currently set for it.
//!
//! It listens on `127.0.0.1:PORT` (or [`DnsServer::start_on`]'s address)
//! over UDP and TCP (the same port), parses
//! queries and builds answers with hickory-proto (the real wire format):
//! A and AAAA records for names it holds, TTL 0 so nobody caches them
//! (unless a test sets one),
//! NXDOMAIN for names it does not. A UDP answer too large for the client
//! is sent truncated, so the client retries over TCP, as with a real
//! server. Records can change while it runs ([`DnsServer::set`]).
//!
//! It runs on a thread of its own with its own runtime, so a test that
//! blocks its runtime (or uses a current-thread one) does not stall it, and
//! it stops (sockets closed) when dropped.
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use hickory_proto::op::{Edns, Message, Metadata, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;

/// The UDP payload a client may take without EDNS (RFC 1035).
const CLASSIC_UDP_LIMIT: usize = 512;
/// The UDP payload this server offers in its own EDNS record.
const SERVER_UDP_PAYLOAD: u16 = 1232;

#[derive(Default)]
struct Zone {
    /// Lowercase names without the trailing dot → addresses.
    records: Mutex<HashMap<String, Vec<IpAddr>>>,
    queries: AtomicUsize,
    /// The TTL answers carry: 0 (nobody caches them) unless a test says.
    ttl: AtomicU32,
}

pub struct DnsServer {
    addr: SocketAddr,
    zone: Arc<Zone>,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    /// Binds UDP and TCP on one free port of 127.0.0.1 and starts serving.
    pub async fn start() -> Self {
        Self::start_on(IpAddr::V4(Ipv4Addr::LOCALHOST)).await
    }

    /// As [`DnsServer::start`], on `ip`: for nodes that cannot reach the
    /// test's loopback, such as ones in network namespaces.
    pub async fn start_on(ip: IpAddr) -> Self {
        let (udp, tcp) = bind_pair(ip);
        let addr = udp.local_addr().expect("dns: local addr");
        let zone = Arc::new(Zone::default());
        let (stop_tx, stop_rx) = oneshot::channel();
        let served = zone.clone();
        let thread = std::thread::Builder::new()
            .name(format!("dns-{addr}"))
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("dns: runtime");
                runtime.block_on(serve(udp, tcp, served, stop_rx));
            })
            .expect("dns: thread");
        Self {
            addr,
            zone,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    /// Where to send queries (UDP and TCP): the `--dns-server` argument.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Makes `name` answer with exactly `addrs` from now on (A records for
    /// the IPv4 ones, AAAA for the IPv6 ones). An empty list: the name
    /// exists but has no addresses.
    pub fn set(&self, name: &str, addrs: Vec<IpAddr>) {
        self.zone
            .records
            .lock()
            .expect("dns: records lock")
            .insert(normalize(name), addrs);
    }

    /// Makes `name` unknown again (NXDOMAIN).
    pub fn remove(&self, name: &str) {
        self.zone
            .records
            .lock()
            .expect("dns: records lock")
            .remove(&normalize(name));
    }

    /// Makes answers from now on say they may be cached for `seconds`, as
    /// a real zone would; the default is 0.
    pub fn set_ttl(&self, seconds: u32) {
        self.zone.ttl.store(seconds, Ordering::SeqCst);
    }

    /// How many queries arrived so far (each A or AAAA question counts one,
    /// over UDP or TCP).
    pub fn queries(&self) -> usize {
        self.zone.queries.load(Ordering::SeqCst)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Returns once the runtime, and with it every socket, is gone.
            let _ = thread.join();
        }
    }
}

fn normalize(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// A UDP socket and a TCP listener on the same free port of `ip`.
fn bind_pair(ip: IpAddr) -> (std::net::UdpSocket, std::net::TcpListener) {
    let mut last = None;
    for _ in 0..100 {
        let udp = std::net::UdpSocket::bind((ip, 0)).expect("dns: bind udp");
        let addr = udp.local_addr().expect("dns: udp addr");
        match std::net::TcpListener::bind(addr) {
            Ok(tcp) => {
                udp.set_nonblocking(true).expect("dns: nonblocking udp");
                tcp.set_nonblocking(true).expect("dns: nonblocking tcp");
                return (udp, tcp);
            }
            Err(error) => last = Some(error),
        }
    }
    panic!("dns: no port free for both UDP and TCP: {last:?}");
}

async fn serve(
    udp: std::net::UdpSocket,
    tcp: std::net::TcpListener,
    zone: Arc<Zone>,
    stop: oneshot::Receiver<()>,
) {
    let udp = UdpSocket::from_std(udp).expect("dns: tokio udp");
    let tcp = TcpListener::from_std(tcp).expect("dns: tokio tcp");
    tokio::select! {
        _ = stop => {}
        () = serve_udp(udp, zone.clone()) => {}
        () = serve_tcp(tcp, zone) => {}
    }
}

async fn serve_udp(socket: UdpSocket, zone: Arc<Zone>) {
    let mut buffer = vec![0u8; 65_535];
    loop {
        let Ok((len, from)) = socket.recv_from(&mut buffer).await else {
            continue;
        };
        if let Some(reply) = zone.answer(&buffer[..len], Transport::Udp) {
            let _ = socket.send_to(&reply, from).await;
        }
    }
}

async fn serve_tcp(listener: TcpListener, zone: Arc<Zone>) {
    loop {
        if let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve_connection(stream, zone.clone()));
        }
    }
}

/// Length-prefixed messages (RFC 1035 4.2.2), as many as the client sends.
async fn serve_connection(mut stream: TcpStream, zone: Arc<Zone>) {
    loop {
        let Ok(len) = stream.read_u16().await else {
            return;
        };
        let mut query = vec![0u8; usize::from(len)];
        if stream.read_exact(&mut query).await.is_err() {
            return;
        }
        let Some(reply) = zone.answer(&query, Transport::Tcp) else {
            continue;
        };
        let Ok(reply_len) = u16::try_from(reply.len()) else {
            return;
        };
        if stream.write_u16(reply_len).await.is_err() || stream.write_all(&reply).await.is_err() {
            return;
        }
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Transport {
    Udp,
    Tcp,
}

impl Zone {
    /// The wire-format answer to one wire-format query; `None` for bytes
    /// that are not a DNS message (dropped, as a server would).
    fn answer(&self, query: &[u8], transport: Transport) -> Option<Vec<u8>> {
        let request = Message::from_vec(query).ok()?;
        self.queries
            .fetch_add(request.queries.len(), Ordering::SeqCst);

        let mut response = Message::response(request.metadata.id, request.metadata.op_code);
        response.metadata = Metadata::response_from_request(&request.metadata);
        response.metadata.authoritative = true;
        response.add_queries(request.queries.iter().cloned());
        if request.edns.is_some() {
            let mut edns = Edns::new();
            edns.set_max_payload(SERVER_UDP_PAYLOAD);
            response.set_edns(edns);
        }

        let ttl = self.ttl.load(Ordering::SeqCst);
        let records = self.records.lock().expect("dns: records lock");
        for question in &request.queries {
            let Some(addrs) = records.get(&normalize(&question.name().to_string())) else {
                response.metadata.response_code = ResponseCode::NXDomain;
                continue;
            };
            for addr in addrs {
                let rdata = match (question.query_type(), addr) {
                    (RecordType::A, IpAddr::V4(v4)) => RData::A(A(*v4)),
                    (RecordType::AAAA, IpAddr::V6(v6)) => RData::AAAA(AAAA(*v6)),
                    _ => continue,
                };
                response.add_answer(Record::from_rdata(question.name().clone(), ttl, rdata));
            }
        }
        drop(records);

        let bytes = response.to_vec().ok()?;
        let limit = request.edns.as_ref().map_or(CLASSIC_UDP_LIMIT, |edns| {
            usize::from(edns.max_payload()).max(CLASSIC_UDP_LIMIT)
        });
        if transport == Transport::Udp && bytes.len() > limit {
            // Too large for this client over UDP: say so, and it asks again
            // over TCP.
            return response.truncate().to_vec().ok();
        }
        Some(bytes)
    }
}
