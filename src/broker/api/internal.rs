//! The cluster's own requests on the Kafka port (`cluster::wire`): Raft messages between
//! voters and brokers' calls on the controller. Both are served by shard 0, wherever the
//! connection landed.

use std::rc::Rc;
use std::time::Instant;

use bytes::BytesMut;

use super::Response;
use crate::broker::shard::{Shard, ShardReply, ShardRequest};
use crate::cluster::wire::{self, ControllerAnswer, ControllerCall};
use crate::protocol::frame::RequestHeader;
use crate::runtime;

thread_local! {
    /// When a refused peer was last logged, so a misconfigured peer does not flood the log.
    static LAST_REFUSAL_LOG: std::cell::Cell<Option<Instant>> = const { std::cell::Cell::new(None) };
}

pub(super) fn serve(
    shard: &Rc<Shard>,
    header: RequestHeader,
    body: BytesMut,
) -> Result<runtime::Task<Response>, String> {
    let shard = shard.clone();
    match header.api_key {
        wire::QUORUM_API_KEY => {
            let (peer, messages) = wire::decode_messages(&body)?;
            Ok(runtime::spawn_task(async move {
                let answer = match shard.call(0, ShardRequest::Quorum(peer, messages)).await {
                    ShardReply::Done => wire::encode_quorum_answer(wire::ANSWER_OK, ""),
                    ShardReply::Failed(why) => {
                        let now = Instant::now();
                        let quiet = LAST_REFUSAL_LOG.with(|last| {
                            let quiet = last
                                .get()
                                .is_some_and(|t| now.duration_since(t).as_secs() < 5);
                            if !quiet {
                                last.set(Some(now));
                            }
                            quiet
                        });
                        if !quiet {
                            tracing::error!(%why, "refusing a peer's quorum messages");
                        }
                        wire::encode_quorum_answer(wire::ANSWER_MISMATCH, &why)
                    }
                    _ => wire::encode_quorum_answer(wire::ANSWER_OK, ""),
                };
                Response::Frame(wire::response_frame(header.correlation_id, &answer).freeze())
            }))
        }
        wire::CONTROLLER_API_KEY => {
            let call: ControllerCall = wire::decode_json(&body)?;
            Ok(runtime::spawn_task(async move {
                let answer = match shard
                    .call(0, ShardRequest::Controller(Box::new(call)))
                    .await
                {
                    ShardReply::Controller(answer) => *answer,
                    ShardReply::Failed(why) => ControllerAnswer::Failed(why),
                    _ => ControllerAnswer::Failed("unexpected reply".into()),
                };
                Response::Frame(
                    wire::response_frame(header.correlation_id, &wire::encode_json(&answer))
                        .freeze(),
                )
            }))
        }
        other => Err(format!("unknown internal API key {other}")),
    }
}
