//! The start-up rule: a node reachable beyond this machine runs with TLS and tokens, or says
//! explicitly (`--insecure`) that something else protects it.

use std::net::SocketAddr;

/// What the node was configured with.
#[derive(Clone, Copy, Debug)]
pub struct Protection {
    pub tls: bool,
    pub tokens: bool,
    pub insecure: bool,
}

/// What a node does first with its security settings: refuses an unprotected non-loopback
/// `listen` ([`check_exposure`]), then loads the token table, if it has one.
pub fn tokens_for(
    listen: SocketAddr,
    tls: bool,
    tokens_file: Option<&std::path::Path>,
    insecure: bool,
) -> anyhow::Result<Option<crate::TokenTable>> {
    check_exposure(
        listen,
        Protection {
            tls,
            tokens: tokens_file.is_some(),
            insecure,
        },
    )?;
    tokens_file.map(crate::TokenTable::load).transpose()
}

/// `Ok` on a loopback address, or with both TLS and tokens, or with `insecure`; otherwise
/// the error explains the three ways out.
pub fn check_exposure(listen: SocketAddr, protection: Protection) -> anyhow::Result<()> {
    if listen.ip().is_loopback() || (protection.tls && protection.tokens) {
        return Ok(());
    }
    if protection.insecure {
        tracing::warn!(
            %listen,
            tls = protection.tls,
            tokens = protection.tokens,
            "listening beyond loopback without TLS and tokens (--insecure)"
        );
        return Ok(());
    }
    let missing = match (protection.tls, protection.tokens) {
        (false, false) => "TLS and tokens",
        (false, true) => "TLS",
        _ => "tokens",
    };
    anyhow::bail!(
        "refusing to listen on {listen} without {missing}: anyone who can reach this address \
         could move money or join the cluster. Configure TLS (--tls-cert/--tls-key) and \
         tokens (--tokens-file), listen on a loopback address, or pass --insecure if a \
         private network or a service mesh protects this node"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(listen: &str, tls: bool, tokens: bool, insecure: bool) -> Result<(), String> {
        check_exposure(
            listen.parse().unwrap(),
            Protection {
                tls,
                tokens,
                insecure,
            },
        )
        .map_err(|error| error.to_string())
    }

    #[test]
    fn only_loopback_or_protected_or_insecure_listens() {
        assert!(check("127.0.0.1:1", false, false, false).is_ok());
        assert!(check("[::1]:1", false, false, false).is_ok());
        assert!(check("0.0.0.0:1", true, true, false).is_ok());
        assert!(check("0.0.0.0:1", false, false, true).is_ok());
        let error = check("0.0.0.0:1", false, false, false).unwrap_err();
        assert!(error.contains("without TLS and tokens") && error.contains("--insecure"));
        assert!(
            check("10.0.0.5:1", true, false, false)
                .unwrap_err()
                .contains("without tokens")
        );
        assert!(
            check("[::]:1", false, true, false)
                .unwrap_err()
                .contains("without TLS")
        );
    }
}
