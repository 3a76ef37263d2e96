//! The cluster keys of one node: what it runs (`process.roles`), the controller quorum's voters
//! (`controller.quorum.voters`), the listener the quorum's traffic arrives on
//! (`controller.listener.names`), the broker lease and Raft timings, and `broker.rack`; and the
//! checks that tie them to `node.id` and `listeners`.
//!
//! The quorum's traffic shares the Kafka port (its own API keys on a Kafka listener), so a
//! voter's address is its node's listener: there is no separate controller port to configure.
//! Pure: parsing and checks only; `src/cluster/` runs the quorum.

use std::fmt;

use super::broker::{BrokerConfig, Settings};
use super::listener::{advertisable, is_wildcard_host, split_host_port, Listener};
use super::{conflict, invalid, ConfigError};

const PROCESS_ROLES: &str = "process.roles";
const QUORUM_VOTERS: &str = "controller.quorum.voters";
const CONTROLLER_LISTENER_NAMES: &str = "controller.listener.names";
const BROKER_HEARTBEAT_INTERVAL_MS: &str = "broker.heartbeat.interval.ms";
const BROKER_SESSION_TIMEOUT_MS: &str = "broker.session.timeout.ms";
const CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS: &str = "controller.quorum.election.timeout.ms";
/// Not a Kafka key: Kafka ties the leader's fetch-driven liveness to the election timeout.
const CONTROLLER_QUORUM_HEARTBEAT_INTERVAL_MS: &str = "controller.quorum.heartbeat.interval.ms";
const BROKER_RACK: &str = "broker.rack";

const ROLES_EXPECTED: &str =
    "broker, controller, or broker,controller (in any order, each role once)";
const VOTERS_FORMAT: &str = "id@host:port, e.g. 0@localhost:9092,1@localhost:9093";

// Kafka's defaults are a 2000 ms heartbeat and a 9000 ms session; these are chosen so that a
// dead broker is fenced, and its partitions led elsewhere, in under 2 s.
pub(super) const BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 250;
const BROKER_HEARTBEAT_INTERVAL_MS_MIN: u64 = 10;
const BROKER_HEARTBEAT_INTERVAL_MS_MAX: u64 = 60_000;
pub(super) const BROKER_SESSION_TIMEOUT_MS_DEFAULT: u64 = 1_500;
const BROKER_SESSION_TIMEOUT_MS_MIN: u64 = 100;
const BROKER_SESSION_TIMEOUT_MS_MAX: u64 = 600_000;
pub(super) const CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS_DEFAULT: u64 = 1_000;
const CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS_MIN: u64 = 100;
const CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS_MAX: u64 = 60_000;
pub(super) const CONTROLLER_QUORUM_HEARTBEAT_INTERVAL_MS_DEFAULT: u64 = 100;
const CONTROLLER_QUORUM_HEARTBEAT_INTERVAL_MS_MIN: u64 = 10;
const CONTROLLER_QUORUM_HEARTBEAT_INTERVAL_MS_MAX: u64 = 10_000;

// The defaults pass the cross-checks `check_timings` applies to configured values, and each
// range leaves room for a valid pair at its low end.
const _: () = {
    assert!(BROKER_SESSION_TIMEOUT_MS_DEFAULT >= 2 * BROKER_HEARTBEAT_INTERVAL_MS_DEFAULT);
    assert!(
        2 * CONTROLLER_QUORUM_HEARTBEAT_INTERVAL_MS_DEFAULT
            < CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS_DEFAULT
    );
    assert!(BROKER_SESSION_TIMEOUT_MS_MIN >= 2 * BROKER_HEARTBEAT_INTERVAL_MS_MIN);
    assert!(
        2 * CONTROLLER_QUORUM_HEARTBEAT_INTERVAL_MS_MIN < CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS_MIN
    );
};

/// What one node runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProcessRoles {
    /// A broker and a voter of the controller quorum in one process (`broker,controller`).
    #[default]
    Combined,
    /// A broker only: it registers with a quorum of other nodes.
    Broker,
    /// A controller voter only: it serves no partitions.
    Controller,
}

impl ProcessRoles {
    pub fn is_broker(self) -> bool {
        matches!(self, ProcessRoles::Combined | ProcessRoles::Broker)
    }

    pub fn is_controller(self) -> bool {
        matches!(self, ProcessRoles::Combined | ProcessRoles::Controller)
    }

    /// As `process.roles` spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            ProcessRoles::Combined => "broker,controller",
            ProcessRoles::Broker => "broker",
            ProcessRoles::Controller => "controller",
        }
    }
}

impl fmt::Display for ProcessRoles {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// One voter of the controller quorum: a node id and the address its Kafka port is reached at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumVoter {
    pub id: i32,
    /// A name or an address; an IPv6 address without brackets.
    pub host: String,
    pub port: u16,
}

impl QuorumVoter {
    /// `host:port`, bracketing an IPv6 host, as `ToSocketAddrs` accepts it.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for QuorumVoter {
    /// As `controller.quorum.voters` spells it: `id@host:port`.
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{}@{}", self.id, self.address())
    }
}

impl BrokerConfig {
    /// The controller quorum: the configured voters, or when none are configured a quorum of
    /// this node alone, at the advertised host and the port of its controller listener.
    pub fn quorum_voters(&self) -> Vec<QuorumVoter> {
        if !self.controller_quorum_voters.is_empty() {
            return self.controller_quorum_voters.clone();
        }
        let listener = self.controller_listener();
        let host = self
            .advertised_listeners
            .iter()
            .find(|advertised| advertised.name == listener.name)
            .map_or_else(
                || advertisable(listener).host,
                |advertised| advertised.host.clone(),
            );
        vec![QuorumVoter {
            id: self.broker_id,
            host,
            port: listener.port,
        }]
    }

    /// The listener the quorum's traffic arrives on: the first of `controller.listener.names`,
    /// or the first listener when that is not set.
    pub fn controller_listener(&self) -> &Listener {
        self.controller_listener_names
            .first()
            .and_then(|name| {
                self.listeners
                    .iter()
                    .find(|listener| &listener.name == name)
            })
            .unwrap_or_else(|| self.first_listener())
    }

    /// The listener clients are served on: the first that is not a controller listener, or the
    /// first listener when every listener is one.
    pub fn client_listener(&self) -> &Listener {
        self.listeners
            .iter()
            .find(|listener| !self.controller_listener_names.contains(&listener.name))
            .unwrap_or_else(|| self.first_listener())
    }

    fn first_listener(&self) -> &Listener {
        self.listeners
            .first()
            .expect("listeners is never empty: parsing refuses an empty list")
    }
}

/// Reads the cluster keys into `config` (whose id and listeners are already resolved) and
/// checks them against each other and against the id and the listeners.
pub(super) fn resolve_cluster(
    settings: &mut Settings,
    config: &mut BrokerConfig,
) -> Result<(), ConfigError> {
    if let Some(value) = settings.get(PROCESS_ROLES) {
        config.process_roles = parse_process_roles(value)?;
    }
    if let Some(value) = settings.get(QUORUM_VOTERS) {
        config.controller_quorum_voters = parse_quorum_voters(value)?;
    }
    if let Some(value) = settings.get(CONTROLLER_LISTENER_NAMES) {
        config.controller_listener_names =
            parse_controller_listener_names(value, &config.listeners)?;
    }
    let timings = [
        (
            BROKER_HEARTBEAT_INTERVAL_MS,
            BROKER_HEARTBEAT_INTERVAL_MS_MIN,
            BROKER_HEARTBEAT_INTERVAL_MS_MAX,
            &mut config.broker_heartbeat_interval_ms,
        ),
        (
            BROKER_SESSION_TIMEOUT_MS,
            BROKER_SESSION_TIMEOUT_MS_MIN,
            BROKER_SESSION_TIMEOUT_MS_MAX,
            &mut config.broker_session_timeout_ms,
        ),
        (
            CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS,
            CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS_MIN,
            CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS_MAX,
            &mut config.controller_quorum_election_timeout_ms,
        ),
        (
            CONTROLLER_QUORUM_HEARTBEAT_INTERVAL_MS,
            CONTROLLER_QUORUM_HEARTBEAT_INTERVAL_MS_MIN,
            CONTROLLER_QUORUM_HEARTBEAT_INTERVAL_MS_MAX,
            &mut config.controller_quorum_heartbeat_interval_ms,
        ),
    ];
    for (key, min, max, field) in timings {
        if let Some(value) = settings.integer(key, min.into(), max.into())? {
            *field = value;
        }
    }
    config.broker_rack = settings.text(BROKER_RACK);
    check_timings(config)?;
    check_quorum(config)
}

pub(super) fn parse_process_roles(value: &str) -> Result<ProcessRoles, ConfigError> {
    let refused = || invalid(PROCESS_ROLES, value, ROLES_EXPECTED);
    let (mut broker, mut controller) = (false, false);
    for role in value
        .split(',')
        .map(str::trim)
        .filter(|role| !role.is_empty())
    {
        let seen = if role.eq_ignore_ascii_case("broker") {
            &mut broker
        } else if role.eq_ignore_ascii_case("controller") {
            &mut controller
        } else {
            return Err(refused());
        };
        if *seen {
            return Err(refused());
        }
        *seen = true;
    }
    match (broker, controller) {
        (true, true) => Ok(ProcessRoles::Combined),
        (true, false) => Ok(ProcessRoles::Broker),
        (false, true) => Ok(ProcessRoles::Controller),
        (false, false) => Err(refused()),
    }
}

/// `id@host:port,...`; an empty list is the same as not setting the key.
pub(super) fn parse_quorum_voters(value: &str) -> Result<Vec<QuorumVoter>, ConfigError> {
    let mut voters: Vec<QuorumVoter> = Vec::new();
    for item in value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
    {
        let voter = parse_voter(item)?;
        if let Some(earlier) = voters.iter().find(|earlier| earlier.id == voter.id) {
            return Err(invalid(
                QUORUM_VOTERS,
                value,
                format!(
                    "voters with distinct ids (node {} appears twice: {earlier} and {voter})",
                    voter.id
                ),
            ));
        }
        if let Some(earlier) = voters
            .iter()
            .find(|earlier| earlier.address() == voter.address())
        {
            return Err(invalid(
                QUORUM_VOTERS,
                value,
                format!(
                    "voters at distinct addresses ({earlier} and {voter} share {})",
                    voter.address()
                ),
            ));
        }
        voters.push(voter);
    }
    Ok(voters)
}

fn parse_voter(item: &str) -> Result<QuorumVoter, ConfigError> {
    let malformed = || invalid(QUORUM_VOTERS, item, VOTERS_FORMAT);
    let (id, address) = item.split_once('@').ok_or_else(malformed)?;
    let id = id
        .trim()
        .parse::<i32>()
        .ok()
        .filter(|id| *id >= 0)
        .ok_or_else(|| {
            invalid(
                QUORUM_VOTERS,
                item,
                format!(
                    "a node id between 0 and {} before the @ in {VOTERS_FORMAT}",
                    i32::MAX
                ),
            )
        })?;
    let (host, port) = split_host_port(address.trim()).ok_or_else(malformed)?;
    if is_wildcard_host(host) {
        return Err(invalid(
            QUORUM_VOTERS,
            item,
            format!(
                "a host that peers can connect to (not empty or a wildcard) in {VOTERS_FORMAT}"
            ),
        ));
    }
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|port| *port != 0)
        .ok_or_else(|| {
            invalid(
                QUORUM_VOTERS,
                item,
                format!("a port between 1 and 65535 in {VOTERS_FORMAT}"),
            )
        })?;
    Ok(QuorumVoter {
        id,
        host: host.to_string(),
        port,
    })
}

/// Listener names, upper-cased as `listeners` has them; each must be a listener's name.
fn parse_controller_listener_names(
    value: &str,
    listeners: &[Listener],
) -> Result<Vec<String>, ConfigError> {
    let mut names: Vec<String> = Vec::new();
    for name in value
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
    {
        let name = name.to_ascii_uppercase();
        if !listeners.iter().any(|listener| listener.name == name) {
            let defined: Vec<&str> = listeners
                .iter()
                .map(|listener| listener.name.as_str())
                .collect();
            return Err(invalid(
                CONTROLLER_LISTENER_NAMES,
                value,
                format!(
                    "names that listeners defines ({}), but {name} is not among them",
                    defined.join(", ")
                ),
            ));
        }
        if names.contains(&name) {
            return Err(invalid(
                CONTROLLER_LISTENER_NAMES,
                value,
                format!("each name once ({name} appears twice)"),
            ));
        }
        names.push(name);
    }
    Ok(names)
}

fn check_timings(config: &BrokerConfig) -> Result<(), ConfigError> {
    let heartbeat_ms = config.broker_heartbeat_interval_ms;
    if config.broker_session_timeout_ms < 2 * heartbeat_ms {
        return Err(invalid(
            BROKER_SESSION_TIMEOUT_MS,
            &config.broker_session_timeout_ms.to_string(),
            format!(
                "at least twice {BROKER_HEARTBEAT_INTERVAL_MS} ({heartbeat_ms}), \
                 so that one late heartbeat does not fence the broker"
            ),
        ));
    }
    let election_ms = config.controller_quorum_election_timeout_ms;
    if 2 * config.controller_quorum_heartbeat_interval_ms >= election_ms {
        return Err(invalid(
            CONTROLLER_QUORUM_HEARTBEAT_INTERVAL_MS,
            &config.controller_quorum_heartbeat_interval_ms.to_string(),
            format!(
                "less than half of {CONTROLLER_QUORUM_ELECTION_TIMEOUT_MS} ({election_ms}), \
                 so that one lost heartbeat does not start an election"
            ),
        ));
    }
    Ok(())
}

/// The roles against the voter list, and this node's voter entry against its listener.
fn check_quorum(config: &BrokerConfig) -> Result<(), ConfigError> {
    let id = config.broker_id;
    let roles = config.process_roles;
    let voters = &config.controller_quorum_voters;
    let own = voters.iter().find(|voter| voter.id == id);
    if voters.is_empty() {
        return match roles {
            ProcessRoles::Combined => Ok(()),
            ProcessRoles::Broker => Err(conflict(
                QUORUM_VOTERS,
                format!(
                    "not set, but {PROCESS_ROLES}={roles} needs a controller quorum of other \
                     nodes to register with; list its voters as {VOTERS_FORMAT}"
                ),
            )),
            ProcessRoles::Controller => Err(conflict(
                QUORUM_VOTERS,
                format!(
                    "not set, but {PROCESS_ROLES}={roles} needs a quorum to be part of; list \
                     its voters (this node among them) as {VOTERS_FORMAT}, or set \
                     {PROCESS_ROLES}=broker,controller for a single node"
                ),
            )),
        };
    }
    let ids: Vec<String> = voters.iter().map(|voter| voter.id.to_string()).collect();
    let ids = ids.join(", ");
    if !roles.is_controller() {
        return match own {
            Some(own) => Err(conflict(
                QUORUM_VOTERS,
                format!(
                    "node {id} is a voter ({own}), but {PROCESS_ROLES}={roles} runs no \
                     controller; remove it from the voters or set {PROCESS_ROLES}=broker,controller"
                ),
            )),
            None => Ok(()),
        };
    }
    let Some(own) = own else {
        return Err(conflict(
            QUORUM_VOTERS,
            format!(
                "node {id} is not a voter (voters: {ids}); with {PROCESS_ROLES}={roles} this \
                 node must be one of them: add it, or check node.id / broker.id"
            ),
        ));
    };
    let listener = config.controller_listener();
    if own.port != listener.port {
        let free_port = if listener.port == 0 {
            " (port 0 is chosen by the OS at start, so peers cannot know it)"
        } else {
            ""
        };
        return Err(conflict(
            QUORUM_VOTERS,
            format!(
                "this node's entry {own} has port {}, but its controller listener {listener} \
                 listens on port {}{free_port}; peers would send the quorum's traffic to the \
                 wrong port",
                own.port, listener.port
            ),
        ));
    }
    Ok(())
}
