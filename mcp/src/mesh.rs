//! What the tools need from a running node, as a small trait.
//!
//! The production implementation is runtime-smol's node handle (see [`crate::node`]); tests drive
//! in-memory proto-core nodes through the same trait. Every method is callable from any executor:
//! results come back over runtime-agnostic channels, never through a reactor of a particular runtime.

use std::future::Future;
use std::pin::Pin;

use proto_core::{Command, CommandError, Event};
use serde_json::Value;

/// A boxed, sendable future: what the trait's async methods return (keeps the trait object-safe).
pub type BoxFut<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A running DarkMatter node, as seen by the MCP tools.
pub trait Mesh: Send + Sync + 'static {
    /// Runs one proto-core command; answers with its JSON result once the node (and, for sends,
    /// connects and waits, the peers involved) has answered.
    fn command(&self, command: Command) -> BoxFut<'_, Result<Value, CommandError>>;

    /// Looks for peers now: LAN beacons and a localhost port scan. Answers with the peers found, each
    /// with its card.
    fn discover_local(&self) -> BoxFut<'_, Result<Value, CommandError>>;

    /// Fetches `https://<domain>/.well-known/darkmatter.json` and answers with the card found there.
    fn discover_domain(&self, domain: String) -> BoxFut<'_, Result<Value, CommandError>>;

    /// The node's event stream. There is one stream per node: call this once and fan out
    /// ([`crate::events::Hub`] does).
    fn events(&self) -> async_channel::Receiver<Event>;

    /// Stops the node (flushes state, closes the port). Idempotent.
    fn shutdown(&self) -> BoxFut<'_, ()>;
}
