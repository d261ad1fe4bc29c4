//! Local commands: what the agent (through the MCP tools) can ask its node to do.
//!
//! Most commands answer at once; `Connect`, `Send`, `Forward` and `WaitForResponse` answer when the
//! peers have (their [`crate::io::Output::Done`] comes out of a later `poll_output`).

use crate::message::{ForwardArgs, SendArgs};

/// A request from the local agent.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    /// Ask a node at this URL to connect.
    Connect {
        /// Its base URL.
        target_url: String,
    },
    /// Accept a pending request.
    Accept {
        /// The request.
        request_id: String,
    },
    /// Reject a pending request.
    Reject {
        /// The request.
        request_id: String,
    },
    /// Drop a connection and tell the peer.
    Disconnect {
        /// The peer.
        agent_id: String,
    },
    /// Connections with their details.
    ListConnections,
    /// Pending incoming requests.
    ListPending,
    /// Send a new message.
    Send(SendArgs),
    /// Forward an inbox message.
    Forward(ForwardArgs),
    /// The inbox, newest last.
    ListInbox,
    /// One inbox message in full; `consume` removes it from the inbox.
    GetMessage {
        /// Which.
        message_id: String,
        /// Remove it after reading.
        consume: bool,
    },
    /// Sent messages, newest first.
    ListSent,
    /// One sent message with its responses and updates.
    GetSent {
        /// Which.
        message_id: String,
    },
    /// Mark a sent message expired: waits end, and 0.5.3 forwarders (which read the webhook status)
    /// stop forwarding it.
    ExpireSent {
        /// Which.
        message_id: String,
    },
    /// Complete when a reply to this sent message arrives, or after `timeout_ms`.
    WaitForResponse {
        /// Which.
        message_id: String,
        /// How long at most.
        timeout_ms: u64,
    },
    /// Our identity.
    GetIdentity,
    /// Change our bio and tell peers.
    UpdateBio {
        /// The new bio.
        bio: String,
    },
    /// Change our display name and tell peers (signed, like a bio change). Lasts until the next start
    /// when the runtime configures a name (that one wins at start), else for good.
    Rename {
        /// The new name.
        display_name: String,
    },
    /// Go inactive (optionally for a while) or active.
    SetStatus {
        /// `true` = active.
        active: bool,
        /// Reactivate after this many minutes (inactive only).
        duration_minutes: Option<u64>,
    },
    /// Our public URL changed (the runtime noticed); tell peers.
    SetUrl {
        /// The new URL.
        url: String,
    },
    /// Switch agent spawning on or off at run time (a node without spawn settings refuses). Only the
    /// node's user may: never from the mesh, never from a spawned agent. Not kept across a restart.
    SetSpawning {
        /// `true` = spawn agents for new triggers.
        enabled: bool,
    },
    /// Set our impression of an agent.
    SetImpression {
        /// The agent.
        agent_id: String,
        /// -1..1.
        score: f64,
        /// A note.
        note: Option<String>,
    },
    /// Our impression of an agent.
    GetImpression {
        /// The agent.
        agent_id: String,
    },
    /// Change a rate limit: 0 default, -1 unlimited, n per minute. No agent: the global limit.
    SetRateLimit {
        /// The peer, or `None` for the global limit.
        agent_id: Option<String>,
        /// The tool encoding.
        limit: i64,
    },
    /// The one-glance summary. A pure read: its `new_context` stays new until [`Command::MarkShown`].
    Status,
    /// The agent has seen the conversation entries up to this sequence number (the largest `seq` of
    /// a status report's `new_context`): later reports no longer list them as new. Not persisted.
    MarkShown {
        /// The newest entry seen.
        through: u64,
    },
    /// Our identity and peers as `/network_info` shows them.
    NetworkInfo,
    /// The AntiMatter log and counts. A pure read.
    AntiMatterLog,
    /// Peers discovered on the LAN or by scans.
    ListDiscovered,
    /// Scan the localhost ports of [`crate::node::Config::scan_ports`] now; done when every probe has
    /// answered, with the peers found.
    DiscoverLocal,
    /// Fetch `https://<domain>/.well-known/darkmatter.json` (`http` for localhost) and note its node.
    DiscoverDomain {
        /// A host, `host:port`, or a URL.
        domain: String,
    },
    /// Create a shard and sync it to qualifying peers.
    CreateShard(crate::shards::ShardArgs),
    /// Replace one of our shards (peers holding it get the new version).
    UpdateShard {
        /// Which.
        shard_id: String,
        /// The new version.
        args: crate::shards::ShardArgs,
    },
    /// Delete one of our shards (peers holding it drop it).
    DeleteShard {
        /// Which.
        shard_id: String,
    },
    /// Shards by tag (any match; `t` also matches `t:...`) and author, newest first.
    ViewShards {
        /// Tags; empty means all.
        tags: Vec<String>,
        /// Only this author.
        author: Option<String>,
    },
    /// One shard in full.
    GetShard {
        /// Which.
        shard_id: String,
        /// Whose (ids are chosen by authors; needed only when several use one).
        author: Option<String>,
    },
    /// The ranked conversation feed; `focus` is the message being answered, if any.
    ContextFeed {
        /// Boosted entry.
        focus: Option<String>,
    },
    /// A pool command (SPEC §22): the owner's, or a consumer's call to an owner.
    Pool(Box<crate::pool::PoolCommand>),
}
