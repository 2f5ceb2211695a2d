//! Certificates made with rcgen (ECDSA P-256): for `walletctl dev-certs` and for tests. For
//! production, use your own PKI; the nodes only read PEM files.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// A certificate authority held in memory; its key is never written anywhere.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A PEM certificate and its PEM private key.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(common_name: &str) -> anyhow::Result<Ca> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Ca { issuer })
    }

    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A leaf certificate valid for TLS server and client authentication, with `sans` as
    /// its subject alternative names (IP addresses become IP SANs, the rest DNS names).
    pub fn issue(&self, common_name: &str, sans: &[String]) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::new(sans.to_vec())
            .with_context(|| format!("subject alternative names {sans:?}"))?;
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl Issued {
    /// Writes `NAME.crt` and `NAME.key` (mode 0600) into `dir`; returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> anyhow::Result<(PathBuf, PathBuf)> {
        let cert = dir.join(format!("{name}.crt"));
        let key = dir.join(format!("{name}.key"));
        write_file(&cert, self.cert_pem.as_bytes(), 0o644)?;
        write_file(&key, self.key_pem.as_bytes(), 0o600)?;
        Ok((cert, key))
    }
}

pub fn write_file(path: &Path, bytes: &[u8], mode: u32) -> anyhow::Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// What `walletctl dev-certs` writes into `dir`: `ca.crt` (trust it in clients and as the
/// peer CA), `node.crt`/`node.key` (every node's server and peer certificate, valid for
/// `hosts`), `client.crt`/`client.key` (a client certificate, for nodes that require them)
/// and, when `read_hosts` is not empty, `read.crt`/`read.key`: a certificate of the same CA
/// valid for `read_hosts` only, for read nodes that must not hold a peer's certificate.
pub fn write_dev_certs(
    dir: &Path,
    hosts: &[String],
    read_hosts: &[String],
) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let ca = Ca::new("wallet dev CA")?;
    let ca_path = dir.join("ca.crt");
    write_file(&ca_path, ca.cert_pem().as_bytes(), 0o644)?;
    let (node_cert, node_key) = ca.issue("wallet node", hosts)?.write(dir, "node")?;
    let (client_cert, client_key) = ca
        .issue("wallet client", &["wallet-client".to_owned()])?
        .write(dir, "client")?;
    let mut files = vec![ca_path, node_cert, node_key, client_cert, client_key];
    if !read_hosts.is_empty() {
        let (read_cert, read_key) = ca
            .issue("wallet read node", read_hosts)?
            .write(dir, "read")?;
        files.extend([read_cert, read_key]);
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::PeerVerifier;
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject as _;

    fn der(pem: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn peers_need_the_peer_ca_and_a_peer_name() {
        let ca = Ca::new("peers").unwrap();
        let other_ca = Ca::new("someone else").unwrap();
        let verifier = PeerVerifier::new(
            ca.cert_pem().as_bytes(),
            [(1, "127.0.0.1:1"), (2, "wallet-write-1.wallet:50051")],
        )
        .unwrap();
        let peer = ca.issue("n1", &["127.0.0.1".into()]).unwrap();
        assert_eq!(
            verifier
                .verify(Some(&der(&peer.cert_pem)))
                .unwrap()
                .node_ids,
            [1]
        );
        let by_name = ca.issue("n2", &["wallet-write-1.wallet".into()]).unwrap();
        assert_eq!(
            verifier
                .verify(Some(&der(&by_name.cert_pem)))
                .unwrap()
                .node_ids,
            [2]
        );

        let stranger = other_ca.issue("x", &["127.0.0.1".into()]).unwrap();
        let error = verifier.verify(Some(&der(&stranger.cert_pem))).unwrap_err();
        assert!(error.contains("not from the peer CA"), "{error}");
        let unnamed = ca.issue("client", &["wallet-client".into()]).unwrap();
        let error = verifier.verify(Some(&der(&unnamed.cert_pem))).unwrap_err();
        assert!(error.contains("none of the configured peers"), "{error}");
        let error = verifier.verify(None).unwrap_err();
        assert!(error.contains("no client certificate"), "{error}");
    }

    /// The Helm chart's one shared certificate may name the write pods with a wildcard of
    /// the headless Service (`*.<release>-write-peers.<ns>.svc.<domain>`): it then speaks for
    /// every peer, and for nothing one label deeper or in another Service.
    #[test]
    fn a_wildcard_certificate_names_every_peer_of_its_service() {
        let ca = Ca::new("peers").unwrap();
        let verifier = PeerVerifier::new(
            ca.cert_pem().as_bytes(),
            [
                (1, "w-0.w-peers.ns.svc.cluster.local:50051"),
                (2, "w-1.w-peers.ns.svc.cluster.local:50051"),
                (3, "w-2.w-peers.ns.svc.cluster.local:50051"),
            ],
        )
        .unwrap();
        let shared = ca
            .issue("wallet node", &["*.w-peers.ns.svc.cluster.local".into()])
            .unwrap();
        assert_eq!(
            verifier
                .verify(Some(&der(&shared.cert_pem)))
                .unwrap()
                .node_ids,
            [1, 2, 3]
        );
        for elsewhere in ["*.other.ns.svc.cluster.local", "*.ns.svc.cluster.local"] {
            let cert = ca.issue("x", &[elsewhere.into()]).unwrap();
            let error = verifier.verify(Some(&der(&cert.cert_pem))).unwrap_err();
            assert!(
                error.contains("none of the configured peers"),
                "{elsewhere}: {error}"
            );
        }
    }

    #[test]
    fn dev_certs_are_written_with_private_keys_private() {
        let dir = tempfile::tempdir().unwrap();
        let files =
            write_dev_certs(dir.path(), &["localhost".into(), "127.0.0.1".into()], &[]).unwrap();
        assert_eq!(files.len(), 5);
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.path().join("node.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let server = crate::ServerTls {
            cert: dir.path().join("node.crt"),
            key: dir.path().join("node.key"),
            client_ca: None,
        };
        server
            .server_config(Some(&dir.path().join("ca.crt")))
            .unwrap();
    }

    /// The read nodes' certificate is of the same CA (the write nodes accept it as a client
    /// and the read nodes verify the write nodes with that CA) but names no peer.
    #[test]
    fn dev_read_certificate_is_of_the_ca_and_names_no_peer() {
        let dir = tempfile::tempdir().unwrap();
        let files = write_dev_certs(
            dir.path(),
            &["127.0.0.1".into(), "wallet-write.ns".into()],
            &["localhost".into(), "wallet-read.ns".into()],
        )
        .unwrap();
        assert_eq!(files.len(), 7);
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        let ca = read("ca.crt");
        let verifier =
            PeerVerifier::new(ca.as_bytes(), [(1, "127.0.0.1:1"), (2, "127.0.0.1:2")]).unwrap();
        assert_eq!(
            verifier
                .verify(Some(&der(&read("node.crt"))))
                .unwrap()
                .node_ids,
            [1, 2]
        );
        let error = verifier.verify(Some(&der(&read("read.crt")))).unwrap_err();
        assert!(error.contains("none of the configured peers"), "{error}");
        let server = crate::ServerTls {
            cert: dir.path().join("read.crt"),
            key: dir.path().join("read.key"),
            client_ca: Some(dir.path().join("ca.crt")),
        };
        server
            .server_config(Some(&dir.path().join("ca.crt")))
            .unwrap();
        let without = tempfile::tempdir().unwrap();
        assert_eq!(
            write_dev_certs(without.path(), &["localhost".into()], &[])
                .unwrap()
                .len(),
            5
        );
        assert!(!without.path().join("read.crt").exists());
    }
}
