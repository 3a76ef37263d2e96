//! Reading the broker's Prometheus endpoint (`metrics.listener`) from a test.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// Sends `request` raw and returns the status and body; `None` if the broker closed or reset
/// the connection without a response.
pub fn http(address: &str, request: &[u8]) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(address).expect("connect to the metrics endpoint");
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    // The broker may answer (and close) before taking all of an oversized request.
    let _ = stream.write_all(request);
    let mut response = Vec::new();
    if stream.read_to_end(&mut response).is_err() && response.is_empty() {
        return None;
    }
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    assert!(head.contains("Connection: close"), "{head}");
    Some((status, body.to_owned()))
}

pub fn scrape(address: &str) -> String {
    let (status, body) = http(
        address,
        b"GET /metrics HTTP/1.1\r\nHost: test\r\nAccept: text/plain\r\n\r\n",
    )
    .expect("a response");
    assert_eq!(status, 200, "{body}");
    body
}

/// The sum of every sample named `name` whose labels include all of `labels`.
pub fn total(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| line.rsplit_once(' '))
        .filter(|(series, _)| {
            let series_name = series.split('{').next().unwrap_or_default();
            series_name == name
                && labels
                    .iter()
                    .all(|(key, value)| series.contains(&format!("{key}=\"{value}\"")))
        })
        .map(|(_, value)| value.parse::<f64>().expect("numeric sample"))
        .sum()
}
