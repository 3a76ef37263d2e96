//! Length-prefixed framing and the request header.
//!
//! `split_frame` tells "wait for more bytes" (`Ok(None)`) apart from "malformed" (`Err`), and
//! checks the declared size against the limit before any byte of the body is buffered.

use bytes::BytesMut;

use super::wire::{DecodeError, Reader};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size} bytes exceeds socket.request.max.bytes {limit}")]
    TooLarge { size: usize, limit: usize },
    #[error("negative frame size {0}")]
    Negative(i32),
}

/// Takes one whole frame (without its 4-byte size) off the front of `buffer`.
pub fn split_frame(buffer: &mut BytesMut, limit: usize) -> Result<Option<BytesMut>, FrameError> {
    if buffer.len() < 4 {
        return Ok(None);
    }
    let declared = i32::from_be_bytes(buffer[..4].try_into().expect("4 bytes"));
    if declared < 0 {
        return Err(FrameError::Negative(declared));
    }
    let size = declared as usize;
    if size > limit {
        return Err(FrameError::TooLarge { size, limit });
    }
    if buffer.len() < 4 + size {
        return Ok(None);
    }
    let mut frame = buffer.split_to(4 + size);
    let _ = frame.split_to(4);
    Ok(Some(frame))
}

/// How many more bytes the frame at the front of `buffer` needs, if its size is known.
pub fn bytes_wanted(buffer: &[u8]) -> Option<usize> {
    if buffer.len() < 4 {
        return None;
    }
    let size = i32::from_be_bytes(buffer[..4].try_into().expect("4 bytes")).max(0) as usize;
    Some((4 + size).saturating_sub(buffer.len()))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHeader {
    pub api_key: i16,
    pub api_version: i16,
    pub correlation_id: i32,
    pub client_id: Option<String>,
    /// Where the request body starts in the frame.
    pub body_offset: usize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("request header: {0}")]
    Decode(#[from] DecodeError),
    #[error("unknown API key {api_key} (correlation id {correlation_id})")]
    UnknownApi { api_key: i16, correlation_id: i32 },
}

/// Parses the request header. Header v2 (tagged fields after the client id) is used when the
/// request version is a flexible one, as the API's schema says.
pub fn parse_request_header(frame: &[u8]) -> Result<RequestHeader, HeaderError> {
    let mut reader = Reader::new(frame);
    let api_key = reader.i16()?;
    let api_version = reader.i16()?;
    let correlation_id = reader.i32()?;
    let header_version = if crate::cluster::wire::is_internal(api_key) {
        // The cluster's own requests: header v1 (no tagged fields).
        1
    } else {
        let Ok(key) = kafka_protocol::messages::ApiKey::try_from(api_key) else {
            return Err(HeaderError::UnknownApi {
                api_key,
                correlation_id,
            });
        };
        key.request_header_version(api_version)
    };
    let client_id = reader.nullable_string(false)?.map(str::to_owned);
    if header_version >= 2 {
        reader.skip_tagged_fields()?;
    }
    Ok(RequestHeader {
        api_key,
        api_version,
        correlation_id,
        client_id,
        body_offset: reader.position(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn waits_for_whole_frame_then_splits() {
        let mut buf = BytesMut::new();
        buf.put_i32(3);
        buf.put_slice(&[1, 2]);
        assert_eq!(split_frame(&mut buf, 100), Ok(None));
        assert_eq!(bytes_wanted(&buf), Some(1));
        buf.put_slice(&[3, 9]);
        assert_eq!(
            split_frame(&mut buf, 100).unwrap().unwrap().as_ref(),
            &[1, 2, 3]
        );
        assert_eq!(buf.as_ref(), &[9]);
    }

    #[test]
    fn oversized_and_negative_frames_are_errors() {
        let mut buf = BytesMut::new();
        buf.put_i32(101);
        assert_eq!(
            split_frame(&mut buf, 100),
            Err(FrameError::TooLarge {
                size: 101,
                limit: 100
            })
        );
        let mut buf = BytesMut::new();
        buf.put_i32(-5);
        assert_eq!(split_frame(&mut buf, 100), Err(FrameError::Negative(-5)));
    }

    #[test]
    fn header_matches_library_encoding() {
        use kafka_protocol::messages::{ApiKey, RequestHeader as Lib};
        use kafka_protocol::protocol::{Encodable, StrBytes};
        for (key, version) in [
            (ApiKey::Metadata, 1),
            (ApiKey::Metadata, 12),
            (ApiKey::Produce, 9),
        ] {
            let mut lib = Lib::default();
            lib.request_api_key = key as i16;
            lib.request_api_version = version;
            lib.correlation_id = 77;
            lib.client_id = Some(StrBytes::from_static_str("client"));
            let mut buf = BytesMut::new();
            lib.encode(&mut buf, key.request_header_version(version))
                .unwrap();
            let end = buf.len();
            buf.put_slice(b"body");
            let parsed = parse_request_header(&buf).unwrap();
            assert_eq!(parsed.api_version, version);
            assert_eq!(parsed.correlation_id, 77);
            assert_eq!(parsed.client_id.as_deref(), Some("client"));
            assert_eq!(parsed.body_offset, end);
        }
    }

    #[test]
    fn unknown_api_key_is_named() {
        let mut buf = BytesMut::new();
        buf.put_i16(999);
        buf.put_i16(0);
        buf.put_i32(5);
        buf.put_i16(-1);
        assert_eq!(
            parse_request_header(&buf),
            Err(HeaderError::UnknownApi {
                api_key: 999,
                correlation_id: 5
            })
        );
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_headers_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..64)) {
            let _ = parse_request_header(&data);
            let mut buf = BytesMut::from(&data[..]);
            let _ = split_frame(&mut buf, 1 << 20);
        }
    }
}
