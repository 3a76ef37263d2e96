//! Value checks shared by broker and topic keys: integers in a range, limits where `-1` is
//! unlimited, booleans, ratios and Kafka's enumerated strings. Each error names the key, the
//! value and what was expected.

use std::sync::Arc;

use super::topic::{CleanupPolicy, TimestampType, UNLIMITED};
use super::{invalid, ConfigError};

/// Kafka's default for `flush.messages` and `flush.ms`. It is reported for an unset interval
/// and read back as unset, so a DescribeConfigs result fed into AlterConfigs does not silently
/// switch a topic away from syncing every ack.
pub(super) const UNSET_FLUSH_INTERVAL: i64 = i64::MAX;

pub(super) fn parse_integer<T: TryFrom<i128>>(
    key: &str,
    value: &str,
    min: i128,
    max: i128,
) -> Result<T, ConfigError> {
    parse_integer_expecting(key, value, min, max, || {
        format!("an integer between {min} and {max}")
    })
}

pub(super) fn parse_integer_expecting<T: TryFrom<i128>>(
    key: &str,
    value: &str,
    min: i128,
    max: i128,
    expected: impl FnOnce() -> String,
) -> Result<T, ConfigError> {
    value
        .trim()
        .parse::<i128>()
        .ok()
        .filter(|number| (min..=max).contains(number))
        .and_then(|number| T::try_from(number).ok())
        .ok_or_else(|| invalid(key, value, expected()))
}

/// A size or duration where `-1` means unlimited; other negatives are
/// rejected because Kafka's meaning for them is accidental.
pub(super) fn parse_limit<T: TryFrom<i128>>(
    key: &str,
    value: &str,
    unit: i64,
) -> Result<T, ConfigError> {
    let max = i128::from(i64::MAX / unit);
    parse_integer_expecting(key, value, -1, max, || {
        format!("-1 (unlimited) or an integer between 0 and {max}")
    })
}

/// A retention in minutes or hours; `-1` stays unlimited rather than
/// becoming `-60000`.
pub(super) fn parse_limit_in_units(
    key: &str,
    value: &str,
    unit_ms: i64,
) -> Result<i64, ConfigError> {
    let max = i128::from(i32::MAX);
    let count: i64 = parse_integer_expecting(key, value, -1, max, || {
        format!("-1 (unlimited) or an integer between 0 and {max}")
    })?;
    Ok(if count == UNLIMITED {
        UNLIMITED
    } else {
        count.saturating_mul(unit_ms)
    })
}

pub(super) fn parse_flush_interval(
    key: &str,
    value: &str,
    min: i128,
) -> Result<Option<u64>, ConfigError> {
    let interval: u64 = parse_integer(key, value, min, i64::MAX.into())?;
    Ok(Some(interval).filter(|&interval| interval != UNSET_FLUSH_INTERVAL as u64))
}

pub(super) fn parse_boolean(key: &str, value: &str) -> Result<bool, ConfigError> {
    let trimmed = value.trim();
    if trimmed.eq_ignore_ascii_case("true") {
        Ok(true)
    } else if trimmed.eq_ignore_ascii_case("false") {
        Ok(false)
    } else {
        Err(invalid(key, value, "true or false"))
    }
}

pub(super) fn parse_rate(key: &str, value: &str) -> Result<f64, ConfigError> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|rate| rate.is_finite() && *rate > 0.0)
        .ok_or_else(|| invalid(key, value, "a positive number of bytes per second"))
}

pub(super) fn parse_ratio(key: &str, value: &str) -> Result<f64, ConfigError> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|ratio| (0.0..=1.0).contains(ratio))
        .ok_or_else(|| invalid(key, value, "a number between 0 and 1"))
}

pub(super) fn parse_timestamp_type(key: &str, value: &str) -> Result<TimestampType, ConfigError> {
    match value.trim() {
        "CreateTime" => Ok(TimestampType::CreateTime),
        "LogAppendTime" => Ok(TimestampType::LogAppendTime),
        _ => Err(invalid(key, value, "CreateTime or LogAppendTime")),
    }
}

pub(super) fn parse_cleanup_policy(key: &str, value: &str) -> Result<CleanupPolicy, ConfigError> {
    let mut policy = CleanupPolicy {
        delete: false,
        compact: false,
    };
    for item in value.split(',').map(str::trim) {
        match item {
            "delete" => policy.delete = true,
            "compact" => policy.compact = true,
            _ => return Err(invalid(key, value, "delete, compact or compact,delete")),
        }
    }
    Ok(policy)
}

/// Kafka's `MetadataVersionValidator`: a release such as `0.10.0`, `2.8` or `3.0-IV1`.
pub(super) fn parse_version(key: &str, value: &str) -> Result<Arc<str>, ConfigError> {
    let trimmed = value.trim();
    let (release, iv) = match trimmed.split_once("-IV") {
        Some((release, iv)) => (release, Some(iv)),
        None => (trimmed, None),
    };
    let parts: Vec<&str> = release.split('.').collect();
    let numeric = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let valid = (2..=4).contains(&parts.len())
        && parts.iter().all(|part| numeric(part))
        && iv.is_none_or(numeric);
    if valid {
        Ok(Arc::from(trimmed))
    } else {
        Err(invalid(
            key,
            value,
            "a Kafka version such as 0.10.0, 2.8 or 3.0-IV1",
        ))
    }
}

/// Kafka's `ThrottledReplicaListValidator`: empty, `*`, or `partition:broker` pairs.
pub(super) fn parse_throttled_replicas(key: &str, value: &str) -> Result<Arc<str>, ConfigError> {
    let trimmed = value.trim();
    let numeric = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    let valid = trimmed.is_empty()
        || trimmed == "*"
        || trimmed.split(',').all(|pair| {
            pair.trim()
                .split_once(':')
                .is_some_and(|(partition, broker)| {
                    numeric(partition.trim()) && numeric(broker.trim())
                })
        });
    if valid {
        Ok(Arc::from(trimmed))
    } else {
        Err(invalid(
            key,
            value,
            "a list of partition:broker pairs such as 0:101,1:102, or *",
        ))
    }
}
