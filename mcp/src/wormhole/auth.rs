//! Who may use the page: the session secret (32 OS-random bytes in a 0600 file), the passphrase
//! (only its Argon2id hash is ever stored), signed session cookies, CSRF tokens, and the login
//! attempt limit. Pure except for the two files; the server decides what each answer means.
//!
//! Why not 0.5.3's scheme: its Flask secret was `SHA-256("darkmatter-entrypoint-session-" + agent_id)`,
//! derivable from the public agent id, so anyone could mint a logged-in cookie. Here the secret never
//! leaves the data directory, and a cookie is only ever checked against it.

use std::collections::{HashMap, VecDeque};
use std::fs;
use std::io::Write;
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use thiserror::Error;

/// Bytes of the session secret (HMAC-SHA256 key).
pub const SECRET_BYTES: usize = 32;
/// Bytes of a session id and of a launch token.
pub const TOKEN_BYTES: usize = 16;
/// How long a session cookie is valid, in seconds (24 h, as 0.5.3).
pub const SESSION_TTL_S: u64 = 24 * 3600;
/// Shortest passphrase accepted (0.5.3's 4-digit PINs stay valid).
pub const PASSPHRASE_CHARS_MIN: usize = 4;
/// Longest passphrase accepted: Argon2 hashes anything, but a login body stays small.
pub const PASSPHRASE_CHARS_MAX: usize = 256;
/// Failed logins one address may make within [`LOGIN_WINDOW_S`]; the next attempt is answered 429.
pub const LOGIN_FAILURES_MAX: usize = 5;
/// The window of [`LOGIN_FAILURES_MAX`], in seconds.
pub const LOGIN_WINDOW_S: u64 = 15 * 60;
/// Addresses whose failures are remembered at once; the oldest is forgotten beyond it (a flood of
/// sources cannot grow the table, and each source is still limited while it is remembered).
pub const LOGIN_SOURCES_MAX: usize = 4_096;
/// Sessions logged out before their expiry that are remembered (refused until they expire).
pub const REVOKED_MAX: usize = 1_024;
/// The session cookie's name.
pub const COOKIE_NAME: &str = "dm_wormhole";

/// The files under the data directory.
pub const SECRET_FILE: &str = "session.secret";
/// The Argon2id hash of the passphrase (PHC string).
pub const PASSPHRASE_FILE: &str = "passphrase.argon2";

type HmacSha256 = Hmac<Sha256>;

/// Why the authentication state could not be set up.
#[derive(Debug, Error)]
pub enum AuthError {
    /// The secret or hash file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The secret file exists but does not hold exactly [`SECRET_BYTES`] bytes.
    #[error("{0} is damaged (expected {SECRET_BYTES} bytes); delete it to start a new secret")]
    BadSecret(String),
    /// The OS gave no randomness.
    #[error("no randomness from the OS: {0}")]
    Random(String),
    /// The passphrase is shorter than [`PASSPHRASE_CHARS_MIN`] or longer than [`PASSPHRASE_CHARS_MAX`].
    #[error("the passphrase must have {PASSPHRASE_CHARS_MIN} to {PASSPHRASE_CHARS_MAX} characters")]
    PassphraseLength,
    /// Argon2 refused to hash (never for valid parameters).
    #[error("cannot hash the passphrase: {0}")]
    Hash(String),
}

/// OS randomness.
pub fn random<const N: usize>() -> Result<[u8; N], AuthError> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b).map_err(|e| AuthError::Random(e.to_string()))?;
    Ok(b)
}

fn file_err(path: &Path) -> impl FnOnce(std::io::Error) -> AuthError + '_ {
    move |source| AuthError::File { path: path.display().to_string(), source }
}

/// Writes `bytes` to a new 0600 file at `path` (replacing it).
fn write_private(path: &Path, bytes: &[u8]) -> Result<(), AuthError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut f = fs::OpenOptions::new().create_new(true).write(true).mode(0o600).open(&tmp).map_err(file_err(&tmp))?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(file_err(&tmp))?;
    fs::rename(&tmp, path).map_err(file_err(path))
}

/// The session secret in `dir`, created (0600, OS randomness) when missing.
pub fn load_or_create_secret(dir: &Path) -> Result<[u8; SECRET_BYTES], AuthError> {
    let path = dir.join(SECRET_FILE);
    match fs::read(&path) {
        Ok(bytes) => bytes.try_into().map_err(|_| AuthError::BadSecret(path.display().to_string())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = random::<SECRET_BYTES>()?;
            write_private(&path, &secret)?;
            Ok(secret)
        }
        Err(e) => Err(file_err(&path)(e)),
    }
}

/// Hashes `passphrase` with Argon2id (the crate's default parameters, RFC 9106's second
/// recommendation) and a random salt; the PHC string is what is stored.
pub fn hash_passphrase(passphrase: &str) -> Result<String, AuthError> {
    let chars = passphrase.chars().count();
    if !(PASSPHRASE_CHARS_MIN..=PASSPHRASE_CHARS_MAX).contains(&chars) {
        return Err(AuthError::PassphraseLength);
    }
    let salt = SaltString::encode_b64(&random::<TOKEN_BYTES>()?).map_err(|e| AuthError::Hash(e.to_string()))?;
    let hash =
        Argon2::default().hash_password(passphrase.as_bytes(), &salt).map_err(|e| AuthError::Hash(e.to_string()))?;
    Ok(hash.to_string())
}

/// Stores the hash of `passphrase` in `dir` (0600), replacing any earlier one.
pub fn store_passphrase(dir: &Path, passphrase: &str) -> Result<(), AuthError> {
    write_private(&dir.join(PASSPHRASE_FILE), hash_passphrase(passphrase)?.as_bytes())
}

/// The stored passphrase hash, if one was set.
pub fn load_passphrase(dir: &Path) -> Result<Option<String>, AuthError> {
    let path = dir.join(PASSPHRASE_FILE);
    match fs::read_to_string(&path) {
        Ok(s) => Ok(Some(s.trim().to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(file_err(&path)(e)),
    }
}

/// Whether `passphrase` matches the PHC `hash` (false for a damaged hash).
pub fn verify_passphrase(hash: &str, passphrase: &str) -> bool {
    if passphrase.chars().count() > PASSPHRASE_CHARS_MAX {
        return false;
    }
    PasswordHash::new(hash).is_ok_and(|h| Argon2::default().verify_password(passphrase.as_bytes(), &h).is_ok())
}

/// Compares in time independent of where the inputs differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Signs and checks sessions and CSRF tokens with the secret.
pub struct Keys {
    secret: [u8; SECRET_BYTES],
    revoked: std::sync::Mutex<VecDeque<String>>,
}

impl Keys {
    /// Keys from the secret.
    pub fn new(secret: [u8; SECRET_BYTES]) -> Self {
        Self { secret, revoked: Default::default() }
    }

    fn mac(&self, domain: &str, parts: &[&str]) -> String {
        let mut mac = HmacSha256::new_from_slice(&self.secret).expect("HMAC takes any key length");
        mac.update(b"darkmatter-rs/2 wormhole\n");
        mac.update(domain.as_bytes());
        for p in parts {
            mac.update(b"\n");
            mac.update(p.as_bytes());
        }
        hex::encode(mac.finalize().into_bytes())
    }

    /// A new session's cookie value, `<id>.<expiry unix s>.<mac>`, and its id.
    pub fn new_session(&self, now_s: u64) -> Result<(String, String), AuthError> {
        let id = hex::encode(random::<TOKEN_BYTES>()?);
        let expiry = (now_s + SESSION_TTL_S).to_string();
        let mac = self.mac("session", &[&id, &expiry]);
        Ok((format!("{id}.{expiry}.{mac}"), id))
    }

    /// The session id of a valid, unexpired, not revoked cookie value.
    pub fn check_session(&self, value: &str, now_s: u64) -> Option<String> {
        let mut parts = value.split('.');
        let (id, expiry, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() || id.len() != TOKEN_BYTES * 2 {
            return None;
        }
        if !same(self.mac("session", &[id, expiry]).as_bytes(), mac.as_bytes()) {
            return None;
        }
        let live = expiry.parse::<u64>().ok().is_some_and(|e| now_s < e);
        let revoked = self.revoked.lock().unwrap_or_else(|p| p.into_inner()).iter().any(|r| r == id);
        (live && !revoked).then(|| id.to_owned())
    }

    /// The CSRF token of a session: the page sends it back in `X-CSRF-Token` with every POST.
    pub fn csrf(&self, session_id: &str) -> String {
        self.mac("csrf", &[session_id])
    }

    /// Refuses the session from now on (logout).
    pub fn revoke(&self, session_id: &str) {
        let mut r = self.revoked.lock().unwrap_or_else(|p| p.into_inner());
        if r.len() >= REVOKED_MAX {
            r.pop_front();
        }
        r.push_back(session_id.to_owned());
    }
}

/// Failed logins per source address, in a sliding window.
#[derive(Default)]
pub struct LoginLimiter {
    failures: HashMap<IpAddr, VecDeque<u64>>,
    order: VecDeque<IpAddr>,
}

impl LoginLimiter {
    /// Whether `ip` may try now (fewer than [`LOGIN_FAILURES_MAX`] failures in the window).
    pub fn allowed(&mut self, ip: IpAddr, now_s: u64) -> bool {
        let Some(f) = self.failures.get_mut(&ip) else { return true };
        while f.front().is_some_and(|&t| t + LOGIN_WINDOW_S <= now_s) {
            f.pop_front();
        }
        f.len() < LOGIN_FAILURES_MAX
    }

    /// Counts a failed attempt of `ip`.
    pub fn failed(&mut self, ip: IpAddr, now_s: u64) {
        if !self.failures.contains_key(&ip) {
            if self.order.len() >= LOGIN_SOURCES_MAX {
                if let Some(old) = self.order.pop_front() {
                    self.failures.remove(&old);
                }
            }
            self.order.push_back(ip);
        }
        let f = self.failures.entry(ip).or_default();
        if f.len() >= LOGIN_FAILURES_MAX {
            f.pop_front();
        }
        f.push_back(now_s);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_valid_until_expiry_and_only_with_its_mac() {
        let keys = Keys::new([7; SECRET_BYTES]);
        let (cookie, id) = keys.new_session(1_000).unwrap();
        assert_eq!(keys.check_session(&cookie, 1_000).as_deref(), Some(id.as_str()));
        assert_eq!(keys.check_session(&cookie, 1_000 + SESSION_TTL_S - 1).as_deref(), Some(id.as_str()));
        assert_eq!(keys.check_session(&cookie, 1_000 + SESSION_TTL_S), None);
        let other = Keys::new([8; SECRET_BYTES]);
        assert_eq!(other.check_session(&cookie, 1_000), None);
        // Extending the expiry breaks the MAC.
        let mut p: Vec<&str> = cookie.split('.').collect();
        let later = (1_000 + 10 * SESSION_TTL_S).to_string();
        p[1] = &later;
        assert_eq!(keys.check_session(&p.join("."), 1_000), None);
        keys.revoke(&id);
        assert_eq!(keys.check_session(&cookie, 1_000), None);
    }

    #[test]
    fn csrf_tokens_differ_per_session_and_secret() {
        let keys = Keys::new([7; SECRET_BYTES]);
        assert_ne!(keys.csrf("a"), keys.csrf("b"));
        assert_ne!(keys.csrf("a"), Keys::new([9; SECRET_BYTES]).csrf("a"));
    }

    #[test]
    fn passphrases_are_stored_as_argon2id_and_checked() {
        let hash = hash_passphrase("1234").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(!hash.contains("1234$") && verify_passphrase(&hash, "1234"));
        assert!(!verify_passphrase(&hash, "1235"));
        assert!(matches!(hash_passphrase("123"), Err(AuthError::PassphraseLength)));
        assert!(hash_passphrase(&"x".repeat(PASSPHRASE_CHARS_MAX)).is_ok());
        assert!(matches!(hash_passphrase(&"x".repeat(PASSPHRASE_CHARS_MAX + 1)), Err(AuthError::PassphraseLength)));
    }

    #[test]
    fn five_failures_lock_an_address_for_the_window_only() {
        let mut l = LoginLimiter::default();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        for i in 0..LOGIN_FAILURES_MAX as u64 {
            assert!(l.allowed(ip, i));
            l.failed(ip, i);
        }
        assert!(!l.allowed(ip, 10));
        assert!(l.allowed("127.0.0.2".parse().unwrap(), 10));
        // The first failure leaves the window: one more try.
        assert!(!l.allowed(ip, LOGIN_WINDOW_S - 1));
        assert!(l.allowed(ip, LOGIN_WINDOW_S));
    }

    #[test]
    fn the_secret_file_is_private_and_stable() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create_secret(dir.path()).unwrap();
        assert_eq!(a, load_or_create_secret(dir.path()).unwrap());
        let mode = fs::metadata(dir.path().join(SECRET_FILE)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
