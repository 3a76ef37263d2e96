//! ApiVersions: what this broker serves, answered in v0 for versions it does not know.

use kafka_protocol::messages::{self as m, ApiKey};

use super::Response;
use crate::protocol::frame::RequestHeader;
use crate::protocol::{self, error_code as code};

pub(super) fn api_versions(header: &RequestHeader) -> Response {
    let mut response = m::ApiVersionsResponse::default();
    for &(key, min, max) in protocol::SUPPORTED_APIS {
        let mut api = m::api_versions_response::ApiVersion::default();
        api.api_key = key as i16;
        api.min_version = min;
        api.max_version = max;
        response.api_keys.push(api);
    }
    let (_, _, max) = protocol::SUPPORTED_APIS
        .iter()
        .find(|(k, _, _)| *k == ApiKey::ApiVersions)
        .copied()
        .expect("ApiVersions is listed");
    let version = if header.api_version > max || header.api_version < 0 {
        // A version we do not know: answer in v0, which every client can read, with the list
        // of what we support, so the client retries with a version we share.
        response.error_code = code::UNSUPPORTED_VERSION;
        0
    } else {
        header.api_version
    };
    match protocol::encode_response(
        ApiKey::ApiVersions,
        version,
        header.correlation_id,
        &response,
    ) {
        Ok(bytes) => Response::Frame(bytes),
        Err(e) => Response::Close(format!("cannot encode ApiVersions: {e}")),
    }
}
