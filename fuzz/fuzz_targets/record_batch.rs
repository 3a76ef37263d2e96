//! Record sets as a client could send them: validation never panics, and what it accepts
//! covers the input exactly with CRC-valid batches.
#![no_main]

use libfuzzer_sys::fuzz_target;
use shardlog::protocol::batch;

fuzz_target!(|data: &[u8]| {
    if let Ok(headers) = batch::validate_record_set(data, 1 << 20) {
        let total: usize = headers.iter().map(|h| h.size).sum();
        assert_eq!(total, data.len());
        let mut position = 0;
        for header in headers {
            assert!(batch::parse_checked(&data[position..]).is_ok());
            position += header.size;
        }
    }
    let _ = batch::parse_header(data);
});
