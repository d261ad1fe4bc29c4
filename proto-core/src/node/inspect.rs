//! [`Inspect`]: a borrowed, read-only view of a node for observers (the simulator's measurements,
//! tests). Everything a driver must do goes through `handle_*` and `poll_output`; what an observer
//! only reads is grouped here, so that no reading method is mistaken for a side door: none of them
//! changes the node, emits an output or spends randomness.

use crate::discovery::Discovered;
use crate::node::Node;
use crate::time::Now;

/// A read-only view of one [`Node`] (see [`Node::inspect`]).
#[derive(Clone, Copy)]
pub struct Inspect<'a> {
    node: &'a Node,
}

impl Node {
    /// A read-only view for observers: scores, discovered peers, counters.
    pub fn inspect(&self) -> Inspect<'_> {
        Inspect { node: self }
    }
}

impl Inspect<'_> {
    /// Our impression score of an agent; 0.0 (neutral) when we have none.
    pub fn trust_of(&self, agent_id: &str) -> f64 {
        self.node.trust_of(agent_id)
    }

    /// Peers discovered and not yet expired (as of the node's last input), most recent first.
    pub fn discovered(&self) -> Vec<Discovered> {
        self.node.discovered()
    }

    /// Agent-id parses (point decompressions) the node has performed on peers' ids: ids of
    /// connections and of recently seen agents are not parsed again.
    pub fn key_parses(&self) -> u64 {
        self.node.key_parses()
    }

    /// The node's signed beacon for HTTP port `port`, stamped `now`, as a datagram payload: what
    /// [`Node::handle_announce`] would queue, for a simulator that delivers beacons itself. Signing
    /// is deterministic, so reading it changes no state of the node.
    pub fn beacon(&self, now: Now, port: u16) -> Vec<u8> {
        self.node.beacon(now, port)
    }
}
