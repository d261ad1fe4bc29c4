//! Landlock (Linux ≥ 5.13): filesystem rules, TCP port rules (ABI ≥ 4) and scopes (ABI ≥ 6), applied
//! to the calling thread with `no_new_privs`. Landlock is an allow-list whose rights inherit down the
//! tree, so a denied path inside a granted directory is hidden by splitting that directory: it gets
//! `READ_DIR` only and each of its entries gets the rights instead, except the branch that leads to
//! the denied path (which is split again). New entries in a split directory cannot be created.

use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, AccessNet, BitFlags, CompatLevel, Compatible, LandlockStatus, NetPort, PathBeneath, PathFd,
    RestrictionStatus, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetError, RulesetStatus, Scope, ABI,
};

use super::{Net, Policy, Status, Unavailable, API_PORT, FAKE_ABI_VAR, SANDBOX_RULES_MAX};

/// The ABI that brought TCP port rules.
const ABI_NET: i32 = 4;
/// The ABI that brought signal and abstract-socket scoping, the last part of the policy.
const ABI_SCOPE: i32 = 6;

/// The rights one rule grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Rights {
    /// List the directory only (a directory holding a denied path).
    List,
    /// Read and execute.
    Read,
    /// Everything Landlock handles.
    Write,
}

/// One filesystem rule: a canonical path and its rights.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Grant {
    pub path: PathBuf,
    pub rights: Rights,
}

/// What [`restrict`] checks first, without restricting anything: Landlock present, and TCP rules
/// when the network is not open.
pub(super) fn preflight(net: Net) -> Result<(), Unavailable> {
    let (abi, _) = effective_abi()?;
    if abi < 1 {
        return Err(Unavailable::NoLandlock { abi });
    }
    if net != Net::On && abi < ABI_NET {
        return Err(Unavailable::NetworkNeedsAbi4 { abi });
    }
    Ok(())
}

/// Applies `policy` to the calling thread, or says why it cannot be applied in full.
pub(super) fn restrict(policy: &Policy) -> Result<Status, Unavailable> {
    let (abi, fake) = effective_abi()?;
    if abi < 1 {
        return Err(Unavailable::NoLandlock { abi });
    }
    if policy.net != Net::On && abi < ABI_NET {
        return Err(Unavailable::NetworkNeedsAbi4 { abi });
    }
    let grants = plan(policy)?;
    let restricted = enforce(&grants, policy.net, abi)?;
    // The kernel's own number (7 here) unless the test hook lowered it.
    let shown = if fake { abi } else { effective(&restricted.landlock).max(abi) };
    match restricted.ruleset {
        RulesetStatus::NotEnforced => Err(Unavailable::NotEnforced),
        RulesetStatus::FullyEnforced if abi >= ABI_SCOPE => Ok(Status::FullyEnforced { abi: shown }),
        _ => Ok(Status::PartiallyEnforced { abi: shown }),
    }
}

fn effective(status: &LandlockStatus) -> i32 {
    match status {
        LandlockStatus::Available { effective_abi, .. } => *effective_abi as i32,
        _ => 0,
    }
}

/// The kernel's Landlock ABI, lowered by the test hook if it is set.
/// Also says whether the hook is in force.
fn effective_abi() -> Result<(i32, bool), Unavailable> {
    let kernel = kernel_abi();
    match std::env::var(FAKE_ABI_VAR) {
        Ok(v) => v.trim().parse::<i32>().map(|fake| (fake.min(kernel), true)).map_err(|_| Unavailable::BadFakeAbi(v)),
        Err(_) => Ok((kernel, false)),
    }
}

/// The highest ABI whose rights this kernel handles: a ruleset asking for all of them with
/// HardRequirement is refused by the crate's compatibility check when the kernel lacks one. ABI 7
/// adds only logging flags, so this finds at most 6; the status reports the kernel's own number.
fn kernel_abi() -> i32 {
    (1..=ABI_SCOPE).rev().find(|n| handles(*n)).unwrap_or(0)
}

fn handles(abi: i32) -> bool {
    let version = ABI::from(abi);
    let ruleset = Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
    let mut ruleset = match ruleset.handle_access(AccessFs::from_all(version)) {
        Ok(r) => r,
        Err(_) => return false,
    };
    if abi >= ABI_NET {
        ruleset = match ruleset.handle_access(AccessNet::from_all(version)) {
            Ok(r) => r,
            Err(_) => return false,
        };
    }
    abi < ABI_SCOPE || ruleset.scope(Scope::from_all(version)).is_ok()
}

/// The filesystem rules `policy` expands to. Denied paths, and anything beneath them, get no rule.
pub(super) fn plan(policy: &Policy) -> Result<Vec<Grant>, Unavailable> {
    let deny: Vec<PathBuf> = policy.deny.iter().map(|d| d.canonicalize().unwrap_or_else(|_| d.clone())).collect();
    let mut grants = Vec::new();
    for (paths, rights) in [(&policy.read, Rights::Read), (&policy.write, Rights::Write)] {
        for path in paths {
            // Policy paths come from the node and may be symlinks (/lib64, a project under a link).
            let Ok(real) = path.canonicalize() else { continue };
            grant(real, rights, &deny, &mut grants)?;
        }
    }
    Ok(grants)
}

/// Grants `rights` on `path`, splitting it if it holds a denied path.
fn grant(path: PathBuf, rights: Rights, deny: &[PathBuf], out: &mut Vec<Grant>) -> Result<(), Unavailable> {
    if deny.iter().any(|d| path.starts_with(d)) {
        return Ok(());
    }
    if out.len() >= SANDBOX_RULES_MAX {
        return Err(Unavailable::TooManyRules);
    }
    if !deny.iter().any(|d| d.starts_with(&path)) {
        out.push(Grant { path, rights });
        return Ok(());
    }
    let entries = std::fs::read_dir(&path).map_err(|source| Unavailable::Path { path: path.clone(), source })?;
    out.push(Grant { path: path.clone(), rights: Rights::List });
    for entry in entries {
        let entry = entry.map_err(|source| Unavailable::Path { path: path.clone(), source })?;
        // A rule on a symlink would grant its target, wherever that is: links here get no rule
        // (their targets stay reachable if another rule covers them).
        if entry.file_type().map(|t| t.is_symlink()).unwrap_or(true) {
            continue;
        }
        grant(entry.path(), rights, deny, out)?;
    }
    Ok(())
}

/// Builds the ruleset for `abi` (HardRequirement: every right asked for must be handled) and
/// restricts the calling thread; `no_new_privs` is set by `restrict_self`.
fn enforce(grants: &[Grant], net: Net, abi: i32) -> Result<RestrictionStatus, Unavailable> {
    let failed = |e: RulesetError| Unavailable::Landlock(e.to_string());
    let version = ABI::from(abi);
    let mut ruleset = Ruleset::default().set_compatibility(CompatLevel::HardRequirement);
    ruleset = ruleset.handle_access(AccessFs::from_all(version)).map_err(failed)?;
    if net != Net::On {
        ruleset = ruleset.handle_access(AccessNet::from_all(version)).map_err(failed)?;
    }
    if abi >= ABI_SCOPE {
        ruleset = ruleset.scope(Scope::from_all(version)).map_err(failed)?;
    }
    let mut created = ruleset.create().map_err(failed)?;
    for g in grants {
        let fd = PathFd::new(&g.path).map_err(|e| Unavailable::Landlock(e.to_string()))?;
        created = created.add_rule(PathBeneath::new(fd, access(g, version))).map_err(failed)?;
    }
    if net == Net::Api {
        created = created.add_rule(NetPort::new(API_PORT, AccessNet::ConnectTcp)).map_err(failed)?;
    }
    created.restrict_self().map_err(failed)
}

/// The Landlock rights of a grant; a file gets only the rights that apply to files.
fn access(g: &Grant, abi: ABI) -> BitFlags<AccessFs> {
    let rights = match g.rights {
        Rights::List => BitFlags::from(AccessFs::ReadDir),
        Rights::Read => AccessFs::from_read(abi),
        Rights::Write => AccessFs::from_all(abi),
    };
    if is_dir(&g.path) {
        rights
    } else {
        rights & AccessFs::from_file(abi)
    }
}

fn is_dir(path: &Path) -> bool {
    path.metadata().map(|m| m.is_dir()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A project with `.darkmatter/`, a dir, a file and a link to the state; one per test (they run at once).
    fn tree(name: &str) -> PathBuf {
        let root = std::env::temp_dir().join(format!("dm-landlock-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("p/.darkmatter")).unwrap();
        std::fs::create_dir_all(root.join("p/src")).unwrap();
        std::fs::write(root.join("p/README"), "x").unwrap();
        std::os::unix::fs::symlink(root.join("p/.darkmatter"), root.join("p/state-link")).unwrap();
        root.canonicalize().unwrap()
    }

    #[test]
    fn a_dir_holding_a_denied_path_is_listed_only_and_its_other_entries_granted() {
        let root = tree("split");
        let p = root.join("p");
        let policy = Policy { write: vec![p.clone()], deny: vec![p.join(".darkmatter")], ..Policy::default() };
        let mut grants = plan(&policy).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        grants.sort_by(|a, b| a.path.cmp(&b.path));
        let w = |path: PathBuf| Grant { path, rights: Rights::Write };
        // No rule for .darkmatter, nor for the symlink to it.
        assert_eq!(grants, [Grant { path: p.clone(), rights: Rights::List }, w(p.join("README")), w(p.join("src"))]);
    }

    #[test]
    fn a_granted_parent_of_the_project_is_split_down_to_the_denied_path() {
        let root = tree("parent");
        let p = root.join("p");
        let policy = Policy { write: vec![root.clone()], deny: vec![p.join(".darkmatter")], ..Policy::default() };
        let grants = plan(&policy).unwrap();
        std::fs::remove_dir_all(&root).unwrap();
        assert!(grants.contains(&Grant { path: root.clone(), rights: Rights::List }));
        assert!(grants.contains(&Grant { path: p.clone(), rights: Rights::List }));
        assert!(!grants.iter().any(|g| g.path.starts_with(p.join(".darkmatter"))));
    }

    #[test]
    fn a_split_expanding_past_the_rule_bound_is_refused() {
        let root = std::env::temp_dir().join(format!("dm-landlock-max-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join(".darkmatter")).unwrap();
        // The directory's own listing rule plus one rule per entry but the denied one.
        for i in 0..SANDBOX_RULES_MAX - 1 {
            std::fs::write(root.join(i.to_string()), "").unwrap();
        }
        let policy = Policy { write: vec![root.clone()], deny: vec![root.join(".darkmatter")], ..Policy::default() };
        let at_bound = plan(&policy).map(|g| g.len());
        std::fs::write(root.join("one-more"), "").unwrap();
        let past_bound = plan(&policy);
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(at_bound.unwrap(), SANDBOX_RULES_MAX);
        assert!(matches!(past_bound, Err(Unavailable::TooManyRules)));
    }

    #[test]
    fn missing_policy_paths_are_skipped() {
        let policy = Policy { read: vec!["/nonexistent/darkmatter".into()], ..Policy::default() };
        assert_eq!(plan(&policy).unwrap(), []);
    }
}
