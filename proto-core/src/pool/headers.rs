//! Which headers cross a pool in each direction (R-H3): an allow-list, never the consumer's own
//! credentials, and exactly one credential header, the provider's, set last.

/// Request headers a consumer may pass to the upstream unless the provider names its own list.
pub const REQUEST_HEADERS_DEFAULT: [&str; 5] =
    ["content-type", "accept", "anthropic-version", "anthropic-beta", "openai-beta"];
/// Response headers passed back to the consumer (no cookies, no auth challenges, no hop-by-hop).
pub const RESPONSE_HEADERS: [&str; 6] =
    ["content-type", "content-length", "x-request-id", "request-id", "retry-after", "openai-processing-ms"];

/// The headers of an upstream request: the consumer's that `allowed` lists (case-insensitively; the
/// default list when empty), minus anything named like the credential header, then the credential.
pub fn upstream(
    consumer: &[(String, String)],
    allowed: &[String],
    credential_header: &str,
    credential_value: &str,
) -> Vec<(String, String)> {
    let allowed_here = |name: &str| match allowed.is_empty() {
        true => REQUEST_HEADERS_DEFAULT.iter().any(|a| a.eq_ignore_ascii_case(name)),
        false => allowed.iter().any(|a| a.eq_ignore_ascii_case(name)),
    };
    let mut out: Vec<(String, String)> = consumer
        .iter()
        .filter(|(n, _)| allowed_here(n) && !n.eq_ignore_ascii_case(credential_header))
        .filter(|(n, v)| valid_name(n) && valid_value(v))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect();
    out.push((credential_header.to_ascii_lowercase(), credential_value.to_owned()));
    out
}

/// The upstream's response headers a consumer sees.
pub fn downstream(upstream: &[(String, String)]) -> Vec<(String, String)> {
    upstream
        .iter()
        .filter(|(n, _)| RESPONSE_HEADERS.iter().any(|a| a.eq_ignore_ascii_case(n)))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect()
}

/// An HTTP token (RFC 9110 §5.6.2), so no name can smuggle a line break.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn valid_value(value: &str) -> bool {
    value.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(n, v)| ((*n).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn the_credential_header_is_the_provider_s_alone() {
        let consumer = h(&[("authorization", "Bearer mine"), ("Content-Type", "application/json"), ("x-api-key", "k")]);
        let out = upstream(&consumer, &[], "Authorization", "Bearer pool");
        let auth: Vec<_> = out.iter().filter(|(n, _)| n.eq_ignore_ascii_case("authorization")).collect();
        assert_eq!(auth.len(), 1);
        assert_eq!(auth[0].1, "Bearer pool");
        assert!(out.iter().any(|(n, _)| n == "content-type"));
        assert!(!out.iter().any(|(n, _)| n == "x-api-key"), "not on the allow-list");
        // Even when the provider allows it by name, the consumer's copy is dropped.
        let out = upstream(&consumer, &["authorization".into()], "AUTHORIZATION", "Bearer pool");
        assert_eq!(out.iter().filter(|(n, _)| n == "authorization").count(), 1);
        let bad = h(&[("content-type", "a\r\nx-evil: 1")]);
        assert_eq!(upstream(&bad, &[], "x-api-key", "k").len(), 1, "a value with a line break is dropped");
    }

    #[test]
    fn cookies_and_challenges_do_not_come_back() {
        let up = h(&[("Set-Cookie", "s=1"), ("WWW-Authenticate", "Bearer"), ("Content-Type", "application/json")]);
        assert_eq!(downstream(&up), h(&[("content-type", "application/json")]));
    }
}
