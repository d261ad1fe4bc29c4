//! What the tools need from a running node: runtime-smol's [`Mesh`] trait, the node's command
//! surface. The in-process node handle implements it, and so does the attach-mode client
//! ([`crate::attach::Client`]); tests drive fakes through the same trait.

pub use runtime_smol::{BoxFut, Mesh};
