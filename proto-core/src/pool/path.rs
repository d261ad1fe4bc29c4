//! The path a consumer asks a pool's upstream for (R-H3): normalised before any prefix check, so
//! `..`, encoded separators and user-info tricks cannot step outside a provider's allowed paths.

use thiserror::Error;

use crate::limits::POOL_PATH_BYTES_MAX;

/// Why a path is refused (each answers 400).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PathError {
    /// Empty, longer than `POOL_PATH_BYTES_MAX`, or not starting with `/`.
    #[error("path must start with / and be at most {POOL_PATH_BYTES_MAX} bytes")]
    Shape,
    /// A `.` or `..` segment (before or after decoding).
    #[error("path may not contain . or .. segments")]
    DotSegment,
    /// An encoded `/`, `\`, `.` or `%` (`%2f`, `%5c`, `%2e`, `%25`), a backslash, `@`, a control
    /// character or an empty segment (`//`).
    #[error("path contains a forbidden character or encoding")]
    Forbidden,
    /// A query string where the provider allows none.
    #[error("this provider takes no query string")]
    Query,
}

/// `path` checked and normalised: segments split on `/`, none of them `.`/`..`/empty, no encoded
/// separator; answers the path (with its query, when `allow_query`).
pub fn normalise(path: &str, allow_query: bool) -> Result<String, PathError> {
    if path.is_empty() || path.len() > POOL_PATH_BYTES_MAX || !path.starts_with('/') {
        return Err(PathError::Shape);
    }
    let (route, query) = match path.split_once('?') {
        Some((r, q)) => (r, Some(q)),
        None => (path, None),
    };
    if query.is_some() && !allow_query {
        return Err(PathError::Query);
    }
    if path.bytes().any(|b| b.is_ascii_control() || b == b'\\' || b == b'@' || b == b'#' || b == b' ') {
        return Err(PathError::Forbidden);
    }
    let lower = path.to_ascii_lowercase();
    if ["%2f", "%5c", "%2e", "%25", "%00", "%40"].iter().any(|e| lower.contains(e)) {
        return Err(PathError::Forbidden);
    }
    let segments: Vec<&str> = route[1..].split('/').collect();
    for (i, s) in segments.iter().enumerate() {
        if *s == "." || *s == ".." {
            return Err(PathError::DotSegment);
        }
        // A trailing slash is an empty last segment, which is fine; `//` inside is not.
        if s.is_empty() && i + 1 != segments.len() {
            return Err(PathError::Forbidden);
        }
    }
    Ok(path.to_owned())
}

/// Whether the normalised `path` lies under `prefix` on a segment boundary (`/v1/chat` covers
/// `/v1/chat` and `/v1/chat/completions`, not `/v1/chatter`).
pub fn under(path: &str, prefix: &str) -> bool {
    let route = path.split_once('?').map_or(path, |(r, _)| r);
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        return true;
    }
    route == prefix || route.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn traversal_and_encodings_are_refused() {
        assert_eq!(normalise("/v1/chat/completions/../../v1/files", false), Err(PathError::DotSegment));
        assert_eq!(normalise("/v1/./files", false), Err(PathError::DotSegment));
        assert_eq!(normalise("/v1/chat%2f..%2ffiles", false), Err(PathError::Forbidden));
        assert_eq!(normalise("/v1/chat%2E%2E/x", false), Err(PathError::Forbidden));
        assert_eq!(normalise("/v1\\..\\files", false), Err(PathError::Forbidden));
        assert_eq!(normalise("/@evil.example/x", false), Err(PathError::Forbidden));
        assert_eq!(normalise("/v1//files", false), Err(PathError::Forbidden));
        assert_eq!(normalise("v1/files", false), Err(PathError::Shape));
        assert_eq!(normalise(&format!("/{}", "a".repeat(POOL_PATH_BYTES_MAX)), false), Err(PathError::Shape));
        assert!(normalise(&format!("/{}", "a".repeat(POOL_PATH_BYTES_MAX - 1)), false).is_ok(), "at the limit");
    }

    #[test]
    fn queries_only_where_allowed_and_prefixes_on_segment_boundaries() {
        assert_eq!(normalise("/v1/models?limit=2", false), Err(PathError::Query));
        assert_eq!(normalise("/v1/models?limit=2", true).unwrap(), "/v1/models?limit=2");
        assert!(under("/v1/chat/completions", "/v1/chat"));
        assert!(under("/v1/chat", "/v1/chat/"));
        assert!(!under("/v1/chatter", "/v1/chat"));
        assert!(under("/anything", "/"));
    }
}
