//! Records of `__consumer_offsets` as a damaged log could hold them: decoding never panics,
//! and what decodes re-encodes to bytes that decode to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardlog::broker::group::records;

fuzz_target!(|data: &[u8]| {
    if let Ok(key) = records::decode_key(data) {
        assert_eq!(records::decode_key(&records::encode_key(&key)).unwrap(), key);
    }
    if let Ok(offset) = records::decode_offset(data) {
        assert_eq!(records::decode_offset(&records::encode_offset(&offset)).unwrap(), offset);
    }
    if let Ok(group) = records::decode_group(data) {
        assert_eq!(records::decode_group(&records::encode_group(&group)).unwrap(), group);
    }
});
