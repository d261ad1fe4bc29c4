//! What a spawned agent may do (R-C7): it answers one message or one connection request, nothing more.
//!
//! A spawned agent runs headless, with its client's permission prompts off, on a prompt built from a
//! peer's message: whatever that message says, the node itself refuses the commands that would let a
//! peer re-tune the node through it. The refusal is the node's, so no model can be talked past it.
//! A spawned session may not:
//! - set the node's status, a rate limit or an impression (trust), its name, bio or URL, or disconnect peers;
//! - make the node call a URL a peer's words chose: connect to a new agent, or fetch a domain's card;
//! - accept or reject any connection request but the one it was spawned for;
//! - spend or redirect money: send SOL or tokens, or set the superagent (a prompt-injected child must
//!   not drain the wallet); it may read balances;
//! - switch spawning or the sandbox on or off, or spawn (a spawned session's `darkmatter` only attaches, see `crate::app`, and attaching never
//!   triggers a spawn).

use std::sync::Arc;

use proto_core::{Command, CommandError, Event};
use runtime_smol::solana_wallet::WalletCall;
use serde_json::Value;

use crate::mesh::{BoxFut, Mesh};

/// The node as a spawned agent sees it.
pub struct SpawnedMesh {
    inner: Arc<dyn Mesh>,
    /// The connection request it was spawned for, if any: the only one it may settle.
    request_id: Option<String>,
}

impl SpawnedMesh {
    /// `inner` restricted for an agent spawned for `request_id` (a connection request) or a message.
    pub fn new(inner: Arc<dyn Mesh>, request_id: Option<String>) -> Self {
        Self { inner, request_id }
    }
}

/// Why `command` is refused to a spawned session allowed to settle `request_id` (`None`: allowed).
pub fn refusal(command: &Command, request_id: Option<&str>) -> Option<String> {
    let what = match command {
        Command::SetStatus { .. } => "set the node's status",
        Command::SetRateLimit { .. } => "set rate limits",
        Command::SetImpression { .. } => "set trust (impressions)",
        Command::UpdateBio { .. } => "change the bio",
        Command::Rename { .. } => "change the node's name",
        Command::SetSpawning { .. } => "switch spawning",
        Command::SetUrl { .. } => "change the node's URL",
        Command::Disconnect { .. } => "disconnect peers",
        Command::Connect { .. } => "connect to new agents",
        Command::DiscoverDomain { .. } => "fetch a domain's card",
        Command::Pool(_) => "use pools (their owner's commands, and calls that spend a balance)",
        Command::Accept { request_id: r } | Command::Reject { request_id: r } if request_id != Some(r.as_str()) => {
            "settle a connection request it was not started for"
        }
        _ => return None,
    };
    Some(format!("Refused: a spawned agent may not {what}; only the node's user can."))
}

/// Why a wallet call is refused to a spawned session (`None`: allowed).
pub fn wallet_refusal(call: &WalletCall) -> Option<String> {
    call.spends()
        .then(|| "Refused: a spawned agent may not spend or redirect money; only the node's user can.".to_owned())
}

impl Mesh for SpawnedMesh {
    fn command(&self, command: Command) -> BoxFut<'_, Result<Value, CommandError>> {
        match refusal(&command, self.request_id.as_deref()) {
            Some(why) => Box::pin(async move { Err(CommandError::InvalidArgument(why)) }),
            None => self.inner.command(command),
        }
    }

    fn discover_local(&self) -> BoxFut<'_, Result<Value, CommandError>> {
        self.inner.discover_local()
    }

    fn discover_domain(&self, domain: String) -> BoxFut<'_, Result<Value, CommandError>> {
        self.command(Command::DiscoverDomain { domain })
    }

    fn wallet(&self, call: WalletCall) -> BoxFut<'_, Result<Value, CommandError>> {
        match wallet_refusal(&call) {
            Some(why) => Box::pin(async move { Err(CommandError::InvalidArgument(why)) }),
            None => self.inner.wallet(call),
        }
    }

    /// Never: an agent that could lift its own sandbox would have none.
    fn sandbox(&self, _on: bool) -> BoxFut<'_, Result<Value, CommandError>> {
        let why = "Refused: a spawned agent may not switch the sandbox; only the node's user can.".to_owned();
        Box::pin(async move { Err(CommandError::InvalidArgument(why)) })
    }

    fn events(&self) -> async_channel::Receiver<Event> {
        self.inner.events()
    }

    /// The node is not the spawned agent's to stop.
    fn shutdown(&self) -> BoxFut<'_, ()> {
        Box::pin(async {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_node_refuses_what_would_re_tune_it() {
        let a = "ab".repeat(32);
        for c in [
            Command::SetStatus { active: false, duration_minutes: Some(60) },
            Command::SetImpression { agent_id: a.clone(), score: 1.0, note: None },
            Command::UpdateBio { bio: "pwned".into() },
            Command::Rename { display_name: "pwned".into() },
            Command::SetSpawning { enabled: true },
            Command::Disconnect { agent_id: a.clone() },
            Command::Connect { target_url: "http://169.254.169.254".into() },
            Command::DiscoverDomain { domain: "internal.example".into() },
        ] {
            assert!(refusal(&c, None).is_some(), "{c:?}");
        }
        assert!(refusal(&Command::ListInbox, None).is_none());
        assert!(refusal(&Command::GetMessage { message_id: "m".into(), consume: true }, None).is_none());
    }

    #[test]
    fn spending_is_refused_and_reading_balances_is_not() {
        use runtime_smol::solana_wallet::AmountArg;
        let amount = AmountArg::Text("0.001".into());
        let to_wallet = "9mtBrewhn452nzFuxR3A9zxqUGA1u5qCVjpfT4tmjdsP".to_owned();
        for call in [
            WalletCall::SendSol { to_wallet: to_wallet.clone(), amount: amount.clone() },
            WalletCall::SendToken { to_wallet, mint: "USDC".into(), amount, decimals: None },
            WalletCall::SetSuperagent { url: Some("http://evil.example".into()) },
        ] {
            assert!(wallet_refusal(&call).is_some(), "{call:?}");
        }
        assert!(wallet_refusal(&WalletCall::Balances { chain: None }).is_none());
        assert!(wallet_refusal(&WalletCall::GetBalance { mint: None }).is_none());
    }

    /// A node whose sandbox switch always succeeds: only the wrapper can refuse.
    struct Switchable;

    impl Mesh for Switchable {
        fn command(&self, _: Command) -> BoxFut<'_, Result<Value, CommandError>> {
            Box::pin(async { Ok(Value::Null) })
        }
        fn sandbox(&self, on: bool) -> BoxFut<'_, Result<Value, CommandError>> {
            Box::pin(async move { Ok(serde_json::json!({ "sandbox": on })) })
        }
        fn events(&self) -> async_channel::Receiver<Event> {
            async_channel::bounded(1).1
        }
        fn shutdown(&self) -> BoxFut<'_, ()> {
            Box::pin(async {})
        }
    }

    #[test]
    fn a_spawned_agent_cannot_switch_the_sandbox_either_way() {
        let spawned = SpawnedMesh::new(Arc::new(Switchable), None);
        assert!(smol::block_on(spawned.sandbox(false)).is_err());
        assert!(smol::block_on(spawned.sandbox(true)).is_err());
        assert!(smol::block_on(Switchable.sandbox(false)).is_ok());
    }

    #[test]
    fn only_its_own_request_may_be_settled() {
        let accept = |r: &str| Command::Accept { request_id: r.into() };
        assert!(refusal(&accept("req-1"), Some("req-1")).is_none());
        assert!(refusal(&Command::Reject { request_id: "req-1".into() }, Some("req-1")).is_none());
        assert!(refusal(&accept("req-2"), Some("req-1")).is_some());
        assert!(refusal(&accept("req-1"), None).is_some(), "an agent spawned for a message settles nothing");
    }
}
