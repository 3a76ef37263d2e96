//! Produce request bodies at every served version: record sets, when found, lie inside the body.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&version, body)) = data.split_first() else {
        return;
    };
    let version = 3 + i16::from(version % 11);
    if let Ok(request) = shardlog::protocol::produce::decode(bytes::BytesMut::from(body), version) {
        let total: usize = request
            .topics
            .iter()
            .flat_map(|t| &t.partitions)
            .filter_map(|p| p.records.as_ref().map(|r| r.len()))
            .sum();
        assert!(total <= body.len());
    }
});
