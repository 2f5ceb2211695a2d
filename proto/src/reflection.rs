//! gRPC server reflection (`grpc.reflection.v1` and `v1alpha`) for the nodes, so generic
//! tools (`buf curl`, grpcurl, grpcui, Postman) can list and call the services without a
//! copy of the `.proto` files.

use tonic_reflection::server::v1::{ServerReflection as V1, ServerReflectionServer as V1Server};
use tonic_reflection::server::v1alpha::{
    ServerReflection as V1Alpha, ServerReflectionServer as V1AlphaServer,
};

/// The fully qualified names reflection lists besides the ones a node passes: the health
/// service and reflection itself, served by every node.
pub const COMMON_SERVICE_NAMES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// Both reflection services, describing every wallet file plus `grpc.health.v1`, and listing
/// `services` (fully qualified, e.g. `wallet.v1.WalletService`) with
/// [`COMMON_SERVICE_NAMES`]. A node passes the services it serves to clients, so internal
/// ones (`wallet.internal.v1.PeerService`) are served but not advertised.
pub fn services(
    services: &[&str],
) -> Result<
    (
        V1Server<impl V1 + use<>>,
        V1AlphaServer<impl V1Alpha + use<>>,
    ),
    tonic_reflection::server::Error,
> {
    let builder = || {
        let builder = tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(crate::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
            // Both protocols' descriptors in both services, so each lists (and can describe)
            // both reflection services.
            .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(
                tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
            );
        services
            .iter()
            .chain(COMMON_SERVICE_NAMES.iter())
            .fold(builder, |builder, name| builder.with_service_name(*name))
    };
    Ok((builder().build_v1()?, builder().build_v1alpha()?))
}
