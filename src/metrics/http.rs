//! Just enough HTTP/1.1 for a scrape: parse a request head, route it, write one response and
//! close. Pure functions over byte slices; the endpoint (`broker::metrics`) does the I/O.
//!
//! Only the request line matters (method and path); header lines are checked for shape and
//! otherwise ignored, and a body is never read (every answered method has none, and the
//! connection closes after the response anyway). Every input gives an answer or an error,
//! never a panic.

/// The largest request head accepted, request line and headers together. A scraper sends a
/// few hundred bytes; anything near this is not a scraper.
pub const REQUEST_HEAD_BYTES_MAX: usize = 8 << 10;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine<'a> {
    pub method: &'a str,
    /// The path without its query string.
    pub path: &'a str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeadError {
    /// No end of head within [`REQUEST_HEAD_BYTES_MAX`].
    TooLarge,
    Malformed(&'static str),
}

/// Parses the head at the start of `buffer`. `Ok(None)`: not complete yet, read more.
pub fn parse_request_head(buffer: &[u8]) -> Result<Option<RequestLine<'_>>, HeadError> {
    let Some(end) = find_head_end(buffer) else {
        if buffer.len() >= REQUEST_HEAD_BYTES_MAX {
            return Err(HeadError::TooLarge);
        }
        // A request line that is already wrong need not wait for the rest of the head.
        match buffer.iter().position(|&b| b == b'\n') {
            Some(line_end) => {
                parse_request_line(trim_cr(&buffer[..line_end]))?;
            }
            None => {
                let method_end = buffer
                    .iter()
                    .position(|&b| b == b' ')
                    .unwrap_or(buffer.len());
                if buffer[..method_end].iter().any(|&b| !is_token_byte(b)) {
                    return Err(HeadError::Malformed("bad method"));
                }
            }
        }
        return Ok(None);
    };
    if end > REQUEST_HEAD_BYTES_MAX {
        return Err(HeadError::TooLarge);
    }
    let head = &buffer[..end];
    let mut lines = head.split(|&b| b == b'\n').map(trim_cr);
    let request_line = lines.next().unwrap_or_default();
    let parsed = parse_request_line(request_line)?;
    for line in lines.filter(|line| !line.is_empty()) {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(HeadError::Malformed("header line without a colon"));
        };
        if colon == 0 || line[..colon].iter().any(|b| !is_token_byte(*b)) {
            return Err(HeadError::Malformed("bad header name"));
        }
        if line.iter().any(|&b| b == 0 || b == b'\r') {
            return Err(HeadError::Malformed("control byte in a header"));
        }
    }
    Ok(Some(parsed))
}

/// Where the head ends (after the blank line): `\r\n\r\n`, or a bare `\n\n` from a hand-typed
/// request.
fn find_head_end(buffer: &[u8]) -> Option<usize> {
    let limit = buffer.len().min(REQUEST_HEAD_BYTES_MAX + 4);
    let buffer = &buffer[..limit];
    for index in 0..buffer.len() {
        if buffer[index] != b'\n' {
            continue;
        }
        let rest = &buffer[index + 1..];
        if rest.starts_with(b"\n") {
            return Some(index + 2);
        }
        if rest.starts_with(b"\r\n") {
            return Some(index + 3);
        }
    }
    None
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn parse_request_line(line: &[u8]) -> Result<RequestLine<'_>, HeadError> {
    let line =
        std::str::from_utf8(line).map_err(|_| HeadError::Malformed("request line is not UTF-8"))?;
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(HeadError::Malformed(
            "request line is not METHOD TARGET VERSION",
        ));
    };
    if method.is_empty() || !method.bytes().all(is_token_byte) {
        return Err(HeadError::Malformed("bad method"));
    }
    if !target.starts_with('/') || target.bytes().any(|b| b <= b' ' || b == 0x7f) {
        return Err(HeadError::Malformed("target is not an absolute path"));
    }
    if version != "HTTP/1.1" && version != "HTTP/1.0" {
        return Err(HeadError::Malformed("not HTTP/1.0 or HTTP/1.1"));
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    Ok(RequestLine { method, path })
}

/// RFC 9110 `tchar`.
fn is_token_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&byte)
}

/// A response to write: status, content type and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
}

/// What to answer a request head with, given the body of `GET /metrics` to call for.
pub enum Route {
    Metrics,
    Answer(Reply),
}

/// The endpoint's routing: `GET /metrics` only.
pub fn route(head: Result<RequestLine<'_>, HeadError>) -> Route {
    let text = |status, body: &str| {
        Route::Answer(Reply {
            status,
            content_type: "text/plain; charset=utf-8",
            body: format!("{body}\n"),
        })
    };
    match head {
        Err(HeadError::TooLarge) => text(431, "request head too large"),
        Err(HeadError::Malformed(reason)) => text(400, reason),
        Ok(line) if line.path != "/metrics" => text(404, "not found; try GET /metrics"),
        Ok(line) if line.method != "GET" => text(405, "only GET is allowed"),
        Ok(_) => Route::Metrics,
    }
}

/// The whole response, head and body, with `Connection: close`.
pub fn encode_reply(reply: &Reply) -> Vec<u8> {
    let reason = match reply.status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Error",
    };
    let allow = if reply.status == 405 {
        "Allow: GET\r\n"
    } else {
        ""
    };
    let mut out = format!(
        "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nContent-Length: {}\r\n{allow}Connection: close\r\n\r\n",
        reply.status,
        reply.content_type,
        reply.body.len()
    )
    .into_bytes();
    out.extend_from_slice(reply.body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(input: &[u8]) -> Result<Option<RequestLine<'_>>, HeadError> {
        parse_request_head(input)
    }

    #[test]
    fn parses_a_scrape() {
        let request = b"GET /metrics HTTP/1.1\r\nHost: localhost:9644\r\nUser-Agent: Prometheus/2.53\r\nAccept: text/plain;version=0.0.4\r\n\r\n";
        assert_eq!(
            parsed(request),
            Ok(Some(RequestLine {
                method: "GET",
                path: "/metrics"
            }))
        );
        // Bare newlines and a query string.
        assert_eq!(
            parsed(b"GET /metrics?x=1 HTTP/1.0\n\n"),
            Ok(Some(RequestLine {
                method: "GET",
                path: "/metrics"
            }))
        );
    }

    #[test]
    fn an_unfinished_head_asks_for_more() {
        assert_eq!(parsed(b""), Ok(None));
        assert_eq!(parsed(b"GET /metr"), Ok(None));
        assert_eq!(parsed(b"GET /metrics HTTP/1.1\r\nHost: x\r\n"), Ok(None));
    }

    #[test]
    fn malformed_heads_are_errors() {
        for input in [
            &b"GET\r\n\r\n"[..],
            b"GET /metrics\r\n\r\n",
            b"GET /metrics HTTP/1.1 extra\r\n\r\n",
            b"GET  /metrics HTTP/1.1\r\n\r\n",
            b"GET metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/2\r\n\r\n",
            b"G(T /metrics HTTP/1.1\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
            b"GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n",
            b"GET /m\xffx HTTP/1.1\r\n\r\n",
            b"\r\n\r\n",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\n\n",
        ] {
            assert!(
                matches!(parsed(input), Err(HeadError::Malformed(_))),
                "{:?} -> {:?}",
                String::from_utf8_lossy(input),
                parsed(input)
            );
        }
        // A wrong request line is caught before the head is complete.
        assert!(matches!(
            parsed(b"\x00\x00\x00\x10kafka?\n"),
            Err(HeadError::Malformed(_))
        ));
        assert!(matches!(
            parsed(b"\x00\x00\x00\x10kafka"),
            Err(HeadError::Malformed(_))
        ));
    }

    #[test]
    fn oversized_heads_are_refused() {
        let mut big = b"GET /metrics HTTP/1.1\r\n".to_vec();
        while big.len() < REQUEST_HEAD_BYTES_MAX {
            big.extend_from_slice(b"X-Padding: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
        }
        assert_eq!(parsed(&big), Err(HeadError::TooLarge));
        big.extend_from_slice(b"\r\n");
        assert_eq!(parsed(&big), Err(HeadError::TooLarge));
        // No newline at all.
        assert_eq!(
            parsed(&vec![b'a'; REQUEST_HEAD_BYTES_MAX]),
            Err(HeadError::TooLarge)
        );
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // A cheap deterministic fuzz: every prefix of a few inputs, and pseudo-random bytes.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        for _ in 0..2_000 {
            let length = (seed % 300) as usize;
            let bytes: Vec<u8> = (0..length)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    // Mostly printable, with newlines, so some inputs get past the first line.
                    match seed % 10 {
                        0 => b'\n',
                        1 => b'\r',
                        2 => b' ',
                        _ => (seed >> 8) as u8,
                    }
                })
                .collect();
            let _ = route(parsed(&bytes).and_then(|h| h.ok_or(HeadError::TooLarge)));
        }
        let good = b"GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n";
        for end in 0..good.len() {
            assert!(parsed(&good[..end]).is_ok(), "prefix {end}");
        }
    }

    #[test]
    fn routes() {
        let line = |method, path| Ok(RequestLine { method, path });
        assert!(matches!(route(line("GET", "/metrics")), Route::Metrics));
        let status = |route: Route| match route {
            Route::Answer(reply) => reply.status,
            Route::Metrics => 200,
        };
        assert_eq!(status(route(line("GET", "/nope"))), 404);
        assert_eq!(status(route(line("POST", "/metrics"))), 405);
        assert_eq!(status(route(Err(HeadError::TooLarge))), 431);
        assert_eq!(status(route(Err(HeadError::Malformed("x")))), 400);
    }

    #[test]
    fn replies_close_and_say_their_length() {
        let reply = Reply {
            status: 405,
            content_type: "text/plain",
            body: "no\n".into(),
        };
        let text = String::from_utf8(encode_reply(&reply)).expect("utf-8");
        assert!(text.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"));
        assert!(text.contains("Content-Length: 3\r\n"));
        assert!(text.contains("Allow: GET\r\n"));
        assert!(text.contains("Connection: close\r\n\r\nno\n"));
    }
}
