//! The sandbox a spawned agent runs in (SPEC §15): one policy, applied by the hidden
//! `darkmatter sandbox-exec` helper in a fresh single-threaded process that then `execvp`s the agent.
//!
//! - [`Policy`] says what the child may read, write and reach; [`Policy::for_agent`] builds the one
//!   the node uses (system dirs read-only, project and temp dirs writable, the client's own state dir,
//!   a short read-only list in home, the node's `.darkmatter/` hidden).
//! - [`sandbox_argv`] is the one call a spawner makes: it turns a policy and the agent's argv into the
//!   helper's argv (`<exe> sandbox-exec --write … --read … --deny … --net=… -- <argv>`).
//! - [`exec`] is what the helper runs: Landlock + seccomp on Linux, Seatbelt on macOS, a refusal
//!   elsewhere. It FAILS CLOSED: if any part of the policy cannot be applied it returns an error and
//!   never runs the child.

use std::ffi::{OsStr, OsString};
use std::io;
use std::path::{Path, PathBuf};

use crate::config::ClientProfile;

#[cfg(target_os = "linux")]
mod landlock;
pub mod seatbelt;
#[cfg(target_os = "linux")]
mod seccomp;

/// The helper's subcommand name.
pub const SUBCOMMAND: &str = "sandbox-exec";
/// Test hook: caps the Landlock ABI the helper believes the kernel has (`0` = "Landlock unavailable"),
/// so tests can prove the helper fails closed on kernels they do not run on. It can only lower the
/// ABI, never raise it.
pub const FAKE_ABI_VAR: &str = "DARKMATTER_SANDBOX_FAKE_ABI";
/// The only TCP port a child may connect to under [`Net::Api`]: HTTPS, where the model APIs are.
pub const API_PORT: u16 = 443;
/// Most filesystem rules one policy may expand to (each top-level entry of a directory that holds a
/// denied path is a rule of its own); beyond it the helper fails closed rather than grant the parent.
pub const SANDBOX_RULES_MAX: usize = 4096;

/// Read-only (and executable) for every child: the system. Missing ones are skipped.
pub const SYSTEM_READ_DIRS: &[&str] =
    &["/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc", "/opt", "/nix/store", "/proc", "/sys"];
/// Device nodes a child may write (Node.js CLIs open `/dev/null` for ignored stdio; terminals).
pub const DEVICES_WRITE: &[&str] = &["/dev/null", "/dev/zero", "/dev/tty", "/dev/pts", "/dev/ptmx"];
/// Device nodes a child may read.
pub const DEVICES_READ: &[&str] = &["/dev/urandom", "/dev/random"];
/// Shared temporary directories, writable.
pub const SHARED_TMP_DIRS: &[&str] = &["/tmp", "/var/tmp"];
/// The only entries of home a child may read (not write): git and npm settings and shell rc files.
/// The rest of home is neither readable nor writable, except the client's own state dirs.
pub const HOME_READ_ONLY: &[&str] =
    &[".gitconfig", ".config/git", ".npmrc", ".profile", ".bashrc", ".bash_profile", ".zshrc", ".zshenv", ".zprofile"];

/// What the child may reach on the network (`DARKMATTER_SANDBOX_NETWORK`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Net {
    /// Unrestricted (`true`).
    #[default]
    On,
    /// No TCP connect or bind, no UDP or other non-TCP IP sockets (`false`).
    Off,
    /// TCP connect to port 443 only, no TCP bind; UDP left open for DNS (`api`).
    Api,
}

impl Net {
    /// The helper's `--net` value.
    pub fn as_arg(self) -> &'static str {
        match self {
            Net::On => "on",
            Net::Off => "off",
            Net::Api => "api",
        }
    }

    /// Parses `on|off|api` and the boolean spellings of the configuration (`true` = on).
    pub fn parse(value: &str) -> Option<Net> {
        match value.to_ascii_lowercase().as_str() {
            "on" | "true" | "1" | "yes" => Some(Net::On),
            "off" | "false" | "0" | "no" => Some(Net::Off),
            "api" => Some(Net::Api),
            _ => None,
        }
    }
}

/// What a sandboxed child may touch. Paths must be absolute; missing ones are skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Policy {
    /// Read, write, create, execute beneath each.
    pub write: Vec<PathBuf>,
    /// Read and execute beneath each.
    pub read: Vec<PathBuf>,
    /// Neither readable nor writable, even when inside a `write` or `read` path.
    pub deny: Vec<PathBuf>,
    /// The network rule.
    pub net: Net,
}

impl Policy {
    /// The policy for an agent of `client` working in `project`: system dirs read-only, the project
    /// (without its `.darkmatter/`), `tmp` (the child's private `$TMPDIR`) and the shared temp dirs
    /// writable, the client's state dirs writable, [`HOME_READ_ONLY`] readable, nothing else of home.
    pub fn for_agent(project: &Path, home: &Path, tmp: &Path, client: ClientProfile, net: Net) -> Policy {
        let mut write = vec![project.to_path_buf(), tmp.to_path_buf()];
        write.extend(SHARED_TMP_DIRS.iter().map(PathBuf::from));
        write.extend(DEVICES_WRITE.iter().map(PathBuf::from));
        write.extend(client_state_paths(client, home));
        let mut read: Vec<PathBuf> = SYSTEM_READ_DIRS.iter().chain(DEVICES_READ).map(PathBuf::from).collect();
        read.extend(HOME_READ_ONLY.iter().map(|p| home.join(p)));
        Policy { write, read, deny: vec![project.join(".darkmatter")], net }
    }
}

/// The state a client CLI keeps in home, which it needs to authenticate and write its sessions.
/// Claude Code's `~/.claude*` is matched against home's entries now (`.claude`, `.claude.json`, ...).
pub fn client_state_paths(client: ClientProfile, home: &Path) -> Vec<PathBuf> {
    let fixed: &[&str] = match client {
        ClientProfile::ClaudeCode => &[".claude", ".claude.json"],
        ClientProfile::Cursor => &[".cursor", ".config/cursor"],
        ClientProfile::Gemini => &[".gemini"],
        ClientProfile::Codex => &[".codex"],
        ClientProfile::Kimi => &[".kimi"],
        ClientProfile::OpenCode => &[".config/opencode", ".local/share/opencode"],
        ClientProfile::OpenClaw => &[".openclaw"],
    };
    let mut paths: Vec<PathBuf> = fixed.iter().map(|p| home.join(p)).collect();
    if client == ClientProfile::ClaudeCode {
        let more: Vec<PathBuf> =
            entries_with_prefix(home, ".claude").into_iter().filter(|p| !paths.contains(p)).collect();
        paths.extend(more);
    }
    paths
}

/// Creates the client's state directories in home (0700) that do not exist yet. Landlock can only
/// grant a path that exists, so on a first run the client could not create its own state: it would
/// run without it or fail to log in. Files (`.claude.json`) are left to the client, in home, which
/// stays closed: only the directories are made.
pub fn create_state_dirs(client: ClientProfile, home: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    for dir in client_state_paths(client, home).into_iter().filter(|p| p.extension().is_none_or(|e| e != "json")) {
        if !dir.exists() {
            std::fs::DirBuilder::new().recursive(true).mode(0o700).create(&dir)?;
        }
    }
    Ok(())
}

/// Home's entries whose name starts with `prefix`, sorted (bounded by [`SANDBOX_RULES_MAX`]).
fn entries_with_prefix(dir: &Path, prefix: &str) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut found: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .take(SANDBOX_RULES_MAX)
        .collect();
    found.sort();
    found
}

/// The helper's argv: `<exe> sandbox-exec --write <p>… --read <p>… --deny <p>… --net=<n> -- <child_argv>`.
/// The spawner runs this instead of `child_argv` when `DARKMATTER_SANDBOX=true`.
pub fn sandbox_argv(exe: &Path, policy: &Policy, child_argv: &[OsString]) -> Vec<OsString> {
    let mut argv = vec![exe.as_os_str().to_owned(), SUBCOMMAND.into()];
    let flagged = [("--write", &policy.write), ("--read", &policy.read), ("--deny", &policy.deny)];
    for (flag, paths) in flagged {
        for path in paths {
            argv.push(flag.into());
            argv.push(path.as_os_str().to_owned());
        }
    }
    argv.push(format!("--net={}", policy.net.as_arg()).into());
    argv.push("--".into());
    argv.extend(child_argv.iter().cloned());
    argv
}

/// How much of the policy the kernel enforces, reported on stderr before the exec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// Every rule of the policy is in force (Landlock ABI ≥ 6 with scopes, or Seatbelt).
    FullyEnforced {
        /// The Landlock ABI used (0 for Seatbelt).
        abi: i32,
    },
    /// The filesystem (and, if asked, network) rules are in force, but this kernel's ABI lacks some
    /// additions (signal and abstract-socket scoping before ABI 6, `REFER`/`TRUNCATE` before 2/3).
    PartiallyEnforced {
        /// The Landlock ABI used.
        abi: i32,
    },
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::FullyEnforced { abi } => write!(f, "FullyEnforced(abi={abi})"),
            Status::PartiallyEnforced { abi } => write!(f, "PartiallyEnforced(abi={abi})"),
        }
    }
}

/// Why the policy could not be applied in full. Every one of these means the child was NOT run.
#[derive(Debug, thiserror::Error)]
pub enum Unavailable {
    /// The kernel has no Landlock (not built in, disabled at boot), or the test hook says ABI 0.
    #[error("Landlock is not available on this kernel (ABI {abi})")]
    NoLandlock {
        /// The ABI found (0 or less).
        abi: i32,
    },
    /// `--net=off|api` needs Landlock's TCP rules, which came with ABI 4.
    #[error("network rules need Landlock ABI 4, this kernel has ABI {abi}")]
    NetworkNeedsAbi4 {
        /// The ABI found.
        abi: i32,
    },
    /// The test hook's value is not an integer.
    #[error("{FAKE_ABI_VAR} must be an integer, not {0:?}")]
    BadFakeAbi(String),
    /// A policy path is relative (the helper does not guess the directory it is relative to).
    #[error("policy path {0} is not absolute")]
    RelativePath(PathBuf),
    /// A directory holding a denied path could not be listed, or a path not opened for its rule.
    #[error("cannot open {path}: {source}")]
    Path {
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The policy expands to more than [`SANDBOX_RULES_MAX`] rules.
    #[error("the policy needs more than {SANDBOX_RULES_MAX} rules")]
    TooManyRules,
    /// The kernel refused a step of the Landlock ruleset.
    #[error("Landlock: {0}")]
    Landlock(String),
    /// `landlock_restrict_self` reported the ruleset as not enforced.
    #[error("the kernel did not enforce the Landlock ruleset")]
    NotEnforced,
    /// The seccomp filter for `--net=off` could not be built or installed.
    #[error("seccomp: {0}")]
    Seccomp(String),
    /// macOS without `/usr/bin/sandbox-exec`.
    #[error("/usr/bin/sandbox-exec is missing")]
    NoSeatbelt,
    /// An OS with no sandbox mechanism here.
    #[error("no sandbox mechanism on this operating system")]
    UnsupportedOs,
}

/// Why `sandbox-exec` returned instead of becoming the child.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// The policy could not be applied in full; the child was never run.
    #[error("sandbox unavailable: {0}")]
    Unavailable(#[from] Unavailable),
    /// The policy is in force, but the child program could not be executed.
    #[error("sandbox-exec: cannot run {program:?}: {source}")]
    Exec {
        /// `argv[0]`.
        program: OsString,
        /// The OS error of `execvp`.
        source: io::Error,
    },
    /// No child argv after `--`.
    #[error("sandbox-exec: no command after --")]
    NoCommand,
}

/// Applies `policy` to this process, reports the status on stderr and `execvp`s `argv`. Returns
/// only on failure; then the child never ran. Call it only from a fresh single-threaded process
/// (Landlock and seccomp restrict the calling thread).
pub fn exec(policy: &Policy, argv: &[OsString]) -> SandboxError {
    let Some((program, args)) = argv.split_first() else { return SandboxError::NoCommand };
    if let Some(path) = policy.write.iter().chain(&policy.read).chain(&policy.deny).find(|p| !p.is_absolute()) {
        return Unavailable::RelativePath(path.clone()).into();
    }
    match restrict(policy, program) {
        Ok(status) => eprintln!("sandbox: {status}"),
        Err(why) => return why.into(),
    }
    run(policy, program, args)
}

/// Whether a policy with network setting `net` can be applied in full here, checked before a spawn
/// so that a node refuses it with the reason instead of starting a helper bound to fail. The helper
/// checks again when it applies the policy (fail closed either way).
pub fn preflight(net: Net) -> Result<(), Unavailable> {
    #[cfg(target_os = "linux")]
    return landlock::preflight(net);
    #[cfg(target_os = "macos")]
    return match Path::new(seatbelt::SANDBOX_EXEC).exists() {
        true => Ok(()),
        false => Err(Unavailable::NoSeatbelt),
    };
    #[cfg(not(any(target_os = "linux", target_os = "macos")))]
    {
        let _ = net;
        Err(Unavailable::UnsupportedOs)
    }
}

#[cfg(target_os = "linux")]
fn restrict(policy: &Policy, _program: &OsStr) -> Result<Status, Unavailable> {
    let status = landlock::restrict(policy)?;
    if policy.net == Net::Off {
        seccomp::refuse_non_tcp_sockets()?;
    }
    Ok(status)
}

#[cfg(target_os = "macos")]
fn restrict(_policy: &Policy, _program: &OsStr) -> Result<Status, Unavailable> {
    // Seatbelt applies at the exec of /usr/bin/sandbox-exec in `run`; only its presence is checked here.
    if Path::new(seatbelt::SANDBOX_EXEC).exists() {
        Ok(Status::FullyEnforced { abi: 0 })
    } else {
        Err(Unavailable::NoSeatbelt)
    }
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
fn restrict(_policy: &Policy, _program: &OsStr) -> Result<Status, Unavailable> {
    Err(Unavailable::UnsupportedOs)
}

#[cfg(target_os = "linux")]
fn run(_policy: &Policy, program: &OsStr, args: &[OsString]) -> SandboxError {
    use std::os::unix::process::CommandExt;
    let source = std::process::Command::new(program).args(args).exec();
    SandboxError::Exec { program: program.to_owned(), source }
}

#[cfg(not(target_os = "linux"))]
fn run(policy: &Policy, program: &OsStr, args: &[OsString]) -> SandboxError {
    seatbelt::run(policy, program, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_lists_each_path_under_its_flag_then_the_child_after_the_separator() {
        let policy = Policy {
            write: vec!["/p".into()],
            read: vec!["/usr".into(), "/etc".into()],
            deny: vec!["/p/.darkmatter".into()],
            net: Net::Api,
        };
        let argv = sandbox_argv(Path::new("/bin/darkmatter"), &policy, &["claude".into(), "-p".into()]);
        let text: Vec<&str> = argv.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(
            text,
            [
                "/bin/darkmatter",
                "sandbox-exec",
                "--write",
                "/p",
                "--read",
                "/usr",
                "--read",
                "/etc",
                "--deny",
                "/p/.darkmatter",
                "--net=api",
                "--",
                "claude",
                "-p"
            ]
        );
    }

    #[test]
    fn agent_policy_hides_the_node_state_and_home_except_the_listed_entries() {
        let home = Path::new("/nonexistent-home");
        let p = Policy::for_agent(Path::new("/w/p"), home, Path::new("/tmp/x"), ClientProfile::Codex, Net::Off);
        assert_eq!(p.deny, [PathBuf::from("/w/p/.darkmatter")]);
        assert!(p.write.contains(&PathBuf::from("/w/p")) && p.write.contains(&home.join(".codex")));
        assert!(p.write.contains(&PathBuf::from("/dev/null")));
        assert!(!p.write.iter().chain(&p.read).any(|x| x == home), "home itself is never granted");
        assert!(p.read.contains(&home.join(".gitconfig")) && !p.write.contains(&home.join(".gitconfig")));
        assert_eq!(p.net, Net::Off);
    }

    #[test]
    fn claude_state_matches_every_dot_claude_entry_of_home() {
        let home = std::env::temp_dir().join(format!("dm-sandbox-unit-{}", std::process::id()));
        std::fs::create_dir_all(home.join(".claude-extra")).unwrap();
        std::fs::create_dir_all(home.join(".codex")).unwrap();
        let paths = client_state_paths(ClientProfile::ClaudeCode, &home);
        std::fs::remove_dir_all(&home).unwrap();
        assert_eq!(paths, [home.join(".claude"), home.join(".claude.json"), home.join(".claude-extra")]);
    }

    #[test]
    fn net_parses_the_helper_values_and_the_config_booleans() {
        assert_eq!(Net::parse("API"), Some(Net::Api));
        assert_eq!(Net::parse("true"), Some(Net::On));
        assert_eq!(Net::parse("off"), Some(Net::Off));
        assert_eq!(Net::parse("maybe"), None);
        for net in [Net::On, Net::Off, Net::Api] {
            assert_eq!(Net::parse(net.as_arg()), Some(net));
        }
    }
}
