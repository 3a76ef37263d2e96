//! A cluster of real `shardlog broker` processes on 127.0.0.1 for tests, with every
//! broker-to-broker connection running through a proxy the test controls.
//!
//! Broker `i` listens on its own OS-chosen port with its own data directory (one temporary
//! directory holds them all) and names itself in `controller.quorum.voters` at its real address,
//! but every other voter `j` at the address of the link proxy `i → j`. Only voter ids are
//! compared between brokers, so each broker may reach a peer at a different address; that is
//! what lets a test cut one direction of one link, isolate a broker, or heal the network, while
//! clients still connect to every broker directly.
//!
//! Faults: `kill` (SIGKILL), `pause`/`resume` (SIGSTOP/SIGCONT), `stop` (SIGTERM), `restart`
//! (same port and data directory), `cut`/`heal`/`isolate`/`heal_all` on the links. Each
//! broker's stderr goes to a file that survives restarts (`log`).
//!
//! Also here: raw Metadata and CreateTopics calls with timeouts (they answer exactly what one
//! broker says, which a client library would retry or send elsewhere), and a plain broker
//! process for tests that start brokers by hand.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::OpenOptions;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{self as m, ApiKey, RequestHeader, ResponseHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

/// How long a start (every broker's listening line, then every broker listing all) may take.
pub const CLUSTER_START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long a SIGTERM may take to end a broker.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one raw request waits for its answer (a broker holds clients' requests until it
/// has joined the cluster, so a request may wait rather than fail).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a raw CreateTopics waits: longer than the broker's own wait for the commit.
pub const CREATE_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a wait looks at the condition it waits for.
const POLL_INTERVAL: Duration = Duration::from_millis(20);
/// Lines of each broker's log printed when a test fails.
const LOG_TAIL_LINES: usize = 40;

/// The settings every test broker gets: two unpinned shards, a small io_uring buffer, no
/// metrics endpoint (as `tests/common/mod.rs` starts a single broker).
pub const TEST_MACHINE_SETTINGS: [(&str, &str); 4] = [
    ("num.shards", "2"),
    ("shard.pinning", "false"),
    ("shard.io.memory.bytes", "1048576"),
    ("metrics.listener", "none"),
];

// ------------------------------------------------------------------------------------------
// One broker process.

/// Why a broker did not print its listening line.
#[derive(Debug)]
pub enum StartFailure {
    /// It exited first, with this status.
    Exited(ExitStatus),
    /// The deadline passed while it kept running.
    TimedOut,
}

/// One `shardlog broker` process: stdout is watched for the listening line, stderr is
/// appended to a file. Dropping it kills the process.
pub struct BrokerProcess {
    child: Child,
    listening: mpsc::Receiver<String>,
    /// The address from the listening line, once it came.
    pub address: Option<String>,
    log_path: PathBuf,
    exit: Option<ExitStatus>,
}

impl BrokerProcess {
    /// Runs `shardlog broker ARGS` in `cwd` (so that nothing relative lands in the source
    /// tree), with stderr appended to `log_path`.
    pub fn spawn(cwd: &Path, args: &[String], log_path: &Path) -> BrokerProcess {
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log_path)
            .expect("broker log file");
        let mut child = Command::new(env!("CARGO_BIN_EXE_shardlog"))
            .arg("broker")
            .args(args)
            .current_dir(cwd)
            .env("RUST_LOG", "info")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .expect("start shardlog");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, listening) = mpsc::channel();
        std::thread::spawn(move || {
            // Read to the end, so that the broker never blocks on a full pipe.
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(address) = line.strip_prefix("shardlog broker listening on ") {
                    let _ = tx.send(address.to_string());
                }
            }
        });
        BrokerProcess {
            child,
            listening,
            address: None,
            log_path: log_path.to_path_buf(),
            exit: None,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Whether the listening line has come (without waiting).
    pub fn has_listened(&mut self) -> bool {
        if self.address.is_none() {
            if let Ok(address) = self.listening.try_recv() {
                self.address = Some(address);
            }
        }
        self.address.is_some()
    }

    /// The exit status, if the process has ended (without waiting).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        if self.exit.is_none() {
            self.exit = self.child.try_wait().expect("try_wait");
        }
        self.exit
    }

    /// Waits for the listening line until `deadline`.
    pub fn wait_listening(&mut self, deadline: Instant) -> Result<String, StartFailure> {
        loop {
            if self.has_listened() {
                return Ok(self.address.clone().expect("listened"));
            }
            if let Some(status) = self.exited() {
                // The line may have been written just before the exit.
                if self.has_listened() {
                    return Ok(self.address.clone().expect("listened"));
                }
                return Err(StartFailure::Exited(status));
            }
            if Instant::now() >= deadline {
                return Err(StartFailure::TimedOut);
            }
            let _ = self
                .listening
                .recv_timeout(POLL_INTERVAL)
                .map(|address| self.address = Some(address));
        }
    }

    /// Waits up to `limit` for the process to end.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.exited() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }

    pub fn signal(&self, signal: i32) {
        if self.exit.is_some() {
            return;
        }
        // SAFETY: kill(2) on the pid of a child this process has not reaped yet.
        unsafe {
            libc::kill(self.pid(), signal);
        }
    }

    /// SIGKILL, and waits for the exit (a stopped process dies of SIGKILL too).
    pub fn kill(&mut self) {
        if self.exit.is_none() {
            let _ = self.child.kill();
            self.exit = Some(self.child.wait().expect("wait"));
        }
    }

    /// SIGTERM, and waits up to `STOP_TIMEOUT` for the exit; past it, kills and panics.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(libc::SIGTERM);
        match self.wait_exit(STOP_TIMEOUT) {
            Some(status) => status,
            None => {
                self.kill();
                panic!(
                    "broker did not stop within {STOP_TIMEOUT:?} of SIGTERM; its log:\n{}",
                    self.log()
                );
            }
        }
    }

    /// Everything the process wrote to stderr so far (across restarts, for a cluster broker).
    pub fn log(&self) -> String {
        read_log(&self.log_path)
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let name = self
                .log_path
                .file_stem()
                .map(|stem| stem.to_string_lossy().into_owned())
                .unwrap_or_default();
            eprintln!("---- {name} log (last lines) ----");
            eprintln!("{}", log_tail(&self.log(), LOG_TAIL_LINES));
        }
    }
}

fn read_log(path: &Path) -> String {
    std::fs::read(path)
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

fn log_tail(log: &str, lines: usize) -> String {
    let all: Vec<&str> = log.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// `count` distinct ports that were free a moment ago, with their listeners still bound so
/// that nothing else (a proxy of this cluster included) gets them until they are dropped.
pub fn reserve_ports(count: usize) -> Vec<TcpListener> {
    (0..count)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a free port"))
        .collect()
}

/// `count` free ports, held for as long as the sockets live: bound with SO_REUSEPORT but not
/// listening, so the brokers (which bind with SO_REUSEPORT too) can listen on them, while no
/// other socket of any test gets one, even when its broker is down between a kill and a
/// restart.
pub fn hold_ports(count: usize) -> Vec<socket2::Socket> {
    (0..count)
        .map(|_| {
            let socket = socket2::Socket::new(
                socket2::Domain::IPV4,
                socket2::Type::STREAM,
                Some(socket2::Protocol::TCP),
            )
            .expect("socket");
            socket.set_reuse_address(true).expect("SO_REUSEADDR");
            socket.set_reuse_port(true).expect("SO_REUSEPORT");
            let any: std::net::SocketAddr = "127.0.0.1:0".parse().expect("address");
            socket.bind(&any.into()).expect("bind a free port");
            socket
        })
        .collect()
}

pub fn port_of(listener: &TcpListener) -> u16 {
    listener.local_addr().expect("local address").port()
}

/// One free port, released at once: a test that needs an address nothing listens on.
pub fn free_port() -> u16 {
    port_of(&reserve_ports(1)[0])
}

// ------------------------------------------------------------------------------------------
// The link proxy.

/// A one-way link between two brokers (connections from one, to the other's port) that can be
/// cut: open connections are closed at once, and new ones are accepted and closed at once
/// until the link is healed.
pub struct Link {
    pub address: String,
    shared: Arc<LinkShared>,
}

struct LinkShared {
    target: String,
    /// The open connections (both sockets of each), by connection number; `cut` and the
    /// check of it share the lock, so no connection is let through after a cut.
    state: Mutex<LinkState>,
    next_connection: AtomicU64,
    closed: AtomicBool,
}

#[derive(Default)]
struct LinkState {
    cut: bool,
    open: HashMap<u64, (TcpStream, TcpStream)>,
}

impl Link {
    /// A proxy on an OS-chosen loopback port that forwards to `target`.
    pub fn start(target: &str) -> Link {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind link proxy");
        let address = listener.local_addr().expect("proxy address").to_string();
        let shared = Arc::new(LinkShared {
            target: target.to_string(),
            state: Mutex::new(LinkState::default()),
            next_connection: AtomicU64::new(0),
            closed: AtomicBool::new(false),
        });
        let accepting = shared.clone();
        std::thread::spawn(move || accept_loop(listener, accepting));
        Link { address, shared }
    }

    pub fn port(&self) -> u16 {
        self.address
            .rsplit(':')
            .next()
            .and_then(|port| port.parse().ok())
            .expect("proxy port")
    }

    /// Closes every open connection and refuses new ones until `heal`.
    pub fn cut(&self) {
        let mut state = self.shared.state.lock().unwrap();
        state.cut = true;
        for (_, (client, server)) in state.open.drain() {
            let _ = client.shutdown(Shutdown::Both);
            let _ = server.shutdown(Shutdown::Both);
        }
    }

    pub fn heal(&self) {
        self.shared.state.lock().unwrap().cut = false;
    }

    pub fn is_cut(&self) -> bool {
        self.shared.state.lock().unwrap().cut
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        self.shared.closed.store(true, Ordering::SeqCst);
        self.cut();
        // Wakes the accept loop so that it sees `closed` and lets the port go.
        let _ = TcpStream::connect(&self.address);
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<LinkShared>) {
    for client in listener.incoming() {
        if shared.closed.load(Ordering::SeqCst) {
            return;
        }
        let Ok(client) = client else { continue };
        if shared.state.lock().unwrap().cut {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let server = shared
            .target
            .parse::<SocketAddr>()
            .ok()
            .and_then(|target| TcpStream::connect_timeout(&target, CONNECT_TIMEOUT).ok());
        let Some(server) = server else {
            // The broker is down: the connecting broker sees the link close, as it would see
            // a refused connection.
            let _ = client.shutdown(Shutdown::Both);
            continue;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let number = shared.next_connection.fetch_add(1, Ordering::SeqCst);
        {
            let mut state = shared.state.lock().unwrap();
            if state.cut {
                let _ = client.shutdown(Shutdown::Both);
                let _ = server.shutdown(Shutdown::Both);
                continue;
            }
            let (Ok(client_copy), Ok(server_copy)) = (client.try_clone(), server.try_clone())
            else {
                continue;
            };
            state.open.insert(number, (client_copy, server_copy));
        }
        let (Ok(client_reader), Ok(server_reader)) = (client.try_clone(), server.try_clone())
        else {
            continue;
        };
        pipe(client_reader, server, number, shared.clone());
        pipe(server_reader, client, number, shared.clone());
    }
}

/// Copies `from` to `to` until either side closes; then closes both and forgets the
/// connection.
fn pipe(mut from: TcpStream, mut to: TcpStream, number: u64, shared: Arc<LinkShared>) {
    std::thread::spawn(move || {
        let mut buffer = vec![0u8; 64 << 10];
        loop {
            match from.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if to.write_all(&buffer[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
        shared.state.lock().unwrap().open.remove(&number);
    });
}

// ------------------------------------------------------------------------------------------
// The cluster.

struct Member {
    id: usize,
    port: u16,
    data_dir: PathBuf,
    log_path: PathBuf,
    /// This broker's `controller.quorum.voters`: itself at its port, the others at the links'.
    voters: String,
    process: Option<BrokerProcess>,
}

pub struct Cluster {
    dir: tempfile::TempDir,
    members: Vec<Member>,
    /// `links[i][j]` carries broker i's connections to broker j (`None` on the diagonal).
    links: Vec<Vec<Option<Link>>>,
    overrides: Vec<(String, String)>,
    /// The brokers' ports, held for the cluster's life (`hold_ports`).
    _held: Vec<socket2::Socket>,
}

impl Cluster {
    /// Starts `size` brokers with node ids 0..size and `overrides` on top of the test
    /// settings; returns once every broker printed its listening line and Metadata from each
    /// lists all of them. A start that fails because a chosen port was taken meanwhile is
    /// tried once more with new ports.
    pub fn start(size: usize, overrides: &[(&str, &str)]) -> Cluster {
        let overrides: Vec<(String, String)> = overrides
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect();
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut cluster = Cluster::prepare(size, overrides.clone());
            match cluster.start_all() {
                Ok(()) => {
                    cluster.wait_for_brokers(&cluster.ids(), &cluster.ids());
                    return cluster;
                }
                Err(failure) => {
                    let port_taken = failure.contains("Address already in use");
                    if port_taken && attempt == 1 {
                        eprintln!("a chosen port was taken; starting the cluster again: {failure}");
                        continue;
                    }
                    panic!("the cluster did not start: {failure}");
                }
            }
        }
    }

    /// Chooses the ports, starts the link proxies and writes each broker's voter list.
    fn prepare(size: usize, overrides: Vec<(String, String)>) -> Cluster {
        assert!(size > 0, "a cluster has at least one broker");
        let dir = tempfile::tempdir().expect("cluster directory");
        // The brokers' ports stay held for the cluster's life, so that no proxy (nor any
        // other test's socket) gets one, even while its broker is down for a restart.
        let held = hold_ports(size);
        let ports: Vec<u16> = held
            .iter()
            .map(|socket| {
                socket
                    .local_addr()
                    .ok()
                    .and_then(|a| a.as_socket())
                    .expect("bound address")
                    .port()
            })
            .collect();
        let links: Vec<Vec<Option<Link>>> = (0..size)
            .map(|from| {
                (0..size)
                    .map(|to| {
                        (from != to).then(|| Link::start(&format!("127.0.0.1:{}", ports[to])))
                    })
                    .collect()
            })
            .collect();
        let members = (0..size)
            .map(|id| {
                let voters: Vec<String> = (0..size)
                    .map(|peer| match &links[id][peer] {
                        None => format!("{peer}@127.0.0.1:{}", ports[id]),
                        Some(link) => format!("{peer}@{}", link.address),
                    })
                    .collect();
                Member {
                    id,
                    port: ports[id],
                    data_dir: dir.path().join(format!("broker-{id}")),
                    log_path: dir.path().join(format!("broker-{id}.log")),
                    voters: voters.join(","),
                    process: None,
                }
            })
            .collect();
        Cluster {
            dir,
            members,
            links,
            overrides,
            _held: held,
        }
    }

    fn arguments(&self, id: usize) -> Vec<String> {
        let member = &self.members[id];
        let mut settings: Vec<(String, String)> = vec![
            ("node.id".into(), id.to_string()),
            (
                "listeners".into(),
                format!("PLAINTEXT://127.0.0.1:{}", member.port),
            ),
            ("controller.quorum.voters".into(), member.voters.clone()),
            ("log.dirs".into(), member.data_dir.display().to_string()),
        ];
        settings.extend(
            TEST_MACHINE_SETTINGS
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string())),
        );
        settings.extend(self.overrides.iter().cloned());
        overrides_as_arguments(&settings)
    }

    fn spawn(&mut self, id: usize) {
        assert!(
            self.members[id].process.is_none(),
            "broker {id} is still running"
        );
        let arguments = self.arguments(id);
        let member = &mut self.members[id];
        member.process = Some(BrokerProcess::spawn(
            self.dir.path(),
            &arguments,
            &member.log_path,
        ));
    }

    /// Spawns every broker and waits for every listening line; the failure, with the logs,
    /// if one exits or the deadline passes.
    fn start_all(&mut self) -> Result<(), String> {
        for id in self.ids() {
            self.spawn(id);
        }
        let deadline = Instant::now() + CLUSTER_START_TIMEOUT;
        for id in self.ids() {
            self.wait_listening(id, deadline)?;
        }
        Ok(())
    }

    fn wait_listening(&mut self, id: usize, deadline: Instant) -> Result<(), String> {
        let process = self.members[id].process.as_mut().expect("spawned");
        match process.wait_listening(deadline) {
            Ok(_) => Ok(()),
            Err(failure) => {
                let log = process.log();
                // Everyone's log helps when the quorum never formed.
                let others: String = self
                    .ids()
                    .into_iter()
                    .filter(|&other| other != id)
                    .map(|other| {
                        format!(
                            "\n---- broker {other} ----\n{}",
                            log_tail(&self.log(other), LOG_TAIL_LINES)
                        )
                    })
                    .collect();
                Err(format!(
                    "broker {id} did not print its listening line ({failure:?}); its log:\n{log}{others}"
                ))
            }
        }
    }

    pub fn size(&self) -> usize {
        self.members.len()
    }

    pub fn ids(&self) -> Vec<usize> {
        (0..self.members.len()).collect()
    }

    /// The temporary directory the brokers' data directories and logs are in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn port(&self, id: usize) -> u16 {
        self.members[id].port
    }

    /// Broker `id`'s Kafka listener, as clients reach it.
    pub fn bootstrap(&self, id: usize) -> String {
        format!("127.0.0.1:{}", self.members[id].port)
    }

    pub fn bootstrap_all(&self) -> String {
        self.ids()
            .into_iter()
            .map(|id| self.bootstrap(id))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// `controller.quorum.voters` naming every broker at its real address.
    pub fn voters(&self) -> String {
        self.ids()
            .into_iter()
            .map(|id| format!("{id}@{}", self.bootstrap(id)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The voter list broker `id` was started with.
    pub fn voters_of(&self, id: usize) -> &str {
        &self.members[id].voters
    }

    pub fn data_dir(&self, id: usize) -> &Path {
        &self.members[id].data_dir
    }

    /// Everything broker `id` wrote to stderr so far, across restarts.
    pub fn log(&self, id: usize) -> String {
        read_log(&self.members[id].log_path)
    }

    pub fn is_running(&mut self, id: usize) -> bool {
        match self.members[id].process.as_mut() {
            Some(process) => process.exited().is_none(),
            None => false,
        }
    }

    pub fn pid(&self, id: usize) -> i32 {
        self.members[id]
            .process
            .as_ref()
            .expect("broker is running")
            .pid()
    }

    /// SIGKILL: nothing is flushed, no one is told.
    pub fn kill(&mut self, id: usize) {
        if let Some(mut process) = self.members[id].process.take() {
            process.kill();
        }
    }

    /// SIGSTOP: the process stays, with its sockets open, and answers nothing.
    pub fn pause(&self, id: usize) {
        self.process(id).signal(libc::SIGSTOP);
    }

    pub fn resume(&self, id: usize) {
        self.process(id).signal(libc::SIGCONT);
    }

    fn process(&self, id: usize) -> &BrokerProcess {
        self.members[id]
            .process
            .as_ref()
            .unwrap_or_else(|| panic!("broker {id} is not running"))
    }

    /// SIGTERM, waits for the exit and returns its status.
    pub fn stop(&mut self, id: usize) -> ExitStatus {
        let mut process = self.members[id]
            .process
            .take()
            .unwrap_or_else(|| panic!("broker {id} is not running"));
        process.terminate()
    }

    /// Starts a killed or stopped broker again on its port and data directory, and waits for
    /// its listening line.
    pub fn restart(&mut self, id: usize) {
        if self.is_running(id) {
            panic!("broker {id} is still running; kill or stop it first");
        }
        self.members[id].process = None;
        self.spawn(id);
        let deadline = Instant::now() + CLUSTER_START_TIMEOUT;
        if let Err(failure) = self.wait_listening(id, deadline) {
            panic!("broker {id} did not restart: {failure}");
        }
    }

    fn link(&self, from: usize, to: usize) -> &Link {
        self.links[from][to]
            .as_ref()
            .unwrap_or_else(|| panic!("no link from broker {from} to itself"))
    }

    /// Cuts broker `from`'s connections to broker `to` (one direction).
    pub fn cut(&self, from: usize, to: usize) {
        self.link(from, to).cut();
    }

    pub fn heal(&self, from: usize, to: usize) {
        self.link(from, to).heal();
    }

    /// Cuts every link to and from broker `id`.
    pub fn isolate(&self, id: usize) {
        for other in self.ids().into_iter().filter(|&other| other != id) {
            self.cut(id, other);
            self.cut(other, id);
        }
    }

    pub fn heal_all(&self) {
        for link in self.links.iter().flatten().flatten() {
            link.heal();
        }
    }

    /// Waits until Metadata from every broker in `from` lists exactly the brokers `expected`.
    pub fn wait_for_brokers(&self, from: &[usize], expected: &[usize]) {
        let expected: BTreeSet<i32> = expected.iter().map(|&id| id as i32).collect();
        let deadline = Instant::now() + CLUSTER_START_TIMEOUT;
        for &id in from {
            loop {
                let last = match metadata(&self.bootstrap(id)) {
                    Ok(view) if view.broker_ids() == expected => break,
                    Ok(view) => format!("brokers {:?}", view.broker_ids()),
                    Err(e) => e,
                };
                if Instant::now() > deadline {
                    panic!(
                        "Metadata from broker {id} never listed brokers {expected:?} (last: {last}); its log:\n{}",
                        log_tail(&self.log(id), LOG_TAIL_LINES)
                    );
                }
                std::thread::sleep(POLL_INTERVAL);
            }
        }
    }

    /// Metadata from broker `id`.
    pub fn metadata(&self, id: usize) -> Result<ClusterView, String> {
        metadata(&self.bootstrap(id))
    }

    /// Waits until Metadata from every broker in `from` names one live controller, and
    /// returns it.
    pub fn controller(&self, from: &[usize]) -> i32 {
        poll(
            CLUSTER_START_TIMEOUT,
            "the brokers to agree on a live controller",
            || {
                let mut controllers = BTreeSet::new();
                for &id in from {
                    let view = self.metadata(id).ok()?;
                    if !view.brokers.contains_key(&view.controller) {
                        return None;
                    }
                    controllers.insert(view.controller);
                }
                (controllers.len() == 1).then(|| *controllers.iter().next().expect("one"))
            },
        )
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Every process is killed first, so that no broker outlives a failing test while the
        // logs are printed (each process prints its own when the test is failing).
        for member in &mut self.members {
            if let Some(process) = member.process.as_mut() {
                process.kill();
            }
        }
        for member in &mut self.members {
            match member.process.take() {
                Some(process) => drop(process),
                None if std::thread::panicking() => {
                    eprintln!(
                        "---- broker-{} log (last lines, not running) ----",
                        member.id
                    );
                    eprintln!("{}", log_tail(&read_log(&member.log_path), LOG_TAIL_LINES));
                }
                None => {}
            }
        }
    }
}

/// `--override key=value` for each setting.
pub fn overrides_as_arguments(settings: &[(String, String)]) -> Vec<String> {
    settings
        .iter()
        .flat_map(|(key, value)| ["--override".to_string(), format!("{key}={value}")])
        .collect()
}

/// Polls `check` until it returns `Some`, or panics after `timeout`.
pub fn poll<T>(timeout: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

// ------------------------------------------------------------------------------------------
// Raw requests.

/// What one broker's Metadata answer says about the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// Listed (live) brokers: id → (host, port).
    pub brokers: BTreeMap<i32, (String, u16)>,
    pub controller: i32,
    pub topics: BTreeMap<String, Vec<PartitionView>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    pub error_code: i16,
    pub leader: i32,
    pub leader_epoch: i32,
    pub replicas: Vec<i32>,
}

pub const LEADER_NOT_AVAILABLE: i16 = 5;

impl ClusterView {
    pub fn broker_ids(&self) -> BTreeSet<i32> {
        self.brokers.keys().copied().collect()
    }

    /// Every partition's leader, by topic.
    pub fn leaders(&self, topic: &str) -> Option<Vec<i32>> {
        self.topics
            .get(topic)
            .map(|partitions| partitions.iter().map(|p| p.leader).collect())
    }

    /// One answer is consistent with itself: a leader is a listed broker, or -1 with
    /// LEADER_NOT_AVAILABLE; the controller (if any) is listed.
    pub fn check_consistent(&self) -> Result<(), String> {
        for (topic, partitions) in &self.topics {
            for (index, partition) in partitions.iter().enumerate() {
                let ok = if partition.leader == -1 {
                    partition.error_code == LEADER_NOT_AVAILABLE
                } else {
                    self.brokers.contains_key(&partition.leader) && partition.error_code == 0
                };
                if !ok {
                    return Err(format!(
                        "{topic}-{index}: leader {} (error {}) with brokers {:?}",
                        partition.leader,
                        partition.error_code,
                        self.broker_ids()
                    ));
                }
            }
        }
        if self.controller != -1 && !self.brokers.contains_key(&self.controller) {
            return Err(format!(
                "controller {} is not among the brokers {:?}",
                self.controller,
                self.broker_ids()
            ));
        }
        Ok(())
    }
}

/// Metadata v12 of every topic from the broker at `address`.
pub fn metadata(address: &str) -> Result<ClusterView, String> {
    let mut request = m::MetadataRequest::default();
    request.topics = None;
    request.allow_auto_topic_creation = false;
    let response: m::MetadataResponse =
        call(address, ApiKey::Metadata, 12, &request, REQUEST_TIMEOUT)?;
    if response.error_code != 0 {
        return Err(format!("Metadata error {}", response.error_code));
    }
    let brokers = response
        .brokers
        .iter()
        .map(|b| (b.node_id.0, (b.host.to_string(), b.port as u16)))
        .collect();
    let mut topics = BTreeMap::new();
    for topic in &response.topics {
        let Some(name) = &topic.name else { continue };
        let mut partitions: Vec<(i32, PartitionView)> = topic
            .partitions
            .iter()
            .map(|p| {
                (
                    p.partition_index,
                    PartitionView {
                        error_code: p.error_code,
                        leader: p.leader_id.0,
                        leader_epoch: p.leader_epoch,
                        replicas: p.replica_nodes.iter().map(|r| r.0).collect(),
                    },
                )
            })
            .collect();
        partitions.sort_by_key(|(index, _)| *index);
        topics.insert(
            name.0.to_string(),
            partitions.into_iter().map(|(_, p)| p).collect(),
        );
    }
    Ok(ClusterView {
        brokers,
        controller: response.controller_id.0,
        topics,
    })
}

/// What CreateTopics answered for one topic, when it was not success.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateRefused {
    pub error_code: i16,
    pub message: Option<String>,
}

pub const TOPIC_ALREADY_EXISTS: i16 = 36;

/// CreateTopics (v5) of one topic with `partitions` partitions and replication factor 1, sent
/// to the broker at `address` itself. `Err(None)` when no answer came.
pub fn create_topic(
    address: &str,
    name: &str,
    partitions: i32,
) -> Result<(), Option<CreateRefused>> {
    let mut request = m::CreateTopicsRequest::default();
    request.timeout_ms = 10_000;
    let mut topic = m::create_topics_request::CreatableTopic::default();
    topic.name = TopicName(StrBytes::from_string(name.to_string()));
    topic.num_partitions = partitions;
    topic.replication_factor = 1;
    request.topics.push(topic);
    let response: m::CreateTopicsResponse =
        call(address, ApiKey::CreateTopics, 5, &request, CREATE_TIMEOUT).map_err(|e| {
            eprintln!("CreateTopics {name} at {address}: {e}");
            None
        })?;
    let result = response.topics.first().ok_or(Some(CreateRefused {
        error_code: -1,
        message: Some("no topic in the answer".into()),
    }))?;
    if result.error_code == 0 {
        Ok(())
    } else {
        Err(Some(CreateRefused {
            error_code: result.error_code,
            message: result.error_message.as_ref().map(|s| s.to_string()),
        }))
    }
}

/// Creates a topic through the broker at `address`, retrying while the cluster settles (no
/// controller, a lost answer) until `timeout`; an answer of TOPIC_ALREADY_EXISTS after a retry
/// counts as created (the earlier attempt did it).
pub fn create_topic_retrying(address: &str, name: &str, partitions: i32, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    let mut retried = false;
    loop {
        let last = match create_topic(address, name, partitions) {
            Ok(()) => return,
            Err(Some(refused)) if retried && refused.error_code == TOPIC_ALREADY_EXISTS => return,
            Err(refused) => refused,
        };
        if Instant::now() > deadline {
            panic!("topic {name} was not created through {address} within {timeout:?}: {last:?}");
        }
        retried = true;
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One request and its answer over a new connection, with timeouts throughout.
pub fn call<Req: Encodable, Resp: Decodable>(
    address: &str,
    key: ApiKey,
    version: i16,
    body: &Req,
    timeout: Duration,
) -> Result<Resp, String> {
    let target = address
        .to_socket_addrs()
        .map_err(|e| format!("{address}: {e}"))?
        .find(SocketAddr::is_ipv4)
        .ok_or_else(|| format!("{address} has no IPv4 address"))?;
    let mut stream = TcpStream::connect_timeout(&target, CONNECT_TIMEOUT)
        .map_err(|e| format!("connect to {address}: {e}"))?;
    stream
        .set_read_timeout(Some(timeout))
        .and_then(|()| stream.set_write_timeout(Some(timeout)))
        .map_err(|e| format!("{address}: {e}"))?;
    let correlation_id = 1;
    let mut header = RequestHeader::default();
    header.request_api_key = key as i16;
    header.request_api_version = version;
    header.correlation_id = correlation_id;
    header.client_id = Some(StrBytes::from_static_str("cluster-test"));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .map_err(|e| format!("encode header: {e}"))?;
    body.encode(&mut buf, version)
        .map_err(|e| format!("encode body: {e}"))?;
    let mut frame = (buf.len() as i32).to_be_bytes().to_vec();
    frame.extend_from_slice(&buf);
    stream
        .write_all(&frame)
        .map_err(|e| format!("send to {address}: {e}"))?;
    let mut size = [0u8; 4];
    stream
        .read_exact(&mut size)
        .map_err(|e| format!("no answer from {address}: {e}"))?;
    let size = i32::from_be_bytes(size);
    if !(4..=(64 << 20)).contains(&size) {
        return Err(format!("{address} answered a frame of {size} bytes"));
    }
    let mut answer = vec![0u8; size as usize];
    stream
        .read_exact(&mut answer)
        .map_err(|e| format!("short answer from {address}: {e}"))?;
    let mut answer = Bytes::from(answer);
    let header = ResponseHeader::decode(&mut answer, key.response_header_version(version))
        .map_err(|e| format!("decode answer header: {e}"))?;
    if header.correlation_id != correlation_id {
        return Err(format!(
            "{address} answered correlation id {}",
            header.correlation_id
        ));
    }
    Resp::decode(&mut answer, version).map_err(|e| format!("decode answer: {e}"))
}
