//! What the write node and the read node share for operations:
//!
//! - `MetricsListen`: the `metrics_listen` setting (an address, `"off"`, or absent = the gRPC
//!   port + `METRICS_PORT_OFFSET`);
//! - `http::serve`: the Prometheus `/metrics` endpoint, on its own port;
//! - `grpc::GrpcMetrics`: a tower layer counting and timing every RPC by method and status code;
//! - `logs::init`: the tracing subscriber (text or JSON lines, optional OTLP trace export,
//!   sampled by `trace_sample_ratio`); with the `otel` feature `grpc::GrpcMetrics` also opens
//!   each call's server span, a child of the caller's W3C trace context (`trace`);
//! - `process::ProcessMetrics`: `wallet_build_info` and the standard `process_*` series.
//!
//! Node-specific series live in each node crate's `metrics` module.

pub mod grpc;
pub mod http;
pub mod logs;
pub mod process;
mod trace;

use std::net::SocketAddr;

/// With `metrics_listen` unset, `/metrics` listens on the gRPC address with the port raised by
/// this much: write nodes 50051-50053 serve metrics on 51051-51053, a read node on 50061 on 51061.
pub const METRICS_PORT_OFFSET: u16 = 1000;

/// The `metrics_listen` setting: where `/metrics` listens, or nowhere.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MetricsListen {
    Off,
    At(SocketAddr),
}

impl std::str::FromStr for MetricsListen {
    type Err = String;

    fn from_str(text: &str) -> Result<MetricsListen, String> {
        if text.eq_ignore_ascii_case("off") {
            return Ok(MetricsListen::Off);
        }
        text.parse().map(MetricsListen::At).map_err(|_| {
            format!("metrics_listen {text:?} is neither \"off\" nor an address like 0.0.0.0:9100")
        })
    }
}

impl std::fmt::Display for MetricsListen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsListen::Off => f.write_str("off"),
            MetricsListen::At(address) => address.fmt(f),
        }
    }
}

impl<'de> serde::Deserialize<'de> for MetricsListen {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl MetricsListen {
    /// The address `/metrics` binds for a node whose gRPC server binds `listen`, or `None` when
    /// metrics are off. `setting` is the configured value, `None` when not configured.
    pub fn resolve(
        setting: Option<MetricsListen>,
        listen: SocketAddr,
    ) -> Result<Option<SocketAddr>, String> {
        let address = match setting {
            Some(MetricsListen::Off) => return Ok(None),
            Some(MetricsListen::At(address)) => address,
            None => {
                // Port 0 (tests) stays 0: both servers get an ephemeral port.
                let port = if listen.port() == 0 {
                    0
                } else {
                    listen.port().checked_add(METRICS_PORT_OFFSET).ok_or_else(|| {
                        format!(
                            "metrics_listen is unset and listen port {} + {METRICS_PORT_OFFSET} \
                             is beyond 65535: set metrics_listen to an address or \"off\"",
                            listen.port()
                        )
                    })?
                };
                SocketAddr::new(listen.ip(), port)
            }
        };
        if address.port() != 0 && address == listen {
            return Err(format!(
                "metrics_listen {address} is the gRPC listen address: give /metrics its own port"
            ));
        }
        Ok(Some(address))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_listen_defaults_to_the_port_offset() {
        let listen: SocketAddr = "127.0.0.1:50051".parse().unwrap();
        let check = |setting: Option<&str>, expected: Result<Option<&str>, &str>| {
            let setting = setting.map(|text| text.parse::<MetricsListen>().unwrap());
            let resolved = MetricsListen::resolve(setting, listen);
            match expected {
                Ok(address) => {
                    assert_eq!(resolved.unwrap(), address.map(|a| a.parse().unwrap()))
                }
                Err(message) => {
                    let error = resolved.unwrap_err();
                    assert!(error.contains(message), "{error}");
                }
            }
        };
        check(None, Ok(Some("127.0.0.1:51051")));
        check(Some("off"), Ok(None));
        check(Some("OFF"), Ok(None));
        check(Some("0.0.0.0:9100"), Ok(Some("0.0.0.0:9100")));
        check(Some("127.0.0.1:50051"), Err("its own port"));
        let high: SocketAddr = "127.0.0.1:65000".parse().unwrap();
        assert!(
            MetricsListen::resolve(None, high)
                .unwrap_err()
                .contains("65535")
        );
        let ephemeral: SocketAddr = "127.0.0.1:0".parse().unwrap();
        assert_eq!(
            MetricsListen::resolve(None, ephemeral).unwrap(),
            Some(ephemeral)
        );
        assert!(
            "nonsense"
                .parse::<MetricsListen>()
                .unwrap_err()
                .contains("off")
        );
    }
}
