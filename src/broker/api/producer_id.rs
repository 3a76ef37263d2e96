//! InitProducerId for idempotent producers: a producer id that was never given out before
//! (allocated by the controller), or the same id with the next epoch when a producer asks to
//! bump its epoch (KIP-360). Transactions are not served yet.

use std::rc::Rc;

use kafka_protocol::messages::{self as m, ProducerId};

use crate::broker::shard::{Shard, ShardReply, ShardRequest};
use crate::protocol::error_code as code;

pub(super) async fn init_producer_id(
    shard: &Rc<Shard>,
    request: m::InitProducerIdRequest,
) -> m::InitProducerIdResponse {
    let mut response = m::InitProducerIdResponse::default();
    if request
        .transactional_id
        .as_ref()
        .is_some_and(|id| id.0.is_empty())
    {
        // Kafka's answer to an empty transactional id (null means "not transactional").
        response.error_code = code::INVALID_REQUEST;
        return response;
    }
    if request.transactional_id.is_some() {
        // No transaction coordinator yet: a transactional producer is refused at once rather
        // than left retrying for a coordinator that never comes.
        response.error_code = code::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        return response;
    }
    let (id, epoch) = (request.producer_id.0, request.producer_epoch);
    if id >= 0 && (0..i16::MAX - 1).contains(&epoch) {
        response.producer_id = ProducerId(id);
        response.producer_epoch = epoch + 1;
        return response;
    }
    match shard.call(0, ShardRequest::AllocateProducerId).await {
        ShardReply::ProducerId(Ok(id)) => {
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        ShardReply::ProducerId(Err(reason)) => {
            tracing::error!(%reason, "cannot allocate a producer id");
            response.error_code = code::KAFKA_STORAGE_ERROR;
        }
        _ => response.error_code = code::COORDINATOR_NOT_AVAILABLE,
    }
    response
}
