//! `walletctl health`: asks nodes' gRPC health service (`grpc.health.v1.Health/Check`) for one
//! service name, the check Kubernetes probes and `helm test` make.

use std::time::Duration;

use serde_json::json;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

use crate::output::Output;

/// Bound on connecting to and asking one node.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Checks `service` on every endpoint, prints one line (or JSON object) per endpoint and
/// returns whether all of them answered SERVING.
pub async fn check_all(
    endpoints: &[String],
    service: &str,
    tls: Option<&wallet_client::TlsConfig>,
    out: &Output,
) -> bool {
    let checks = endpoints
        .iter()
        .map(|endpoint| check(endpoint, service, tls));
    let results = futures::future::join_all(checks).await;
    let mut all_serving = true;
    for (endpoint, result) in endpoints.iter().zip(results) {
        let serving = matches!(result, Ok(ServingStatus::Serving));
        all_serving &= serving;
        let status = match &result {
            Ok(status) => status.as_str_name().to_owned(),
            Err(error) => format!("UNREACHABLE ({error})"),
        };
        if out.is_json() {
            out.json_line(&json!({
                "ok": serving,
                "endpoint": endpoint,
                "service": service,
                "status": result.as_ref().map_or("UNREACHABLE", |s| s.as_str_name()),
                "error": result.as_ref().err(),
            }));
        } else {
            println!("{endpoint}  {service:?}  {status}");
        }
    }
    all_serving
}

/// One node's answer for `service`; NOT_FOUND (an unknown name) is SERVICE_UNKNOWN, as the
/// health protocol's Watch reports it.
async fn check(
    endpoint: &str,
    service: &str,
    tls: Option<&wallet_client::TlsConfig>,
) -> Result<ServingStatus, String> {
    let uri = wallet_client::normalize_endpoint_for(endpoint, tls.is_some())
        .map_err(|e| e.to_string())?;
    let mut endpoint = tonic::transport::Endpoint::from_shared(uri)
        .map_err(|e| e.to_string())?
        .connect_timeout(CHECK_TIMEOUT);
    if let Some(tls) = tls {
        endpoint = endpoint
            .tls_config(tls.client_tls_config())
            .map_err(|e| format!("TLS settings: {e}"))?;
    }
    let channel = endpoint
        .connect()
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let mut request = tonic::Request::new(HealthCheckRequest {
        service: service.to_owned(),
    });
    request.set_timeout(CHECK_TIMEOUT);
    match HealthClient::new(channel).check(request).await {
        Ok(response) => {
            Ok(ServingStatus::try_from(response.into_inner().status)
                .unwrap_or(ServingStatus::Unknown))
        }
        Err(status) if status.code() == tonic::Code::NotFound => Ok(ServingStatus::ServiceUnknown),
        Err(status) => Err(format!("{:?}: {}", status.code(), status.message())),
    }
}
