//! Primitive Kafka wire types: a bounds-checked reader over a byte slice and the writers the
//! hand-written codecs need. Pure: no I/O, no allocation beyond what the caller asks for.

use bytes::BufMut;

/// Why a decode failed, and where.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("truncated at byte {at}: needed {needed} more bytes, {available} left")]
    Truncated {
        at: usize,
        needed: usize,
        available: usize,
    },
    #[error("invalid {what} at byte {at}")]
    Invalid { what: &'static str, at: usize },
}

pub type DecodeResult<T> = Result<T, DecodeError>;

/// Reads Kafka primitives from a slice, tracking the position for error reports and for
/// locating sub-slices (record sets) without copying them.
pub struct Reader<'a> {
    bytes: &'a [u8],
    position: usize,
}

impl<'a> Reader<'a> {
    pub fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, position: 0 }
    }

    pub fn position(&self) -> usize {
        self.position
    }

    pub fn remaining(&self) -> usize {
        self.bytes.len() - self.position
    }

    pub fn take(&mut self, count: usize) -> DecodeResult<&'a [u8]> {
        if self.remaining() < count {
            return Err(DecodeError::Truncated {
                at: self.position,
                needed: count,
                available: self.remaining(),
            });
        }
        let slice = &self.bytes[self.position..self.position + count];
        self.position += count;
        Ok(slice)
    }

    pub fn i8(&mut self) -> DecodeResult<i8> {
        Ok(self.take(1)?[0] as i8)
    }

    pub fn i16(&mut self) -> DecodeResult<i16> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().expect("2")))
    }

    pub fn i32(&mut self) -> DecodeResult<i32> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().expect("4")))
    }

    pub fn i64(&mut self) -> DecodeResult<i64> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().expect("8")))
    }

    pub fn uuid(&mut self) -> DecodeResult<[u8; 16]> {
        Ok(self.take(16)?.try_into().expect("16"))
    }

    pub fn unsigned_varint(&mut self) -> DecodeResult<u32> {
        let start = self.position;
        let mut value: u32 = 0;
        for shift in (0..35).step_by(7) {
            let byte = self.take(1)?[0];
            value |= u32::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError::Invalid {
            what: "varint",
            at: start,
        })
    }

    /// A length that may be null: `Ok(None)` for null. Compact lengths are stored plus one.
    fn length(&mut self, compact: bool, what: &'static str) -> DecodeResult<Option<usize>> {
        let at = self.position;
        if compact {
            let raw = self.unsigned_varint()?;
            Ok(raw.checked_sub(1).map(|n| n as usize))
        } else {
            let raw = self.i32()?;
            match raw {
                -1 => Ok(None),
                n if n < 0 => Err(DecodeError::Invalid { what, at }),
                n => Ok(Some(n as usize)),
            }
        }
    }

    pub fn nullable_string(&mut self, compact: bool) -> DecodeResult<Option<&'a str>> {
        let at = self.position;
        let length = if compact {
            self.length(true, "string length")?
        } else {
            match self.i16()? {
                -1 => None,
                n if n < 0 => {
                    return Err(DecodeError::Invalid {
                        what: "string length",
                        at,
                    })
                }
                n => Some(n as usize),
            }
        };
        match length {
            None => Ok(None),
            Some(n) => {
                let bytes = self.take(n)?;
                std::str::from_utf8(bytes)
                    .map(Some)
                    .map_err(|_| DecodeError::Invalid { what: "utf-8", at })
            }
        }
    }

    pub fn string(&mut self, compact: bool) -> DecodeResult<&'a str> {
        let at = self.position;
        self.nullable_string(compact)?.ok_or(DecodeError::Invalid {
            what: "null string",
            at,
        })
    }

    /// Returns the byte range of a nullable bytes field, relative to the reader's slice.
    pub fn nullable_bytes_range(
        &mut self,
        compact: bool,
    ) -> DecodeResult<Option<std::ops::Range<usize>>> {
        match self.length(compact, "bytes length")? {
            None => Ok(None),
            Some(n) => {
                let start = self.position;
                self.take(n)?;
                Ok(Some(start..start + n))
            }
        }
    }

    /// Array length; null arrays read as empty.
    pub fn array_length(&mut self, compact: bool) -> DecodeResult<usize> {
        let at = self.position;
        let n = self.length(compact, "array length")?.unwrap_or(0);
        // Each element takes at least one byte: a larger count is a lie, not a reason to allocate.
        if n > self.remaining() {
            return Err(DecodeError::Invalid {
                what: "array length",
                at,
            });
        }
        Ok(n)
    }

    pub fn skip_tagged_fields(&mut self) -> DecodeResult<()> {
        let count = self.unsigned_varint()?;
        for _ in 0..count {
            self.unsigned_varint()?;
            let size = self.unsigned_varint()? as usize;
            self.take(size)?;
        }
        Ok(())
    }
}

pub fn put_unsigned_varint(buf: &mut impl BufMut, mut value: u32) {
    while value >= 0x80 {
        buf.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    buf.put_u8(value as u8);
}

pub fn put_string(buf: &mut impl BufMut, value: &str, compact: bool) {
    if compact {
        put_unsigned_varint(buf, value.len() as u32 + 1);
    } else {
        buf.put_i16(value.len() as i16);
    }
    buf.put_slice(value.as_bytes());
}

pub fn put_array_length(buf: &mut impl BufMut, length: usize, compact: bool) {
    if compact {
        put_unsigned_varint(buf, length as u32 + 1);
    } else {
        buf.put_i32(length as i32);
    }
}

pub fn put_null_array(buf: &mut impl BufMut, compact: bool) {
    if compact {
        put_unsigned_varint(buf, 0);
    } else {
        buf.put_i32(-1);
    }
}

pub fn put_bytes_length(buf: &mut impl BufMut, length: usize, compact: bool) {
    put_array_length(buf, length, compact)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_round_trip() {
        for value in [0u32, 1, 127, 128, 300, 16_383, 16_384, u32::MAX] {
            let mut buf = Vec::new();
            put_unsigned_varint(&mut buf, value);
            assert_eq!(Reader::new(&buf).unsigned_varint(), Ok(value));
        }
    }

    #[test]
    fn truncation_reports_position_and_need() {
        let mut reader = Reader::new(&[0, 1, 2]);
        reader.i16().unwrap();
        assert_eq!(
            reader.i32(),
            Err(DecodeError::Truncated {
                at: 2,
                needed: 4,
                available: 1
            })
        );
    }

    #[test]
    fn oversized_array_count_is_rejected_without_allocating() {
        let mut reader = Reader::new(&[0x7f, 0xff, 0xff, 0xff]);
        assert!(matches!(
            reader.array_length(false),
            Err(DecodeError::Invalid { .. })
        ));
    }
}
