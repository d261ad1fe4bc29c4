//! The seccomp filter of `--net=off`: Landlock's network rules cover TCP only, so every other IP
//! socket (UDP, raw, SCTP, MPTCP...) is refused at creation with `EPERM`, and `io_uring_setup` too
//! (io_uring can create sockets without the `socket` system call). TCP sockets stay creatable;
//! Landlock refuses their `connect` and `bind`. Unix sockets are untouched (the attach socket).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter, SeccompRule, TargetArch,
};

use super::Unavailable;

/// `SOCK_TYPE_MASK`: the type without `SOCK_NONBLOCK`/`SOCK_CLOEXEC`.
const SOCK_TYPE_MASK: u64 = 0xf;
/// Every socket type but `SOCK_STREAM`: DGRAM, RAW, RDM, SEQPACKET, DCCP, PACKET.
const NON_STREAM_TYPES: [u64; 6] = [2, 3, 4, 5, 6, 10];

/// Installs the filter on the calling thread (`no_new_privs` is already set by Landlock).
pub(super) fn refuse_non_tcp_sockets() -> Result<(), Unavailable> {
    let program = program().map_err(|e| Unavailable::Seccomp(e.to_string()))?;
    seccompiler::apply_filter(&program).map_err(|e| Unavailable::Seccomp(e.to_string()))
}

fn program() -> Result<BpfProgram, seccompiler::Error> {
    let arch = TargetArch::try_from(std::env::consts::ARCH)?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    rules.insert(libc::SYS_socket, socket_rules()?);
    rules.insert(libc::SYS_io_uring_setup, vec![]);
    // x32 system calls share x86_64's audit arch with this bit set in the number; where a kernel
    // still enables them they would otherwise slip past the rules above (other arches are killed
    // by the filter's arch check).
    #[cfg(target_arch = "x86_64")]
    {
        const X32_SYSCALL_BIT: i64 = 0x4000_0000;
        rules.insert(libc::SYS_socket | X32_SYSCALL_BIT, socket_rules()?);
        rules.insert(libc::SYS_io_uring_setup | X32_SYSCALL_BIT, vec![]);
    }
    let filter = SeccompFilter::new(rules, SeccompAction::Allow, SeccompAction::Errno(libc::EPERM as u32), arch)?;
    Ok(filter.try_into()?)
}

/// `socket(domain, type, protocol)` is refused when the domain is IPv4/IPv6 and the type is not a
/// stream, or it is a stream of a protocol other than TCP (0 or `IPPROTO_TCP`).
fn socket_rules() -> Result<Vec<SeccompRule>, seccompiler::Error> {
    let arg = |index, op, value| SeccompCondition::new(index, SeccompCmpArgLen::Dword, op, value);
    let mut rules = Vec::new();
    for domain in [libc::AF_INET as u64, libc::AF_INET6 as u64] {
        for ty in NON_STREAM_TYPES {
            rules.push(SeccompRule::new(vec![
                arg(0, SeccompCmpOp::Eq, domain)?,
                arg(1, SeccompCmpOp::MaskedEq(SOCK_TYPE_MASK), ty)?,
            ])?);
        }
        rules.push(SeccompRule::new(vec![
            arg(0, SeccompCmpOp::Eq, domain)?,
            arg(1, SeccompCmpOp::MaskedEq(SOCK_TYPE_MASK), libc::SOCK_STREAM as u64)?,
            arg(2, SeccompCmpOp::Ne, 0)?,
            arg(2, SeccompCmpOp::Ne, libc::IPPROTO_TCP as u64)?,
        ])?);
    }
    Ok(rules)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_filter_compiles_for_this_arch() {
        assert!(!super::program().unwrap().is_empty());
    }
}
