//! The consistency token: the one definition of its format, built by the write nodes (the
//! answer to a write names the log positions that decided it) and parsed by the read nodes
//! (which wait until they have applied every position it names: read-your-writes).
//!
//! Format: `v1.<partition>.<index>` for a one-partition command, `v1.<p>.<i>.<p>.<i>` for a
//! cross-partition transfer (the source's settle and the target's credit). Opaque to clients.

/// The token naming `positions` (`(partition, index)` pairs, in order).
pub fn format(positions: &[(u32, u64)]) -> String {
    let mut token = String::from("v1");
    for (partition, index) in positions {
        token.push_str(&format!(".{partition}.{index}"));
    }
    token
}

/// The token of one position.
pub fn position(partition: u32, index: u64) -> String {
    format(&[(partition, index)])
}

/// The `(partition, index)` positions of a well-formed token (every index >= 1), or `None`.
pub fn parse(text: &str) -> Option<Vec<(u32, u64)>> {
    let parts: Vec<&str> = text.strip_prefix("v1.")?.split('.').collect();
    if !parts.len().is_multiple_of(2) {
        return None;
    }
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    parts
        .chunks(2)
        .map(|pair| {
            if !digits(pair[0]) || !digits(pair[1]) {
                return None;
            }
            let index: u64 = pair[1].parse().ok()?;
            (index >= 1).then_some((pair[0].parse().ok()?, index))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_junk_is_refused() {
        assert_eq!(format(&[(0, 15)]), "v1.0.15");
        assert_eq!(format(&[(2, 15), (7, 3)]), "v1.2.15.7.3");
        assert_eq!(parse(&position(3, 42)), Some(vec![(3, 42)]));
        assert_eq!(parse("v1.2.15.7.3"), Some(vec![(2, 15), (7, 3)]));
        for junk in [
            "v1.2.15.7",
            "",
            "v1.",
            "v1.0",
            "v1.0.0",
            "v2.0.1",
            "v1.-1.2",
            "v1.0.+2",
            "v1.0.1.2",
            "v1.a.1",
        ] {
            assert_eq!(parse(junk), None, "{junk}");
        }
    }
}
