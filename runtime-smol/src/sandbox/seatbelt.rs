//! macOS: the policy as a Seatbelt profile for `/usr/bin/sandbox-exec -p <profile> -- <argv>`.
//! The generator is pure and snapshot-tested on every OS; only the exec is macOS-only. Like Codex's
//! base policy: deny by default, read-only system, writable roots with the denied paths carved out by
//! `require-not`, `mach-lookup` limited to a short list (network services only when the network is).

use std::fmt::Write;
use std::path::Path;

use super::{Net, Policy, API_PORT};

/// The system's Seatbelt front end.
pub const SANDBOX_EXEC: &str = "/usr/bin/sandbox-exec";

/// macOS system paths read by every process (in addition to the policy's read list).
const MACOS_READ: &[&str] = &["/System", "/Library", "/private", "/var", "/dev", "/Applications"];
/// Mach services every child needs (logging, preferences, user/group lookups, the security framework).
const MACH_BASE: &[&str] = &[
    "com.apple.system.logger",
    "com.apple.system.opendirectoryd.libinfo",
    "com.apple.cfprefsd.daemon",
    "com.apple.cfprefsd.agent",
    "com.apple.SecurityServer",
    "com.apple.trustd.agent",
];
/// Mach services that reach the network (DNS, network configuration): only when the network is allowed.
const MACH_NETWORK: &[&str] = &[
    "com.apple.dnssd.service",
    "com.apple.networkd",
    "com.apple.SystemConfiguration.configd",
    "com.apple.nsurlsessiond",
];

/// The profile for `policy`.
pub fn profile(policy: &Policy) -> String {
    let mut p = String::from("(version 1)\n(deny default)\n");
    p.push_str("(allow process-exec process-fork)\n(allow signal (target same-sandbox))\n");
    p.push_str("(allow process-info* (target same-sandbox))\n(allow sysctl-read)\n(allow file-read-metadata)\n");
    p.push_str("(allow pseudo-tty)\n(allow ipc-posix-sem)\n");
    let mach = MACH_BASE.iter().chain(if policy.net == Net::On || policy.net == Net::Api { MACH_NETWORK } else { &[] });
    p.push_str("(allow mach-lookup\n");
    for service in mach {
        let _ = writeln!(p, "  (global-name \"{service}\")");
    }
    p.push_str(")\n(allow file-read*\n  (literal \"/\")\n");
    for path in MACOS_READ.iter().map(Path::new).chain(policy.read.iter().map(|p| p.as_path())) {
        let _ = writeln!(p, "  {}", carved(path, policy));
    }
    p.push_str(")\n(allow file-read* file-write*\n");
    for path in &policy.write {
        let _ = writeln!(p, "  {}", carved(path, policy));
    }
    p.push_str(")\n");
    for path in &policy.deny {
        let _ = writeln!(p, "(deny file-read* file-write* (subpath {}))", quoted(path));
    }
    p.push_str(network(policy.net));
    p
}

/// `(subpath P)`, or `(require-all (subpath P) (require-not (subpath D))…)` when denied paths lie beneath.
fn carved(path: &Path, policy: &Policy) -> String {
    let inner: Vec<&std::path::PathBuf> = policy.deny.iter().filter(|d| d.starts_with(path)).collect();
    if inner.is_empty() {
        return format!("(subpath {})", quoted(path));
    }
    let mut s = format!("(require-all (subpath {})", quoted(path));
    for d in inner {
        let _ = write!(s, " (require-not (subpath {}))", quoted(d));
    }
    s.push(')');
    s
}

fn network(net: Net) -> &'static str {
    match net {
        Net::On => "(allow network-outbound)\n(allow network-inbound)\n(allow network-bind)\n(allow system-socket)\n",
        Net::Off => "",
        Net::Api => API_RULES,
    }
}

// Seatbelt matches remote addresses as "host:port"; "*" is any host. DNS (port 53) goes through
// mDNSResponder's mach service, allowed above.
const API_RULES: &str = concat!("(allow network-outbound (remote tcp \"*:", "443", "\"))\n(allow system-socket)\n");
const _: () = assert!(API_PORT == 443, "API_RULES spells the API port");

/// A Seatbelt string literal.
fn quoted(path: &Path) -> String {
    let text = path.to_string_lossy();
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Runs `argv` under the profile (macOS): `/usr/bin/sandbox-exec -p <profile> -- <argv>`.
#[cfg(target_os = "macos")]
pub(super) fn run(policy: &Policy, program: &std::ffi::OsStr, args: &[std::ffi::OsString]) -> super::SandboxError {
    use std::os::unix::process::CommandExt;
    // Seatbelt matches resolved paths (/tmp is /private/tmp there), so the profile names those.
    let real = |paths: &[std::path::PathBuf]| -> Vec<std::path::PathBuf> {
        paths.iter().map(|p| p.canonicalize().unwrap_or_else(|_| p.clone())).collect()
    };
    let resolved =
        Policy { write: real(&policy.write), read: real(&policy.read), deny: real(&policy.deny), net: policy.net };
    let mut command = std::process::Command::new(SANDBOX_EXEC);
    let source = command.arg("-p").arg(profile(&resolved)).arg("--").arg(program).args(args).exec();
    super::SandboxError::Exec { program: SANDBOX_EXEC.into(), source }
}

/// Elsewhere there is no Seatbelt; `exec` refuses before reaching here.
#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub(super) fn run(_policy: &Policy, _program: &std::ffi::OsStr, _args: &[std::ffi::OsString]) -> super::SandboxError {
    super::Unavailable::UnsupportedOs.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(net: Net) -> Policy {
        Policy {
            write: vec!["/Users/u/proj".into(), "/tmp".into(), "/Users/u/.claude".into()],
            read: vec!["/usr".into(), "/Users/u/.gitconfig".into(), "/Users/u/with \"quote\"".into()],
            deny: vec!["/Users/u/proj/.darkmatter".into()],
            net,
        }
    }

    #[test]
    fn profile_network_on() {
        insta::assert_snapshot!(profile(&policy(Net::On)));
    }

    #[test]
    fn profile_network_off() {
        insta::assert_snapshot!(profile(&policy(Net::Off)));
    }

    #[test]
    fn profile_network_api() {
        insta::assert_snapshot!(profile(&policy(Net::Api)));
    }
}
