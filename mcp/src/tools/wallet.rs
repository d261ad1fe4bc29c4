//! The six wallet tools (darkmatter_wallet_balances, darkmatter_wallet_send, darkmatter_get_balance,
//! darkmatter_send_sol, darkmatter_send_token, darkmatter_set_superagent): their descriptions and their
//! calls. The wallet is the node's (runtime-smol opens it with the node, checks payment notices as they
//! arrive and makes AntiMatter payouts); the tools reach it through [`Mesh::wallet`] (attached
//! sessions forward the call to the owning process; a spawned session's socket refuses every spending
//! call before it gets there, see `crate::spawned`).
//!
//! A tool that pays an agent resolves the agent's wallet from its connection (the address its signed
//! handshake gave), pays through the service, and after a confirmed transfer sends the agent a signed
//! notice. The notice proves nothing by itself: the recipient verifies the transaction on-chain.

use proto_core::limits::HOPS_MAX;
use proto_core::wallet::SOLANA_CHAIN;
use proto_core::{Command, SendArgs, Targets};
use runtime_smol::solana_wallet::{
    BalancesArgs, GetBalanceArgs, SendSolArgs, SendTokenArgs, SetSuperagentArgs, WalletCall, WalletSendArgs,
};
use serde_json::{json, Map, Value};

use super::ToolOutput;
use crate::mesh::Mesh;

/// Description of darkmatter_wallet_balances.
pub const WALLET_BALANCES: &str =
    "Show this agent's wallets and their native balances: for Solana, the address and the SOL \
balance (exact decimal text, and lamports). chain limits it to one chain (only solana exists).";

/// Description of darkmatter_wallet_send.
pub const WALLET_SEND: &str = "Pay a connected agent in a chain's native currency (only chain=solana: SOL). Same as \
darkmatter_send_sol. Spending is off until the user sets a daily limit (DARKMATTER_WALLET_SPEND_LIMIT), and spawned \
agents may never spend.";

/// Description of darkmatter_get_balance.
pub const GET_BALANCE: &str = "Balance of this agent's Solana wallet: SOL when mint is omitted, else the SPL token \
of that mint address or symbol (DM, USDC, USDT), as exact decimal text with its base units and decimals.";

/// Description of darkmatter_send_sol.
pub const SEND_SOL: &str =
    "Send SOL to a connected agent's Solana wallet (the one its handshake advertised). amount is \
in SOL, best given as a decimal string (\"1.001\"); it is converted exactly and refused with more than 9 decimals. \
Answers status confirmed, submitted (not confirmed yet, may still land) or expired (never landed), and tx_signature. \
notify (default true) sends the agent a signed payment notice after a confirmed transfer. Spending is off until the \
user sets a daily limit (DARKMATTER_WALLET_SPEND_LIMIT), and spawned agents may never spend.";

/// Description of darkmatter_send_token.
pub const SEND_TOKEN: &str = "Send an SPL token (classic Token program) to a connected agent's Solana wallet, creating \
its token account if needed. mint is a mint address or DM, USDC or USDT (any case); amount in whole tokens as a decimal \
string, refused with more decimals than the token has; decimals (0-18) is checked against the mint. Answers as \
darkmatter_send_sol, plus token_mint and decimals. Spending is off until the user sets a daily limit for the token \
(DARKMATTER_WALLET_SPEND_LIMIT), and spawned agents may never spend.";

/// Description of darkmatter_set_superagent.
pub const SET_SUPERAGENT: &str =
    "Set the URL of this agent's superagent (named in payment notices); omit url to go back \
to the default, the first anchor. Answers superagent_url, effective_url and reset_to_default.";

/// A wallet call's answer as a tool's.
async fn run(mesh: &dyn Mesh, call: WalletCall) -> Result<Value, ToolOutput> {
    mesh.wallet(call).await.map_err(|e| ToolOutput::from_command(Err(e)))
}

/// darkmatter_wallet_balances.
pub async fn balances(mesh: &dyn Mesh, a: BalancesArgs) -> ToolOutput {
    run(mesh, WalletCall::Balances { chain: a.chain }).await.map_or_else(|e| e, ToolOutput::ok)
}

/// darkmatter_get_balance.
pub async fn get_balance(mesh: &dyn Mesh, a: GetBalanceArgs) -> ToolOutput {
    run(mesh, WalletCall::GetBalance { mint: a.mint }).await.map_or_else(|e| e, ToolOutput::ok)
}

/// darkmatter_set_superagent.
pub async fn set_superagent(mesh: &dyn Mesh, a: SetSuperagentArgs) -> ToolOutput {
    run(mesh, WalletCall::SetSuperagent { url: a.url }).await.map_or_else(|e| e, ToolOutput::ok)
}

/// darkmatter_wallet_send: SOL on Solana, the only chain.
pub async fn wallet_send(mesh: &dyn Mesh, a: WalletSendArgs) -> ToolOutput {
    if !a.chain.eq_ignore_ascii_case(SOLANA_CHAIN) {
        return ToolOutput::error(format!("Chain '{}' send not yet implemented", a.chain));
    }
    send_sol(mesh, SendSolArgs { agent_id: a.agent_id, amount: a.amount, notify: a.notify }).await
}

/// darkmatter_send_sol.
pub async fn send_sol(mesh: &dyn Mesh, a: SendSolArgs) -> ToolOutput {
    let to_wallet = match peer_wallet(mesh, &a.agent_id).await {
        Ok(w) => w,
        Err(e) => return e,
    };
    let call = WalletCall::SendSol { to_wallet, amount: a.amount };
    pay(mesh, call, &a.agent_id, a.notify).await
}

/// darkmatter_send_token.
pub async fn send_token(mesh: &dyn Mesh, a: SendTokenArgs) -> ToolOutput {
    let to_wallet = match peer_wallet(mesh, &a.agent_id).await {
        Ok(w) => w,
        Err(e) => return e,
    };
    let call = WalletCall::SendToken { to_wallet, mint: a.mint, amount: a.amount, decimals: a.decimals };
    pay(mesh, call, &a.agent_id, a.notify).await
}

/// The Solana wallet the connected agent `agent_id` advertised.
async fn peer_wallet(mesh: &dyn Mesh, agent_id: &str) -> Result<String, ToolOutput> {
    let list = mesh.command(Command::ListConnections).await.map_err(|e| ToolOutput::from_command(Err(e)))?;
    let connections = list["connections"].as_array().cloned().unwrap_or_default();
    let Some(peer) = connections.iter().find(|c| c["agent_id"] == agent_id) else {
        return Err(ToolOutput::error(format!("Not connected to agent '{agent_id}'")));
    };
    match peer["wallets"][SOLANA_CHAIN].as_str() {
        Some(w) => Ok(w.to_owned()),
        None => Err(ToolOutput::error(format!("Agent '{agent_id}' has no {SOLANA_CHAIN} wallet"))),
    }
}

/// Pays through the service, then, if asked and the transfer is confirmed, notifies the recipient.
async fn pay(mesh: &dyn Mesh, call: WalletCall, agent_id: &str, notify: bool) -> ToolOutput {
    let mut result = match run(mesh, call).await {
        Ok(v) => v,
        Err(e) => return e,
    };
    result["to_agent_id"] = json!(agent_id);
    let confirmed = result["status"] == "confirmed";
    result["notification_sent"] = json!(false);
    if notify && confirmed {
        let sent = mesh.command(Command::Send(notice(&result, agent_id))).await;
        result["notification_sent"] = json!(sent.is_ok());
        if let Ok(v) = sent {
            result["notice_message_id"] = v["message_id"].clone();
        }
    }
    ToolOutput::ok(result)
}

/// The signed notice of a payment (0.5.3's content and metadata).
fn notice(result: &Value, agent_id: &str) -> SendArgs {
    let token = result["token"].as_str().unwrap_or("SOL");
    let unit = result["symbol"].as_str().unwrap_or(token);
    let amount = result["amount"].as_str().unwrap_or("");
    let signature = result["tx_signature"].as_str().unwrap_or("");
    let mut metadata = Map::new();
    for (k, v) in [
        ("type", json!("solana_payment")),
        ("amount", json!(amount)),
        ("token", json!(token)),
        ("tx_signature", json!(signature)),
        ("from_wallet", result["from_wallet"].clone()),
        ("to_wallet", result["to_wallet"].clone()),
        ("sender_superagent_wallet", result["sender_superagent_wallet"].clone()),
        // Every payment routes 1 % through AntiMatter (SPEC §21.1; 0.5.3's keys).
        ("antimatter_eligible", json!(true)),
        ("antimatter_rate", json!(0.01)),
    ] {
        metadata.insert(k.to_owned(), v);
    }
    if token != "SOL" {
        metadata.insert("decimals".to_owned(), result["decimals"].clone());
    }
    SendArgs {
        content: format!("Sent {amount} {unit} — tx: {signature}"),
        targets: Targets::Agents(vec![agent_id.to_owned()]),
        metadata,
        in_reply_to: None,
        hops_remaining: HOPS_MAX,
    }
}
