//! The broker: shards that own partitions, speak Kafka on every core, and pass messages.
//!
//! Start-up: the Kafka listener and the metrics endpoint are bound in the main thread first
//! (a port that cannot be had stops the broker at once, naming the key; a port another
//! process serves is refused even though SO_REUSEPORT would share it); every shard joins the
//! mesh; shard 0 takes those sockets and starts the cluster node (`crate::cluster`):
//! the quorum voter, whose traffic shares the port, and this broker's registration. Each
//! metadata state the node applies is published to every shard, which opens (recovers) the
//! partitions it holds. Once the broker is registered and unfenced, shard 0 tells the others
//! its port and every shard accepts on it (SO_REUSEPORT). With `metrics.listener` set, shard 0
//! also serves the Prometheus endpoint (`metrics`).
//! Shutdown (SIGTERM/SIGINT): stop accepting, finish in-flight requests, sync and close logs.

pub mod api;
pub mod connection;
pub mod fetch_session;
pub mod group;
pub mod metadata;
pub mod metrics;
pub mod ops;
pub mod shard;

use std::net::{SocketAddr, ToSocketAddrs};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;

use crate::config::BrokerConfig;
use crate::runtime::{self, mesh::MeshSeed, net::Listener, ShardSpec};
use shard::{Shard, ShardRequest};

/// How often a shard looks at the process-wide stop flag.
const STOP_POLL_MS: u64 = 50;
/// How long shutdown waits for connections to finish their in-flight requests.
const DRAIN_TIMEOUT_MS: u64 = 5_000;

/// The addresses a started broker actually listens on (the real ports when 0 was asked for).
#[derive(Debug, Clone, Copy)]
pub struct Listening {
    pub kafka: SocketAddr,
    /// The metrics endpoint, unless `metrics.listener=none`.
    pub metrics: Option<SocketAddr>,
}

/// Runs the broker until `stop` is set. `on_ready` is called once with the bound addresses.
pub fn run(
    config: BrokerConfig,
    stop: Arc<AtomicBool>,
    on_ready: impl Fn(Listening) + Send + Sync + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(config.data_dir()).map_err(|e| {
        anyhow::anyhow!("cannot create log dir {}: {e}", config.data_dir().display())
    })?;
    let listener = config
        .listeners
        .first()
        .ok_or_else(|| anyhow::anyhow!("no listener configured"))?;
    let bind: SocketAddr = listener
        .bind_address()
        .to_socket_addrs()
        .map_err(|e| anyhow::anyhow!("cannot resolve listener {listener}: {e}"))?
        .next()
        .ok_or_else(|| anyhow::anyhow!("listener {listener} resolves to nothing"))?;
    if config.process_roles != crate::config::ProcessRoles::Combined {
        anyhow::bail!(
            "process.roles={}: only combined nodes (broker,controller) are served so far",
            config.process_roles.as_str()
        );
    }
    // Every port is checked before anything starts, so a broker that cannot have one stops
    // at once with a message naming the key (and a second broker on the same port is caught:
    // the listener's SO_REUSEPORT would otherwise let it share the port).
    let kafka_key = format!("listeners ({listener})");
    refuse_if_served(bind, &kafka_key)?;
    let first_socket = Listener::bind_socket(bind)
        .map_err(|e| anyhow::anyhow!("cannot listen on {bind} ({kafka_key}): {e}"))?;
    let metrics_socket =
        match config.metrics_listener {
            Some(address) => Some(std::net::TcpListener::bind(address).map_err(|e| {
                anyhow::anyhow!("cannot listen on {address} (metrics.listener): {e}")
            })?),
            None => None,
        };
    let sockets = Arc::new(std::sync::Mutex::new(Some((first_socket, metrics_socket))));
    let spec = ShardSpec {
        count: config.num_shards,
        pinning: config.shard_pinning,
        io_memory_bytes: config.shard_io_memory_bytes,
    };
    tracing::info!(
        shards = spec.count,
        pinning = spec.pinning,
        data_dir = %config.data_dir().display(),
        "starting broker {}",
        config.broker_id
    );
    let config = Arc::new(config);
    let seed = MeshSeed::new(spec.count);
    let on_ready = Arc::new(on_ready);
    runtime::run_shards(&spec, |id| {
        let config = config.clone();
        let seed = seed.clone();
        let stop = stop.clone();
        let on_ready = on_ready.clone();
        // Shard 0 takes the sockets bound above; the others bind their own on its port.
        let sockets = if id == 0 {
            sockets.lock().ok().and_then(|mut s| s.take())
        } else {
            None
        };
        move || run_shard(id, config, seed, bind, sockets, stop, on_ready)
    })
}

async fn run_shard(
    id: usize,
    config: Arc<BrokerConfig>,
    seed: MeshSeed<ShardRequest, shard::ShardReply>,
    bind: SocketAddr,
    sockets: Option<(std::net::TcpListener, Option<std::net::TcpListener>)>,
    stop: Arc<AtomicBool>,
    on_ready: Arc<dyn Fn(Listening) + Send + Sync>,
) -> anyhow::Result<()> {
    let started = Instant::now();
    let count = config.num_shards;
    let shard = Shard::new(id, count, config.clone());
    let mesh = {
        let shard = shard.clone();
        seed.join(move |from, request| shard.clone().serve(from, request))
            .await?
    };
    let _ = shard.mesh.set(mesh);
    // From the start, so that a stop during start-up is seen too.
    runtime::spawn(watch_stop(shard.clone(), stop, count));
    runtime::spawn(shard.storage.clone().run_flusher());
    let listen = shard.wait_listen();
    if id == 0 {
        // The quorum's traffic shares the Kafka port: shard 0 listens from the start, and
        // clients' requests wait there until this broker has joined the cluster.
        let (kafka_socket, metrics_socket) =
            sockets.ok_or_else(|| anyhow::anyhow!("shard 0 started without its sockets"))?;
        let listener = Listener::from_socket(kafka_socket);
        let local = listener.local_addr()?;
        shard.port.set(local.port());
        let metrics = match metrics_socket {
            Some(socket) => {
                let endpoint = Listener::from_socket(socket);
                let bound = endpoint.local_addr()?;
                tracing::info!(address = %bound, "metrics endpoint ready");
                runtime::spawn(metrics::run_endpoint(shard.clone(), endpoint));
                Some(bound)
            }
            None => None,
        };
        let node = match crate::cluster::Node::open(config.clone()) {
            Ok(node) => node,
            Err(e) => {
                // The other shards wait for this one's word: tell them to stop.
                for peer in 1..count {
                    shard.call(peer, ShardRequest::Stop).await;
                }
                return Err(e);
            }
        };
        let _ = shard.cluster.set(node.clone());
        node.check_id(&shard).await;
        node.start(&shard);
        let accepting = {
            let shard = shard.clone();
            runtime::spawn_task(async move { accept_loop(&shard, listener).await })
        };
        let joined = futures::select_biased! {
            _ = node.wait_ready().fuse() => true,
            _ = shard.shutdown_signal().fuse() => false,
        };
        if !joined {
            tracing::info!(shard = id, "stopped before joining the cluster");
            accepting.await;
            tell_drained(&shard, count);
            shard.close_logs().await;
            return Ok(());
        }
        for peer in 1..count {
            shard.call(peer, ShardRequest::Listen(local.port())).await;
        }
        tracing::info!(
            address = %local,
            node = config.broker_id,
            partitions = shard.logs.borrow().len(),
            startup_ms = started.elapsed().as_secs_f64() * 1e3,
            "broker ready"
        );
        on_ready(Listening {
            kafka: local,
            metrics,
        });
        runtime::spawn(shard.clone().run_housekeeping());
        runtime::spawn(group::run_ticks(shard.clone()));
        runtime::spawn(shard.clone().run_cleaner());
        accepting.await;
    } else {
        // A stop during start-up (shard 0 may have failed, or the stop came first) ends this
        // shard too, instead of leaving it waiting for a port that will not come.
        let port = futures::select_biased! {
            port = listen.fuse() => port
                .map_err(|_| anyhow::anyhow!("shard 0 stopped before start-up finished"))?,
            _ = shard.shutdown_signal().fuse() => {
                tracing::info!(shard = id, "stopped during start-up");
                tell_drained(&shard, count);
                shard.close_logs().await;
                return Ok(());
            }
        };
        shard.port.set(port);
        let mut address = bind;
        address.set_port(port);
        let listener = Listener::bind(address)
            .map_err(|e| anyhow::anyhow!("cannot listen on {address}: {e}"))?;
        runtime::spawn(shard.clone().run_housekeeping());
        runtime::spawn(group::run_ticks(shard.clone()));
        runtime::spawn(shard.clone().run_cleaner());
        accept_loop(&shard, listener).await;
    }
    // Drain: connections stop reading at the shutdown signal and finish what they started.
    let deadline = Instant::now() + Duration::from_millis(DRAIN_TIMEOUT_MS);
    while shard.connections.get() > 0 && Instant::now() < deadline {
        runtime::sleep(Duration::from_millis(10)).await;
    }
    // Then wait for the peers to drain theirs: a request in flight on a peer's connection may
    // still call this shard (the controller, a partition's owner), so no shard leaves early.
    // Bounded, in case a peer is gone.
    tell_drained(&shard, count);
    let deadline = Instant::now() + Duration::from_millis(DRAIN_TIMEOUT_MS);
    while shard.drained_peers.get() + 1 < count && Instant::now() < deadline {
        runtime::sleep(Duration::from_millis(5)).await;
    }
    shard.close_logs().await;
    tracing::info!(shard = id, "shard stopped");
    Ok(())
}

/// Fails when a socket on this machine already listens on `address`'s port (on that address
/// or a wildcard one). The listener's SO_REUSEPORT would let a second broker of the same user
/// bind the port and silently take half its connections, and a bind probe cannot tell that
/// apart from the lingering connections of this broker's previous run; the kernel's table of
/// sockets (`/proc/net/tcp`, `tcp6`) can.
fn refuse_if_served(address: SocketAddr, key: &str) -> anyhow::Result<()> {
    if address.port() == 0 {
        return Ok(());
    }
    // A broker killed a moment ago leaves its listeners behind for tens of milliseconds,
    // owned by no process (its io_uring is torn down after it exits): wait for those to go.
    let deadline = Instant::now() + ORPHAN_LISTENER_WAIT;
    loop {
        let listeners = listening_sockets(address);
        if listeners.is_empty() {
            return Ok(());
        }
        if listeners.iter().any(|inode| socket_owned(inode)) || Instant::now() >= deadline {
            anyhow::bail!(
                "cannot listen on {address} ({key}): Address already in use (another process is listening on port {})",
                address.port()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How long start-up waits for the listeners of a killed process to disappear.
const ORPHAN_LISTENER_WAIT: Duration = Duration::from_secs(3);

/// The inodes of the sockets listening on `address`'s port (see `listening_on`).
fn listening_sockets(address: SocketAddr) -> Vec<String> {
    ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|text| {
            text.lines()
                .filter(|line| listening_on(line, address))
                .filter_map(|line| line.split_whitespace().nth(9).map(str::to_owned))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Whether some process (that this one may look into) holds the socket with this inode.
fn socket_owned(inode: &str) -> bool {
    let wanted = format!("socket:[{inode}]");
    let Ok(processes) = std::fs::read_dir("/proc") else {
        return true;
    };
    processes.flatten().any(|process| {
        std::fs::read_dir(process.path().join("fd")).is_ok_and(|fds| {
            fds.flatten().any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| target.as_os_str() == wanted.as_str())
            })
        })
    })
}

/// Whether a `/proc/net/tcp`-format table has a listening socket on `address`'s port at that
/// address or at a wildcard one (or, for a wildcard `address`, at any).
fn listening_on(table: &str, address: SocketAddr) -> bool {
    const LISTEN: &str = "0A";
    table.lines().any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(local), Some(state)) = (fields.get(1), fields.get(3)) else {
            return false;
        };
        let Some((ip_hex, port_hex)) = local.split_once(':') else {
            return false;
        };
        if *state != LISTEN || u16::from_str_radix(port_hex, 16).ok() != Some(address.port()) {
            return false;
        }
        let wildcard = ip_hex.chars().all(|c| c == '0');
        if wildcard || address.ip().is_unspecified() {
            return true;
        }
        match address.ip() {
            // IPv4 entries are the address's bytes read as a little-endian number.
            std::net::IpAddr::V4(ip) => {
                ip_hex.len() == 8
                    && u32::from_str_radix(ip_hex, 16)
                        .is_ok_and(|raw| std::net::Ipv4Addr::from(raw.swap_bytes()) == ip)
            }
            // A specific IPv6 listener on the port: taken as a conflict.
            std::net::IpAddr::V6(_) => ip_hex.len() == 32,
        }
    })
}

/// Tells every peer this shard will call on no one again (`ShardRequest::Drained`).
fn tell_drained(shard: &Rc<Shard>, count: usize) {
    for peer in (0..count).filter(|&peer| peer != shard.id) {
        let shard = shard.clone();
        runtime::spawn(async move {
            let _ = shard.mesh().call(peer, ShardRequest::Drained).await;
        });
    }
}

/// Shard 0 polls the process's stop flag; when it is set, it runs the controlled shutdown
/// (`cluster::Node::shut_down`), begins its own shutdown and tells every peer to stop by
/// message, so a shard whose reactor is parked does not depend on its own timer. The other
/// shards wait for that message (or stop at once on a stop during start-up, which they watch
/// for themselves).
async fn watch_stop(shard: Rc<Shard>, stop: Arc<AtomicBool>, count: usize) {
    let mut signal = shard.shutdown_signal().fuse();
    loop {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let tick = runtime::sleep(Duration::from_millis(STOP_POLL_MS)).fuse();
        futures::pin_mut!(tick);
        futures::select_biased! {
            // A peer told this shard to stop: it has told the others too.
            _ = signal => return,
            _ = tick => {}
        }
    }
    // Controlled shutdown first, while every connection is still served (the quorum's traffic
    // and the controller's answers come over them): leadership moves away, then the broker
    // stops. Only shard 0 runs the cluster node; the other shards wait for its word.
    if shard.id != 0 {
        let _ = signal.await;
        return;
    }
    if let Some(node) = shard.cluster.get().cloned() {
        node.shut_down().await;
    }
    shard.begin_shutdown();
    for peer in (0..count).filter(|&peer| peer != shard.id) {
        let shard = shard.clone();
        runtime::spawn(async move {
            let _ = shard.mesh().call(peer, ShardRequest::Stop).await;
        });
    }
}

async fn accept_loop(shard: &Rc<Shard>, listener: Listener) {
    let mut shutdown = shard.shutdown_signal().fuse();
    loop {
        let accept = listener.accept().fuse();
        futures::pin_mut!(accept);
        let stream = futures::select_biased! {
            _ = shutdown => return,
            stream = accept => stream,
        };
        match stream {
            Ok(stream) => runtime::spawn(connection::serve(shard.clone(), stream)),
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                runtime::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::listening_on;

    const TABLE: &str = "  sl  local_address rem_address   st tx_queue rx_queue\n\
   0: 00000000:07E8 00000000:0000 0A 00000000:00000000\n\
   1: 0100007F:4A94 00000000:0000 0A 00000000:00000000\n\
   2: 0100007F:2384 0100007F:9C40 01 00000000:00000000\n";

    #[test]
    fn listeners_are_found_by_port_and_address_in_the_kernel_table() {
        // 0x07E8 = 2024 on every address; 0x4A94 = 19092 on 127.0.0.1; 0x2384 = 9092 only
        // as the local end of an established connection.
        assert!(listening_on(TABLE, "127.0.0.1:2024".parse().unwrap()));
        assert!(listening_on(TABLE, "127.0.0.1:19092".parse().unwrap()));
        assert!(listening_on(TABLE, "0.0.0.0:19092".parse().unwrap()));
        assert!(!listening_on(TABLE, "127.0.0.2:19092".parse().unwrap()));
        assert!(!listening_on(TABLE, "127.0.0.1:9092".parse().unwrap()));
        assert!(!listening_on(
            "garbage\n1: x 0A",
            "127.0.0.1:9092".parse().unwrap()
        ));
    }
}
