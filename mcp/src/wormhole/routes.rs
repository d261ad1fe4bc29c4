//! The checks every request passes, in order, and then its route.
//!
//! 1. `Host` is one of this server's own names, else 403 (DNS rebinding).
//! 2. The login page (`/login`, its stylesheet and icon) is the only thing served without a session.
//! 3. Everything else needs a valid session cookie, else 401 (`GET /` redirects to the login page).
//! 4. Every state-changing route is a POST with a same-origin `Origin` and the session's CSRF token
//!    in `X-CSRF-Token`, else 403; a GET never changes anything.

use std::sync::atomic::Ordering;

use serde_json::json;

use super::http::{form_value, Request, Response};
use super::{api, assets, auth, now_s, Wormhole};

/// What a request gets.
pub enum Reply {
    /// One response, then close.
    Whole(Response),
    /// The event stream of this session (already counted in [`Wormhole::streams`]).
    Events(String),
}

/// Event streams open at once (each holds a connection and a subscription).
pub const STREAMS_MAX: usize = 16;

/// Handles one request.
pub async fn handle(wh: &Wormhole, req: Request) -> Reply {
    match check(wh, &req) {
        Err(r) => Reply::Whole(r),
        Ok(Gate::Login) => Reply::Whole(login(wh, &req)),
        Ok(Gate::Session(id)) => session_route(wh, req, id).await,
    }
}

enum Gate {
    Login,
    Session(String),
}

fn check(wh: &Wormhole, req: &Request) -> Result<Gate, Response> {
    let host = req.host.as_deref().unwrap_or_default();
    if !wh.hosts.iter().any(|h| h.eq_ignore_ascii_case(host)) {
        return Err(Response::error(403, "Host not allowed"));
    }
    if matches!(req.path.as_str(), "/login" | "/login.css" | "/favicon.svg") {
        if req.method == "POST" && !same_origin(req) {
            return Err(Response::error(403, "Cross-origin request refused"));
        }
        return Ok(Gate::Login);
    }
    let Some(id) = req.cookie(auth::COOKIE_NAME).and_then(|c| wh.keys.check_session(c, now_s())) else {
        if req.method == "GET" && req.path == "/" {
            return Err(Response::redirect("/login"));
        }
        return Err(Response::error(401, "Not logged in"));
    };
    if req.method != "GET" {
        if req.method != "POST" {
            return Err(Response::error(405, "Method not allowed"));
        }
        if !same_origin(req) {
            return Err(Response::error(403, "Cross-origin request refused"));
        }
        let token = wh.keys.csrf(&id);
        if !req.csrf.as_deref().is_some_and(|t| auth::same(t.as_bytes(), token.as_bytes())) {
            return Err(Response::error(403, "Missing or wrong CSRF token"));
        }
    }
    Ok(Gate::Session(id))
}

/// `Origin` names this very server (the Host was checked already). Browsers send it on every POST.
fn same_origin(req: &Request) -> bool {
    match (req.origin.as_deref(), req.host.as_deref()) {
        (Some(o), Some(h)) => !h.is_empty() && o.eq_ignore_ascii_case(&format!("http://{h}")),
        _ => false,
    }
}

fn login(wh: &Wormhole, req: &Request) -> Response {
    match (req.method.as_str(), req.path.as_str()) {
        ("GET", "/login") => Response::asset("text/html; charset=utf-8", assets::login_page(req.query("token"), None)),
        ("GET", "/login.css") => Response::asset("text/css", assets::LOGIN_CSS),
        ("GET", "/favicon.svg") => Response::asset("image/svg+xml", assets::FAVICON),
        ("POST", "/login") => attempt(wh, req),
        _ => Response::error(405, "Method not allowed"),
    }
}

fn attempt(wh: &Wormhole, req: &Request) -> Response {
    let ip = req.peer.unwrap_or(std::net::Ipv4Addr::UNSPECIFIED.into());
    let now = now_s();
    if !wh.limiter.lock().unwrap_or_else(|p| p.into_inner()).allowed(ip, now) {
        let r = Response::asset(
            "text/html; charset=utf-8",
            assets::login_page(None, Some("Too many attempts; wait 15 minutes.")),
        );
        return Response { status: 429, ..r };
    }
    let secret = form_value(&req.body, "secret").unwrap_or_default();
    let by_token = auth::same(secret.as_bytes(), wh.launch_token.as_bytes());
    let by_passphrase = !by_token && wh.passphrase.as_deref().is_some_and(|h| auth::verify_passphrase(h, &secret));
    if !(by_token || by_passphrase) {
        wh.limiter.lock().unwrap_or_else(|p| p.into_inner()).failed(ip, now);
        let r =
            Response::asset("text/html; charset=utf-8", assets::login_page(None, Some("Wrong passphrase or token.")));
        return Response { status: 401, ..r };
    }
    match wh.keys.new_session(now) {
        Ok((cookie, _)) => Response::redirect("/").with(
            "Set-Cookie",
            format!(
                "{}={cookie}; Path=/; Max-Age={}; HttpOnly; SameSite=Strict",
                auth::COOKIE_NAME,
                auth::SESSION_TTL_S
            ),
        ),
        Err(e) => Response::error(500, &e.to_string()),
    }
}

async fn session_route(wh: &Wormhole, req: Request, session: String) -> Reply {
    let path = req.path.clone();
    let r = match (req.method.as_str(), path.as_str()) {
        ("GET", "/") => Response::asset("text/html; charset=utf-8", assets::index_page(&wh.keys.csrf(&session))),
        ("GET", "/app.js") => Response::asset("text/javascript", assets::APP_JS),
        ("GET", "/app.css") => Response::asset("text/css", assets::APP_CSS),
        ("GET", "/api/events") => return events(wh, session),
        ("POST", "/logout") => {
            wh.keys.revoke(&session);
            Response::json(200, &json!({"success": true}))
                .with("Set-Cookie", format!("{}=; Path=/; Max-Age=0; HttpOnly; SameSite=Strict", auth::COOKIE_NAME))
        }
        _ => api::route(wh, &req).await,
    };
    Reply::Whole(r)
}

fn events(wh: &Wormhole, session: String) -> Reply {
    if wh.streams.fetch_add(1, Ordering::AcqRel) >= STREAMS_MAX {
        wh.streams.fetch_sub(1, Ordering::AcqRel);
        return Reply::Whole(Response::error(503, "Too many open event streams"));
    }
    Reply::Events(session)
}
