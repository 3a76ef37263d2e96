//! The addresses a broker binds: its Kafka listeners (`listeners`), the addresses clients are
//! told (`advertised.listeners`) and the Prometheus endpoint (`metrics.listener`), with the
//! checks that keep them from fighting over a port. Also the `host:port` form that
//! `controller.quorum.voters` shares with the listeners.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::{invalid, ConfigError};

/// Kafka advertises the machine's hostname for a wildcard listener; a
/// single-node development broker is far more likely to be reached locally.
pub(super) const ADVERTISED_WILDCARD_HOST: &str = "localhost";
const LISTENER_FORMAT: &str = "NAME://host:port, e.g. PLAINTEXT://127.0.0.1:9092";

/// When `metrics.listener` is not set, the endpoint listens on loopback this far above the
/// first Kafka listener's port, so brokers started from copies of one file that differ in
/// `listeners` (9092, 9093, 9094) get distinct endpoints (9644, 9645, 9646), and the stock
/// single broker keeps 9644.
pub(super) const METRICS_PORT_OFFSET: u16 = 552;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Upper-cased like Kafka does, e.g. `PLAINTEXT`.
    pub name: String,
    /// Without brackets for IPv6; `""` means all interfaces.
    pub host: String,
    pub port: u16,
}

impl Listener {
    /// `host:port` in a form that `ToSocketAddrs` accepts, bracketing IPv6
    /// hosts and mapping an empty host to all interfaces.
    pub fn bind_address(&self) -> String {
        if self.host.is_empty() {
            format!("0.0.0.0:{}", self.port)
        } else if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Listener {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.host.contains(':') {
            write!(formatter, "{}://[{}]:{}", self.name, self.host, self.port)
        } else {
            write!(formatter, "{}://{}:{}", self.name, self.host, self.port)
        }
    }
}

/// Splits `host:port` into the host (brackets of an IPv6 host removed) and the port's text.
/// `None` when the form is wrong or the host has characters no host name or address has; the
/// host may be empty. An IPv6 host must be bracketed, or its colons would be ambiguous.
pub(super) fn split_host_port(address: &str) -> Option<(&str, &str)> {
    if let Some(bracketed) = address.strip_prefix('[') {
        let (host, rest) = bracketed.split_once(']')?;
        let port = rest.strip_prefix(':')?;
        host.parse::<Ipv6Addr>().ok()?;
        Some((host, port))
    } else {
        let (host, port) = address.rsplit_once(':')?;
        let host_is_valid = host.chars().all(|character| {
            character.is_ascii_alphanumeric() || matches!(character, '.' | '-' | '_')
        });
        host_is_valid.then_some((host, port))
    }
}

pub(super) fn parse_listeners(key: &str, value: &str) -> Result<Vec<Listener>, ConfigError> {
    let listeners = value
        .split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(|item| parse_listener(key, item))
        .collect::<Result<Vec<_>, _>>()?;
    if listeners.is_empty() {
        return Err(invalid(
            key,
            value,
            format!("at least one listener as {LISTENER_FORMAT}"),
        ));
    }
    for (index, listener) in listeners.iter().enumerate() {
        if listeners[..index]
            .iter()
            .any(|earlier| earlier.name == listener.name)
        {
            return Err(invalid(
                key,
                value,
                format!(
                    "listeners with distinct names ({} appears twice)",
                    listener.name
                ),
            ));
        }
    }
    Ok(listeners)
}

fn parse_listener(key: &str, item: &str) -> Result<Listener, ConfigError> {
    let malformed = || invalid(key, item, LISTENER_FORMAT);
    let (name, address) = item.split_once("://").ok_or_else(malformed)?;
    let name_is_valid = !name.is_empty()
        && name
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || matches!(character, '_' | '-'));
    if !name_is_valid {
        return Err(malformed());
    }
    let (host, port) = split_host_port(address).ok_or_else(malformed)?;
    let port = port.parse::<u16>().map_err(|_| {
        invalid(
            key,
            item,
            format!("a port between 0 and 65535 in {LISTENER_FORMAT}"),
        )
    })?;
    Ok(Listener {
        name: name.to_ascii_uppercase(),
        host: host.to_string(),
        port,
    })
}

/// Port 0 asks the OS for a free port, so several such listeners cannot clash.
pub(super) fn check_distinct_ports(
    key: &str,
    value: &str,
    listeners: &[Listener],
) -> Result<(), ConfigError> {
    for (index, listener) in listeners.iter().enumerate() {
        let repeated = listener.port != 0
            && listeners[..index]
                .iter()
                .any(|earlier| earlier.port == listener.port);
        if repeated {
            return Err(invalid(
                key,
                value,
                format!(
                    "listeners on distinct ports ({} appears twice)",
                    listener.port
                ),
            ));
        }
    }
    Ok(())
}

pub(super) fn is_wildcard_host(host: &str) -> bool {
    host.is_empty()
        || host
            .parse::<IpAddr>()
            .is_ok_and(|address| address.is_unspecified())
}

/// Clients cannot connect to a wildcard address, so the default advertised
/// form of a wildcard listener names this machine instead.
pub(super) fn advertisable(listener: &Listener) -> Listener {
    let mut advertised = listener.clone();
    if is_wildcard_host(&advertised.host) {
        advertised.host = ADVERTISED_WILDCARD_HOST.to_string();
    }
    advertised
}

/// Advertised names need only be a subset of `listeners`, because a KRaft
/// config binds a CONTROLLER listener that clients are never told about.
pub(super) fn parse_advertised_listeners(
    value: &str,
    listeners: &[Listener],
) -> Result<Vec<Listener>, ConfigError> {
    const KEY: &str = "advertised.listeners";
    let mut advertised = parse_listeners(KEY, value)?;
    for listener in &mut advertised {
        if !listeners.iter().any(|bound| bound.name == listener.name) {
            let names: Vec<&str> = listeners.iter().map(|bound| bound.name.as_str()).collect();
            return Err(invalid(
                KEY,
                value,
                format!(
                    "only listener names that listeners defines ({}), but {} is not among them",
                    names.join(", "),
                    listener.name
                ),
            ));
        }
        if listener.port == 0 {
            return Err(invalid(
                KEY,
                value,
                format!("a port between 1 and 65535 for {}", listener.name),
            ));
        }
        if listener.host.is_empty() {
            listener.host = ADVERTISED_WILDCARD_HOST.to_string();
        } else if is_wildcard_host(&listener.host) {
            return Err(invalid(
                KEY,
                value,
                format!(
                    "a host that clients can connect to for {}, not the wildcard {}",
                    listener.name, listener.host
                ),
            ));
        }
    }
    Ok(advertised)
}

/// The metrics endpoint of a broker whose file does not set `metrics.listener`: loopback, on
/// the first listener's port plus `METRICS_PORT_OFFSET`. A listener on port 0 gets an endpoint
/// on port 0 (both chosen by the OS); a port too high to shift gets no endpoint.
pub(super) fn derived_metrics_listener(listeners: &[Listener]) -> Option<SocketAddr> {
    let port = match listeners.first()?.port {
        0 => 0,
        port => port.checked_add(METRICS_PORT_OFFSET)?,
    };
    Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port))
}

pub(super) fn parse_metrics_listener(
    key: &str,
    value: &str,
) -> Result<Option<SocketAddr>, ConfigError> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.eq_ignore_ascii_case("none") {
        return Ok(None);
    }
    let malformed = || {
        invalid(
            key,
            value,
            "an address such as 127.0.0.1:9644, or none to disable",
        )
    };
    if let Ok(address) = trimmed.parse::<SocketAddr>() {
        return Ok(Some(address));
    }
    let (host, port) = trimmed.rsplit_once(':').ok_or_else(malformed)?;
    let ip = match host {
        "" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        _ => return Err(malformed()),
    };
    let port = port.parse::<u16>().map_err(|_| malformed())?;
    Ok(Some(SocketAddr::new(ip, port)))
}

/// Catches the metrics endpoint and a Kafka listener fighting over one port
/// here, where the message can name both settings, rather than at bind time.
/// `derived` says the endpoint's address was not written but derived from `listeners`.
pub(super) fn check_metrics_port(
    metrics: Option<SocketAddr>,
    derived: bool,
    listeners: &[Listener],
) -> Result<(), ConfigError> {
    let Some(metrics) = metrics else {
        return Ok(());
    };
    if metrics.port() == 0 {
        return Ok(());
    }
    let overlaps = |host: &str| {
        if metrics.ip().is_unspecified() || is_wildcard_host(host) {
            return true;
        }
        match host.parse::<IpAddr>() {
            Ok(address) => address == metrics.ip(),
            Err(_) => host.eq_ignore_ascii_case("localhost") && metrics.ip().is_loopback(),
        }
    };
    let Some(listener) = listeners
        .iter()
        .find(|listener| listener.port == metrics.port() && overlaps(&listener.host))
    else {
        return Ok(());
    };
    let mut expected = format!("a port not used by listener {listener}");
    if derived {
        expected.push_str(&format!(
            " (unset, metrics.listener is the first listener's port + {METRICS_PORT_OFFSET}; \
             set it to another address, or none)"
        ));
    }
    Err(invalid("metrics.listener", &metrics.to_string(), expected))
}
