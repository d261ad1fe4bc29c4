//! Solana JSON-RPC, the pure part: which request to make ([`RpcRequest`] → a JSON-RPC body), how to read
//! each answer (typed, bounded, never trusting a field's presence), and the confirmation state machine
//! ([`Confirmation`]) that turns polled signature statuses and block heights into `confirmed`,
//! `submitted` or `expired`. The transport (HTTP, timeouts, response size) is the runtime's.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Value};
use thiserror::Error;

use super::derive::Pubkey;
use crate::limits::WALLET_CONFIRM_POLLS_MAX;

/// Byte offset of the owner in an SPL token account (after the 32-byte mint).
const TOKEN_ACCOUNT_OWNER_AT: usize = 32;
/// Byte offset of the little-endian u64 amount in an SPL token account.
const TOKEN_ACCOUNT_AMOUNT_AT: usize = 64;
/// Byte offset of `decimals` in an SPL mint (after the optional authority, 36 bytes, and the supply, 8).
const MINT_DECIMALS_AT: usize = 44;

/// Why an RPC answer was not usable.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RpcError {
    /// The transport failed (connection, timeout, HTTP status, oversized body); the text says how.
    #[error("RPC error: {0}")]
    Transport(String),
    /// The node answered a JSON-RPC error object.
    #[error("RPC error: {message} (code {code})")]
    Server {
        /// The JSON-RPC error code.
        code: i64,
        /// The node's message.
        message: String,
    },
    /// The answer lacks a field or has one of the wrong type.
    #[error("RPC error: unexpected answer to {0}")]
    Shape(&'static str),
}

/// One JSON-RPC call the wallet makes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RpcRequest {
    /// Lamports held by an address.
    GetBalance(Pubkey),
    /// The token accounts of an owner for one mint (base64 data, read by [`parse_token_accounts`]).
    GetTokenAccountsByOwner {
        /// The wallet.
        owner: Pubkey,
        /// The mint.
        mint: Pubkey,
    },
    /// An account's owner program, lamports and data.
    GetAccountInfo(Pubkey),
    /// A recent blockhash and the last block height at which it is valid.
    GetLatestBlockhash,
    /// The current block height (to tell when a blockhash has expired).
    GetBlockHeight,
    /// Submits signed transaction bytes; preflight on, as 0.5.3.
    SendTransaction(Vec<u8>),
    /// The status of one signature.
    GetSignatureStatuses(String),
    /// A landed transaction with its balances, for payment verification (raw bytes: decoded here).
    GetTransaction(String),
}

/// Commitment asked of every read: `confirmed` (optimistic confirmation by a supermajority).
const COMMITMENT: &str = "confirmed";

impl RpcRequest {
    /// The JSON-RPC method name.
    pub fn method(&self) -> &'static str {
        match self {
            Self::GetBalance(_) => "getBalance",
            Self::GetTokenAccountsByOwner { .. } => "getTokenAccountsByOwner",
            Self::GetAccountInfo(_) => "getAccountInfo",
            Self::GetLatestBlockhash => "getLatestBlockhash",
            Self::GetBlockHeight => "getBlockHeight",
            Self::SendTransaction(_) => "sendTransaction",
            Self::GetSignatureStatuses(_) => "getSignatureStatuses",
            Self::GetTransaction(_) => "getTransaction",
        }
    }

    /// The positional parameters.
    pub fn params(&self) -> Value {
        let commitment = json!({"commitment": COMMITMENT});
        match self {
            Self::GetBalance(a) => json!([a.to_base58(), commitment]),
            Self::GetTokenAccountsByOwner { owner, mint } => json!([
                owner.to_base58(),
                {"mint": mint.to_base58()},
                {"commitment": COMMITMENT, "encoding": "base64"}
            ]),
            Self::GetAccountInfo(a) => json!([a.to_base58(), {"commitment": COMMITMENT, "encoding": "base64"}]),
            Self::GetLatestBlockhash | Self::GetBlockHeight => json!([commitment]),
            Self::SendTransaction(bytes) => json!([
                BASE64.encode(bytes),
                {"encoding": "base64", "preflightCommitment": COMMITMENT}
            ]),
            Self::GetSignatureStatuses(sig) => json!([[sig], {"searchTransactionHistory": false}]),
            // A payment counts only once it cannot be rolled back (R-G8).
            Self::GetTransaction(sig) => json!([
                sig,
                {"commitment": "finalized", "encoding": "base64", "maxSupportedTransactionVersion": 0}
            ]),
        }
    }

    /// The whole JSON-RPC 2.0 request body with id `id`.
    pub fn body(&self, id: u64) -> Value {
        json!({"jsonrpc": "2.0", "id": id, "method": self.method(), "params": self.params()})
    }
}

/// The `result` of a JSON-RPC answer, or its error.
pub fn result_of(answer: Value) -> Result<Value, RpcError> {
    let Value::Object(mut map) = answer else {
        return Err(RpcError::Shape("a JSON-RPC call"));
    };
    if let Some(error) = map.get("error") {
        let code = error.get("code").and_then(Value::as_i64).unwrap_or(0);
        let message: String =
            error.get("message").and_then(Value::as_str).unwrap_or("unknown").chars().take(500).collect();
        return Err(RpcError::Server { code, message });
    }
    map.remove("result").ok_or(RpcError::Shape("a JSON-RPC call"))
}

/// The `value` of a `{context, value}` result.
fn value_of<'a>(result: &'a Value, what: &'static str) -> Result<&'a Value, RpcError> {
    result.get("value").ok_or(RpcError::Shape(what))
}

/// `getBalance`: lamports.
pub fn parse_balance(result: &Value) -> Result<u64, RpcError> {
    value_of(result, "getBalance")?.as_u64().ok_or(RpcError::Shape("getBalance"))
}

/// `getBlockHeight`: the height.
pub fn parse_block_height(result: &Value) -> Result<u64, RpcError> {
    result.as_u64().ok_or(RpcError::Shape("getBlockHeight"))
}

/// A blockhash to sign with and the last block height at which the cluster still takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LatestBlockhash {
    /// The 32-byte hash.
    pub blockhash: [u8; 32],
    /// Past this height a transaction with this blockhash can never land.
    pub last_valid_block_height: u64,
}

/// `getLatestBlockhash`.
pub fn parse_latest_blockhash(result: &Value) -> Result<LatestBlockhash, RpcError> {
    const WHAT: &str = "getLatestBlockhash";
    let value = value_of(result, WHAT)?;
    let hash = value.get("blockhash").and_then(Value::as_str).ok_or(RpcError::Shape(WHAT))?;
    let blockhash = Pubkey::from_base58(hash).map_err(|_| RpcError::Shape(WHAT))?.0;
    let last_valid_block_height =
        value.get("lastValidBlockHeight").and_then(Value::as_u64).ok_or(RpcError::Shape(WHAT))?;
    Ok(LatestBlockhash { blockhash, last_valid_block_height })
}

/// `sendTransaction`: the signature the node reports, which must be the one we signed (a node that
/// names another is not believed).
pub fn parse_sent_signature(result: &Value, expected: &str) -> Result<(), RpcError> {
    match result.as_str() {
        Some(s) if s == expected => Ok(()),
        _ => Err(RpcError::Shape("sendTransaction")),
    }
}

/// Where one signature stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SignatureStatus {
    /// The cluster has not seen it (yet).
    Unknown,
    /// Seen in a block, not yet confirmed.
    Processed,
    /// Confirmed or finalized, and it succeeded.
    Confirmed,
    /// Landed but failed; the text is the cluster's error.
    Failed(String),
}

/// `getSignatureStatuses` for one signature.
pub fn parse_signature_status(result: &Value) -> Result<SignatureStatus, RpcError> {
    const WHAT: &str = "getSignatureStatuses";
    let first = value_of(result, WHAT)?.as_array().and_then(|a| a.first()).ok_or(RpcError::Shape(WHAT))?;
    if first.is_null() {
        return Ok(SignatureStatus::Unknown);
    }
    match first.get("err") {
        Some(err) if !err.is_null() => return Ok(SignatureStatus::Failed(short_text(err))),
        _ => {}
    }
    match first.get("confirmationStatus").and_then(Value::as_str) {
        Some("confirmed" | "finalized") => Ok(SignatureStatus::Confirmed),
        _ => Ok(SignatureStatus::Processed),
    }
}

/// A value as at most 200 characters of JSON, for an error text.
fn short_text(v: &Value) -> String {
    v.to_string().chars().take(200).collect()
}

/// An account as `getAccountInfo` describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountInfo {
    /// The program that owns it.
    pub owner: Pubkey,
    /// Its lamports.
    pub lamports: u64,
    /// Its data.
    pub data: Vec<u8>,
}

/// `getAccountInfo`: `None` when the account does not exist.
pub fn parse_account_info(result: &Value) -> Result<Option<AccountInfo>, RpcError> {
    const WHAT: &str = "getAccountInfo";
    let value = value_of(result, WHAT)?;
    if value.is_null() {
        return Ok(None);
    }
    account(value, WHAT).map(Some)
}

fn account(value: &Value, what: &'static str) -> Result<AccountInfo, RpcError> {
    let owner = value.get("owner").and_then(Value::as_str).ok_or(RpcError::Shape(what))?;
    let owner = Pubkey::from_base58(owner).map_err(|_| RpcError::Shape(what))?;
    let lamports = value.get("lamports").and_then(Value::as_u64).ok_or(RpcError::Shape(what))?;
    let data = value.get("data").and_then(|d| d.get(0)).and_then(Value::as_str).ok_or(RpcError::Shape(what))?;
    let data = BASE64.decode(data).map_err(|_| RpcError::Shape(what))?;
    Ok(AccountInfo { owner, lamports, data })
}

/// The decimals of a mint account (`None` if the data is too short to be a mint).
pub fn mint_decimals(mint: &AccountInfo) -> Option<u8> {
    mint.data.get(MINT_DECIMALS_AT).copied()
}

/// One SPL token account: its address, owner program, wallet owner and amount in base units.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenAccount {
    /// The token account's address.
    pub address: Pubkey,
    /// The token program that owns it.
    pub program: Pubkey,
    /// The wallet it belongs to.
    pub owner: Pubkey,
    /// Its balance in base units.
    pub amount: u64,
}

/// `getTokenAccountsByOwner` (base64): every account, each checked to be a token account of `owner`.
pub fn parse_token_accounts(result: &Value, owner: &Pubkey) -> Result<Vec<TokenAccount>, RpcError> {
    const WHAT: &str = "getTokenAccountsByOwner";
    let list = value_of(result, WHAT)?.as_array().ok_or(RpcError::Shape(WHAT))?;
    list.iter()
        .map(|entry| {
            let address = entry.get("pubkey").and_then(Value::as_str).ok_or(RpcError::Shape(WHAT))?;
            let address = Pubkey::from_base58(address).map_err(|_| RpcError::Shape(WHAT))?;
            let info = account(entry.get("account").ok_or(RpcError::Shape(WHAT))?, WHAT)?;
            let (held_by, amount) = token_account_fields(&info.data).ok_or(RpcError::Shape(WHAT))?;
            if held_by != *owner {
                return Err(RpcError::Shape(WHAT));
            }
            Ok(TokenAccount { address, program: info.owner, owner: held_by, amount })
        })
        .collect()
}

/// The owner and amount of an SPL token account's data.
fn token_account_fields(data: &[u8]) -> Option<(Pubkey, u64)> {
    let owner: [u8; 32] = data.get(TOKEN_ACCOUNT_OWNER_AT..TOKEN_ACCOUNT_AMOUNT_AT)?.try_into().ok()?;
    let amount: [u8; 8] = data.get(TOKEN_ACCOUNT_AMOUNT_AT..TOKEN_ACCOUNT_AMOUNT_AT + 8)?.try_into().ok()?;
    Some((Pubkey(owner), u64::from_le_bytes(amount)))
}

/// What became of a sent transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendStatus {
    /// Confirmed by the cluster, and it succeeded.
    Confirmed,
    /// Accepted but not confirmed within the polls allowed; it may still land before its blockhash
    /// expires.
    Submitted,
    /// Its blockhash expired before it was confirmed: it can never land.
    Expired,
    /// It landed and failed; the text is the cluster's error.
    Failed(String),
}

impl SendStatus {
    /// The word the tools report (`confirmed` / `submitted` / `expired` / `failed`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Confirmed => "confirmed",
            Self::Submitted => "submitted",
            Self::Expired => "expired",
            Self::Failed(_) => "failed",
        }
    }
}

/// The confirmation of one sent transaction: the runtime polls the signature's status and the block
/// height (once a second) and feeds each pair to [`Confirmation::observe`] until it says how it ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Confirmation {
    last_valid_block_height: u64,
    polls: u32,
}

impl Confirmation {
    /// Confirmation of a transaction signed with a blockhash valid through `last_valid_block_height`.
    pub fn new(last_valid_block_height: u64) -> Self {
        Self { last_valid_block_height, polls: 0 }
    }

    /// One poll's answers; `Some` once the outcome is known. A landed status wins over expiry (a
    /// transaction confirmed at the last valid height did land); after `WALLET_CONFIRM_POLLS_MAX` polls
    /// the answer is `Submitted`: still possible, not known.
    pub fn observe(&mut self, status: &SignatureStatus, block_height: u64) -> Option<SendStatus> {
        self.polls = self.polls.saturating_add(1);
        match status {
            SignatureStatus::Confirmed => return Some(SendStatus::Confirmed),
            SignatureStatus::Failed(e) => return Some(SendStatus::Failed(e.clone())),
            SignatureStatus::Unknown | SignatureStatus::Processed => {}
        }
        if block_height > self.last_valid_block_height {
            return Some(SendStatus::Expired);
        }
        (self.polls >= WALLET_CONFIRM_POLLS_MAX).then_some(SendStatus::Submitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_error_object_is_an_error_and_a_result_is_taken_out() {
        let err = result_of(json!({"jsonrpc":"2.0","id":1,"error":{"code":-32002,"message":"blockhash not found"}}));
        assert_eq!(err, Err(RpcError::Server { code: -32002, message: "blockhash not found".into() }));
        assert_eq!(result_of(json!({"id":1,"result":{"value":5}})).unwrap(), json!({"value":5}));
        assert!(result_of(json!([1])).is_err());
    }

    #[test]
    fn statuses_are_read_as_the_cluster_writes_them() {
        let one = |v: Value| parse_signature_status(&json!({"context":{"slot":1},"value":[v]})).unwrap();
        assert_eq!(one(Value::Null), SignatureStatus::Unknown);
        assert_eq!(one(json!({"err":null,"confirmationStatus":"processed"})), SignatureStatus::Processed);
        assert_eq!(one(json!({"err":null,"confirmationStatus":"finalized"})), SignatureStatus::Confirmed);
        assert!(matches!(one(json!({"err":{"InstructionError":[0,"Custom"]}})), SignatureStatus::Failed(_)));
        assert!(parse_signature_status(&json!({"value":[]})).is_err());
    }

    #[test]
    fn confirmation_ends_confirmed_expired_or_submitted() {
        let mut c = Confirmation::new(100);
        assert_eq!(c.observe(&SignatureStatus::Unknown, 100), None, "still valid at its last height");
        assert_eq!(c.observe(&SignatureStatus::Confirmed, 101), Some(SendStatus::Confirmed), "landing wins");
        assert_eq!(Confirmation::new(100).observe(&SignatureStatus::Processed, 101), Some(SendStatus::Expired));
        let mut c = Confirmation::new(u64::MAX);
        for _ in 1..WALLET_CONFIRM_POLLS_MAX {
            assert_eq!(c.observe(&SignatureStatus::Unknown, 1), None);
        }
        assert_eq!(c.observe(&SignatureStatus::Unknown, 1), Some(SendStatus::Submitted));
    }

    #[test]
    fn a_node_naming_another_signature_is_not_believed() {
        assert!(parse_sent_signature(&json!("abc"), "abc").is_ok());
        assert!(parse_sent_signature(&json!("abd"), "abc").is_err());
    }
}
