//! Framing and request headers: any bytes give a frame, "need more", or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buffer = bytes::BytesMut::from(data);
    while let Ok(Some(frame)) = shardlog::protocol::frame::split_frame(&mut buffer, 1 << 20) {
        if let Ok(header) = shardlog::protocol::frame::parse_request_header(&frame) {
            assert!(header.body_offset <= frame.len());
        }
    }
});
