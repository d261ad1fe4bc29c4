//! The page, embedded in the binary (no CDN, nothing fetched from elsewhere): one HTML shell, one
//! stylesheet, one script, an icon. No inline script or style anywhere (the CSP forbids them); the
//! only server-side values are the CSRF token (a `<meta>`) and, on the login page, the launch token
//! from the URL, both HTML-escaped.

/// The application shell; `{{csrf}}` is replaced with the session's CSRF token.
pub const INDEX_HTML: &str = include_str!("assets/index.html");
/// The login page; `{{token}}` and `{{message}}` are replaced.
pub const LOGIN_HTML: &str = include_str!("assets/login.html");
/// The page's script.
pub const APP_JS: &str = include_str!("assets/app.js");
/// The page's styles.
pub const APP_CSS: &str = include_str!("assets/app.css");
/// The login page's styles.
pub const LOGIN_CSS: &str = include_str!("assets/login.css");
/// The icon.
pub const FAVICON: &str = include_str!("assets/favicon.svg");
/// All embedded assets together stay under this many bytes (the page must stay small and fast).
pub const ASSETS_BYTES_MAX: usize = 300 * 1024;

/// Escapes text for an HTML attribute or element.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The shell for a session.
pub fn index_page(csrf: &str) -> String {
    INDEX_HTML.replace("{{csrf}}", &escape(csrf))
}

/// The login page, with the launch token pre-filled (from `?token=`) and a message.
pub fn login_page(token: Option<String>, message: Option<&str>) -> String {
    LOGIN_HTML
        .replace("{{token}}", &escape(&token.unwrap_or_default()))
        .replace("{{message}}", &escape(message.unwrap_or("")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_fit_the_budget() {
        let total =
            INDEX_HTML.len() + LOGIN_HTML.len() + APP_JS.len() + APP_CSS.len() + LOGIN_CSS.len() + FAVICON.len();
        assert!(total <= ASSETS_BYTES_MAX, "{total} bytes");
    }

    #[test]
    fn no_inline_script_or_style_and_nothing_from_elsewhere() {
        for page in [INDEX_HTML, LOGIN_HTML] {
            assert!(!page.contains("<script>") && !page.contains("style=") && !page.contains("<style"));
            for external in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
                assert!(!page.contains(external), "external reference {external}");
            }
        }
        assert!(!APP_JS.contains("innerHTML"), "the script builds DOM nodes, never HTML strings");
    }

    #[test]
    fn injected_values_are_escaped() {
        let p = login_page(Some("\"><img src=x>".into()), None);
        assert!(!p.contains("<img src=x>") && p.contains("&quot;&gt;&lt;img"));
    }
}
