//! AntiMatter routing on the node: payments in, games out, signals and results between nodes.

use std::collections::BTreeMap;

use crate::antimatter::game::{Game, Sessions};
use crate::antimatter::ledger::Ledger;
use crate::antimatter::signal::Signal;

#[allow(dead_code)] // played by the endpoints wired next
/// A game this node is playing for a signal (its own or one forwarded to it).
#[derive(Debug)]
pub(crate) struct Playing {
    pub(crate) game: Game,
    pub(crate) signal: Signal,
}

#[allow(dead_code)] // played by the endpoints wired next
/// The node's AntiMatter state.
#[derive(Debug, Default)]
pub(crate) struct AntiMatter {
    pub(crate) ledger: Ledger,
    pub(crate) sessions: Sessions,
    pub(crate) playing: BTreeMap<String, Playing>,
}
