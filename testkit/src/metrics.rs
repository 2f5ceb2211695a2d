//! `/metrics` of a node (both node types serve it through `telemetry`): fetched over plain
//! HTTP and read with a Prometheus text parser.

use std::io::{Read as _, Write as _};
use std::time::Duration;

use prometheus_parse::{Sample, Scrape, Value};

/// One plain HTTP/1.1 GET; returns (status line, content type, body).
pub fn http_get(port: u16, path: &str) -> (String, String, String) {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP head");
    let status = head.lines().next().unwrap_or_default().to_owned();
    let content_type = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-type")
                .then(|| value.trim().to_owned())
        })
        .unwrap_or_default();
    (status, content_type, body.to_owned())
}

/// Scrapes and parses `/metrics` on `port`.
pub fn scrape(port: u16) -> Scrape {
    let (status, content_type, body) = http_get(port, "/metrics");
    assert!(status.contains(" 200 "), "{status}");
    assert!(
        content_type.starts_with("application/openmetrics-text"),
        "{content_type}"
    );
    assert!(
        body.ends_with("# EOF\n"),
        "OpenMetrics text ends with # EOF"
    );
    Scrape::parse(body.lines().map(|line| Ok(line.to_owned()))).expect("exposition parses")
}

/// A counter's or gauge's value (the parser leaves OpenMetrics `_total` counters untyped).
pub fn number(sample: &Sample) -> f64 {
    match sample.value {
        Value::Counter(value) | Value::Gauge(value) | Value::Untyped(value) => value,
        ref other => panic!("{}: not a number: {other:?}", sample.metric),
    }
}

pub fn label<'a>(sample: &'a Sample, name: &str) -> &'a str {
    sample.labels.get(name).unwrap_or("")
}

/// Samples named `metric` whose labels include every `(name, value)` of `labels`.
pub fn series<'a>(scrape: &'a Scrape, metric: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    scrape
        .samples
        .iter()
        .filter(|sample| sample.metric == metric)
        .filter(|sample| {
            labels
                .iter()
                .all(|(name, value)| label(sample, name) == *value)
        })
        .collect()
}

/// The sum of the values of the samples `series` finds.
pub fn sum(scrape: &Scrape, metric: &str, labels: &[(&str, &str)]) -> f64 {
    series(scrape, metric, labels).into_iter().map(number).sum()
}

/// `wallet_build_info` names the node's component and version, and the standard process
/// series describe a live process (`telemetry::process`).
pub fn assert_process_series(scrape: &Scrape, component: &str, version: &str) {
    let build = series(scrape, "wallet_build_info", &[("component", component)]);
    assert_eq!(
        build.len(),
        1,
        "wallet_build_info{{component={component:?}}}"
    );
    assert_eq!(label(build[0], "version"), version);
    assert!(sum(scrape, "process_resident_memory_bytes", &[]) > 1e6);
    assert!(sum(scrape, "process_cpu_seconds_total", &[]) > 0.0);
    assert!(sum(scrape, "process_open_fds", &[]) >= 3.0);
    assert!(sum(scrape, "process_start_time_seconds", &[]) > 1.6e9);
}
