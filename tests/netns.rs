//! Two network namespaces joined by a veth pair, for the tests that need two hosts: LAN discovery
//! across an interface (`smol_discovery.rs`) and a node that cannot be dialled (`smol_relay.rs`).
//!
//! They need root and `ip netns` (iproute2, which `.ci/run` installs). Where that is missing a test
//! fails, unless the user sets [`SKIP_VAR`] to 1: then it says so and passes.
#![allow(dead_code)]

use std::path::Path;
use std::process::Command as Proc;

/// Set to `1` to skip the namespace tests on a machine that cannot make network namespaces.
pub const SKIP_VAR: &str = "DARKMATTER_SKIP_NETNS";

/// Two namespaces, `10.77.<subnet>.1` and `.2`, joined by a veth pair; removed when dropped.
pub struct VethPair {
    names: [String; 2],
    link: String,
    subnet: u8,
}

/// Runs `ip` with `args`; its stderr is the error.
pub fn ip(args: &[&str]) -> Result<(), String> {
    let out = Proc::new("ip").args(args).output().map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("ip {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl VethPair {
    /// Makes the pair. `tag` (one letter) and `subnet` keep the names and addresses of tests that run
    /// at once apart; with `multicast`, 224.0.0.0/4 is routed through the veth (the namespaces have
    /// no default route, and LAN beacons must leave through it).
    pub fn create(tag: char, subnet: u8, multicast: bool) -> Result<Self, String> {
        let pid = std::process::id();
        let names = [format!("dm{tag}{pid}a"), format!("dm{tag}{pid}b")];
        let links = [format!("dm{tag}v{pid}a"), format!("dm{tag}v{pid}b")];
        let pair = Self { names: names.clone(), link: links[0].clone(), subnet };
        for n in &names {
            ip(&["netns", "add", n])?;
        }
        ip(&["link", "add", &links[0], "type", "veth", "peer", "name", &links[1]])?;
        for i in 0..2 {
            let (ns, link) = (&names[i], &links[i]);
            ip(&["link", "set", link, "netns", ns])?;
            ip(&["-n", ns, "addr", "add", &format!("{}/24", pair.addr(i)), "dev", link])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
            ip(&["-n", ns, "link", "set", link, "up"])?;
            if multicast {
                ip(&["-n", ns, "route", "add", "224.0.0.0/4", "dev", link])?;
            }
        }
        Ok(pair)
    }

    /// The address of namespace `i` (0 or 1) on the veth.
    pub fn addr(&self, i: usize) -> String {
        format!("10.77.{}.{}", self.subnet, i + 1)
    }

    /// The arguments of `ip` that run `program` in namespace `i`.
    pub fn exec_args(&self, i: usize, program: &Path) -> Vec<String> {
        vec!["netns".into(), "exec".into(), self.names[i].clone(), program.to_str().unwrap().to_owned()]
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        for n in &self.names {
            let _ = ip(&["netns", "del", n]);
        }
        // Only left behind if setup failed half-way (deleting a namespace deletes its veth end).
        let _ = ip(&["link", "del", &self.link]);
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    Proc::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

/// `test` cannot run because of `why`: fails, or, when the user asked to skip, says so and returns
/// true (the caller returns).
pub fn cannot_run(test: &str, why: &str) -> bool {
    if std::env::var(SKIP_VAR).as_deref() == Ok("1") {
        eprintln!("SKIPPED (by {SKIP_VAR}=1) {test}: {why}");
        return true;
    }
    panic!("{test} cannot run: {why} (set {SKIP_VAR}=1 to skip it)");
}

/// The pair for `test`, or `None` when it cannot be made and the user asked to skip (see
/// [`cannot_run`]).
pub fn pair_for(test: &str, tag: char, subnet: u8, multicast: bool) -> Option<VethPair> {
    if !is_root() && cannot_run(test, "needs root for `ip netns`") {
        return None;
    }
    match VethPair::create(tag, subnet, multicast) {
        Ok(pair) => Some(pair),
        Err(e) => {
            cannot_run(test, &format!("network namespaces unavailable ({e})"));
            None
        }
    }
}
