//! Request handlers, one file per Kafka API (or family): decode the request, do the work through
//! `ops` (locally or on the owning shard), encode the response for the request's version.
//! `start` is the dispatcher the connection calls for every frame.

mod api_versions;
mod cluster;
mod configs;
mod fetch;
mod group;
mod internal;
mod list_offsets;
mod metadata;
mod produce;
mod producer_id;
mod topics;

use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::{self as m, ApiKey};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};

use super::ops::{ControlOutcome, ControlRequest};
use super::shard::{Shard, ShardReply, ShardRequest};
use crate::protocol::fetch::Part;
use crate::protocol::frame::RequestHeader;
use crate::protocol::{self, produce as produce_codec};
use crate::runtime;
use crate::storage::Chunk;

pub use fetch::FETCH_WAIT_MS_MAX;

/// What the connection writes back for one request.
pub enum Response {
    /// acks=0 produce: nothing is sent.
    None,
    Frame(Bytes),
    Parts(Vec<Part<Chunk>>),
    /// The request cannot be answered; the connection is closed after earlier responses.
    Close(String),
}

fn ready(response: Response) -> runtime::Task<Response> {
    runtime::spawn_task(async move { response })
}

fn encoded<M: Encodable>(key: ApiKey, header: &RequestHeader, body: &M) -> Response {
    match protocol::encode_response(key, header.api_version, header.correlation_id, body) {
        Ok(bytes) => Response::Frame(bytes),
        Err(e) => Response::Close(format!("cannot encode {key:?} response: {e}")),
    }
}

fn decode<M: Decodable>(body: BytesMut, header: &RequestHeader) -> Result<M, String> {
    let mut bytes = body.freeze();
    M::decode(&mut bytes, header.api_version).map_err(|e| {
        format!(
            "malformed request (api key {}, version {}): {e}",
            header.api_key, header.api_version
        )
    })
}

pub(super) fn str_bytes(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_owned())
}

/// Starts serving one request; the returned task resolves to its response.
pub async fn start(
    shard: &Rc<Shard>,
    client_host: &Rc<str>,
    header: RequestHeader,
    mut frame: BytesMut,
) -> Result<runtime::Task<Response>, String> {
    if crate::cluster::wire::is_internal(header.api_key) {
        let body = frame.split_off(header.body_offset);
        return internal::serve(shard, header, body);
    }
    let key = ApiKey::try_from(header.api_key).map_err(|_| "unknown API key".to_string())?;
    if key == ApiKey::ApiVersions {
        return Ok(ready(api_versions::api_versions(&header)));
    }
    // Shard 0 listens before the broker has joined the cluster (the quorum's traffic shares
    // the port); clients' requests wait until it has. Other shards listen only after.
    if let Some(node) = shard.cluster.get() {
        if !node.is_ready() {
            let _ = node.wait_ready().await;
        }
    }
    let Some((min, max)) = protocol::served_range(key) else {
        return Err(format!("API {key:?} is not supported by this broker"));
    };
    if header.api_version < min || header.api_version > max {
        return Err(format!(
            "{key:?} version {} is not supported (this broker serves {min}..={max})",
            header.api_version
        ));
    }
    let body = frame.split_off(header.body_offset);
    let shard = shard.clone();
    Ok(match key {
        ApiKey::Produce => {
            let request = produce_codec::decode(body, header.api_version).map_err(|e| {
                format!(
                    "malformed produce request (version {}): {e}",
                    header.api_version
                )
            })?;
            let pending = produce::produce_start(&shard, request, header.api_version).await;
            runtime::spawn_task(async move {
                match pending.await {
                    None => Response::None,
                    Some(response) => encoded(key, &header, &response),
                }
            })
        }
        ApiKey::Fetch => {
            let request: m::FetchRequest = decode(body, &header)?;
            runtime::spawn_task(async move { fetch::fetch(&shard, &header, request).await })
        }
        ApiKey::ListOffsets => {
            let request: m::ListOffsetsRequest = decode(body, &header)?;
            runtime::spawn_task(async move {
                let response =
                    list_offsets::list_offsets(&shard, request, header.api_version).await;
                encoded(key, &header, &response)
            })
        }
        ApiKey::Metadata => {
            let request: m::MetadataRequest = decode(body, &header)?;
            runtime::spawn_task(async move {
                let response = metadata::metadata(&shard, request, header.api_version).await;
                encoded(key, &header, &response)
            })
        }
        ApiKey::CreateTopics => {
            let request: m::CreateTopicsRequest = decode(body, &header)?;
            runtime::spawn_task(async move {
                let response = topics::create_topics(&shard, request, header.api_version).await;
                encoded(key, &header, &response)
            })
        }
        ApiKey::DeleteTopics => {
            let request: m::DeleteTopicsRequest = decode(body, &header)?;
            runtime::spawn_task(async move {
                let response = topics::delete_topics(&shard, request, header.api_version).await;
                encoded(key, &header, &response)
            })
        }
        ApiKey::CreatePartitions => {
            let request: m::CreatePartitionsRequest = decode(body, &header)?;
            runtime::spawn_task(async move {
                let response = topics::create_partitions(&shard, request).await;
                encoded(key, &header, &response)
            })
        }
        ApiKey::DescribeConfigs => {
            let request: m::DescribeConfigsRequest = decode(body, &header)?;
            let response = configs::describe_configs(&shard, request);
            ready(encoded(key, &header, &response))
        }
        ApiKey::AlterConfigs => {
            let request: m::AlterConfigsRequest = decode(body, &header)?;
            runtime::spawn_task(async move {
                let response = configs::alter_configs(&shard, request).await;
                encoded(key, &header, &response)
            })
        }
        ApiKey::IncrementalAlterConfigs => {
            let request: m::IncrementalAlterConfigsRequest = decode(body, &header)?;
            runtime::spawn_task(async move {
                let response = configs::incremental_alter_configs(&shard, request).await;
                encoded(key, &header, &response)
            })
        }
        ApiKey::InitProducerId => {
            let request: m::InitProducerIdRequest = decode(body, &header)?;
            runtime::spawn_task(async move {
                let response = producer_id::init_producer_id(&shard, request).await;
                encoded(key, &header, &response)
            })
        }
        ApiKey::DescribeCluster => {
            let request: m::DescribeClusterRequest = decode(body, &header)?;
            ready(encoded(
                key,
                &header,
                &cluster::describe_cluster(&shard, &request, header.api_version),
            ))
        }
        ApiKey::DescribeQuorum => {
            let _request: m::DescribeQuorumRequest = decode(body, &header)?;
            runtime::spawn_task(async move {
                let response = cluster::describe_quorum(&shard, header.api_version).await;
                encoded(key, &header, &response)
            })
        }
        ApiKey::FindCoordinator
        | ApiKey::JoinGroup
        | ApiKey::SyncGroup
        | ApiKey::Heartbeat
        | ApiKey::LeaveGroup
        | ApiKey::OffsetCommit
        | ApiKey::OffsetFetch
        | ApiKey::ListGroups
        | ApiKey::DescribeGroups
        | ApiKey::DeleteGroups
        | ApiKey::OffsetDelete
        | ApiKey::ConsumerGroupHeartbeat
        | ApiKey::ConsumerGroupDescribe => {
            let request = group::decode_request(key, body, &header)?;
            let client_host = client_host.to_string();
            runtime::spawn_task(
                async move { group::serve(&shard, request, &header, client_host).await },
            )
        }
        other => return Err(format!("API {other:?} is not supported by this broker")),
    })
}

pub(super) async fn control(shard: &Rc<Shard>, request: ControlRequest) -> Vec<ControlOutcome> {
    match shard.call(0, ShardRequest::Control(request)).await {
        ShardReply::Control(outcomes) => outcomes,
        _ => Vec::new(),
    }
}

pub(super) fn advertised(shard: &Shard) -> (String, u16) {
    crate::cluster::node::advertised(&shard.config, shard.port.get())
}
