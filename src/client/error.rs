//! Client errors: typed, and each says whether retrying can help. Kafka error codes map to
//! `kafka_protocol`'s `ResponseError`, which carries Kafka's own retriable flag per code.

use std::time::Duration;

pub use kafka_protocol::error::ResponseError;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The broker answered with a Kafka error code.
    #[error("{error} (Kafka error code {}){}", error.code(), message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Kafka {
        error: ResponseError,
        message: Option<String>,
    },
    #[error("connection to {broker} failed: {source}")]
    Io {
        broker: String,
        #[source]
        source: std::io::Error,
    },
    /// The broker's bytes do not parse as the response we asked for.
    #[error("malformed response from {broker}: {detail}")]
    Protocol { broker: String, detail: String },
    #[error("no answer within {0:?}")]
    Timeout(Duration),
    /// A setting the application gave is not usable.
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl ClientError {
    /// `None` for code 0 (no error).
    pub fn from_code(code: i16, message: Option<String>) -> Option<ClientError> {
        ResponseError::try_from_code(code).map(|error| ClientError::Kafka { error, message })
    }

    /// Whether the same request may succeed if sent again (after refreshing metadata, or
    /// finding the coordinator again, as the error suggests). Network trouble and timeouts are
    /// retriable; malformed responses and bad settings are not.
    pub fn is_retriable(&self) -> bool {
        match self {
            ClientError::Kafka { error, .. } => error.is_retriable(),
            ClientError::Io { .. } | ClientError::Timeout(_) => true,
            ClientError::Protocol { .. } | ClientError::Config(_) => false,
        }
    }

    /// A response that lacks the partition the request named.
    pub fn missing_partition(broker: &str, api: &str) -> ClientError {
        ClientError::Protocol {
            broker: broker.to_owned(),
            detail: format!("a {api} response without the partition"),
        }
    }

    /// The same error again (one failed batch fails each of its records).
    pub fn duplicate(&self) -> ClientError {
        match self {
            ClientError::Kafka { error, message } => ClientError::Kafka {
                error: *error,
                message: message.clone(),
            },
            ClientError::Io { broker, source } => ClientError::Io {
                broker: broker.clone(),
                source: std::io::Error::new(source.kind(), source.to_string()),
            },
            ClientError::Protocol { broker, detail } => ClientError::Protocol {
                broker: broker.clone(),
                detail: detail.clone(),
            },
            ClientError::Timeout(d) => ClientError::Timeout(*d),
            ClientError::Config(c) => ClientError::Config(c.clone()),
        }
    }

    /// The Kafka error code, if the broker sent one.
    pub fn code(&self) -> Option<i16> {
        match self {
            ClientError::Kafka { error, .. } => Some(error.code()),
            _ => None,
        }
    }

    /// The error asks for fresh metadata (a leader moved, a topic appeared or went).
    pub fn needs_metadata_refresh(&self) -> bool {
        matches!(
            self.code(),
            Some(3 | 5 | 6 | 74 | 75 | 100 | 103) // UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE,
                                                  // NOT_LEADER_OR_FOLLOWER, FENCED/UNKNOWN_LEADER_EPOCH,
                                                  // UNKNOWN_TOPIC_ID, INCONSISTENT_TOPIC_ID
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kafka_errors_with_their_retriability() {
        assert!(ClientError::from_code(0, None).is_none());
        let not_leader = ClientError::from_code(6, None).unwrap();
        assert!(not_leader.is_retriable() && not_leader.needs_metadata_refresh());
        let too_large = ClientError::from_code(10, Some("batch of 2 MB".into())).unwrap();
        assert!(!too_large.is_retriable());
        assert_eq!(too_large.code(), Some(10));
        let text = too_large.to_string();
        assert!(
            text.contains("MessageTooLarge") && text.contains("10") && text.contains("2 MB"),
            "{text}"
        );
        let unknown = ClientError::from_code(999, None).unwrap();
        assert!(!unknown.is_retriable());
        assert!(ClientError::Timeout(Duration::from_secs(1)).is_retriable());
        assert!(!ClientError::Config("acks=7".into()).is_retriable());
    }
}
