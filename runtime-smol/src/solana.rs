//! The Solana wallet's I/O: a JSON-RPC transport behind [`SolanaRpc`] (ureq over HTTPS in production,
//! a fake in tests), and [`Solana`], which drives proto-core's pure wallet parts through it: balances,
//! sends with confirmation (`confirmed` / `submitted` / `expired`), and fetching a transaction for
//! payment verification. Every call is blocking; async callers run it on `blocking`'s pool.

use std::io::Read as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use proto_core::limits::{WALLET_RPC_RESPONSE_BYTES_MAX, WALLET_RPC_TIMEOUT_MS};
use proto_core::wallet::{
    mint_decimals, parse_account_info, parse_balance, parse_block_height, parse_latest_blockhash, parse_sent_signature,
    parse_signature_status, parse_token_accounts, result_of, AtaCreation, Confirmation, MessageVersion, Pubkey,
    RpcError, RpcRequest, SendStatus, SignedTransaction, SolTransfer, SplTransfer, TxError, Wallet, TOKEN_PROGRAM,
};
use serde_json::Value;
use thiserror::Error;

/// 0.5.3's cluster: mainnet-beta's public endpoint (`DARKMATTER_SOLANA_RPC` replaces it).
pub const SOLANA_RPC_DEFAULT: &str = "https://api.mainnet-beta.solana.com";
/// Time between two status polls of a sent transaction (R-G4).
pub const CONFIRM_POLL_INTERVAL_MS: u64 = 1_000;

/// One JSON-RPC round trip: the request out, its `result` back.
pub trait SolanaRpc: Send + Sync {
    /// Makes `request` and answers its `result`, or why there is none.
    fn call(&self, request: &RpcRequest) -> Result<Value, RpcError>;
}

/// Why an RPC URL was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum RpcUrlError {
    /// Not an absolute http(s) URL.
    #[error("not an http(s) URL")]
    Malformed,
    /// Plain http to a host other than this machine: transactions and balances would travel in clear
    /// and could be altered.
    #[error("plain http is allowed only to 127.0.0.1, ::1 or localhost; use https")]
    Insecure,
}

/// Checks that `url` is https, or http to this machine (R-G4).
pub fn check_rpc_url(url: &str) -> Result<(), RpcUrlError> {
    let parsed = url::Url::parse(url).map_err(|_| RpcUrlError::Malformed)?;
    let local = matches!(parsed.host_str(), Some("127.0.0.1" | "[::1]" | "localhost"));
    match parsed.scheme() {
        "https" if parsed.host_str().is_some() => Ok(()),
        "http" if local => Ok(()),
        "http" => Err(RpcUrlError::Insecure),
        _ => Err(RpcUrlError::Malformed),
    }
}

/// JSON-RPC over HTTP(S) with ureq: one POST per call, bounded in time and answer size, no redirects.
pub struct HttpRpc {
    url: String,
    agent: ureq::Agent,
    next_id: AtomicU64,
}

impl HttpRpc {
    /// A client of `url` with the standard timeout.
    pub fn new(url: &str) -> Result<Self, RpcUrlError> {
        Self::with_timeout(url, Duration::from_millis(WALLET_RPC_TIMEOUT_MS))
    }

    /// A client of `url` whose calls give up after `timeout` (tests shorten it).
    pub fn with_timeout(url: &str, timeout: Duration) -> Result<Self, RpcUrlError> {
        check_rpc_url(url)?;
        let agent =
            ureq::AgentBuilder::new().timeout(timeout).redirects(0).user_agent(crate::client::USER_AGENT).build();
        Ok(Self { url: url.to_owned(), agent, next_id: AtomicU64::new(1) })
    }
}

impl SolanaRpc for HttpRpc {
    fn call(&self, request: &RpcRequest) -> Result<Value, RpcError> {
        let body = request.body(self.next_id.fetch_add(1, Ordering::Relaxed));
        let response = match self
            .agent
            .post(&self.url)
            .set("Content-Type", "application/json")
            .send_bytes(body.to_string().as_bytes())
        {
            Ok(r) => r,
            // JSON-RPC errors may come with an HTTP error status; their body says more than the status.
            Err(ureq::Error::Status(_, r)) => r,
            Err(ureq::Error::Transport(t)) => return Err(RpcError::Transport(t.to_string())),
        };
        let mut bytes = Vec::new();
        response
            .into_reader()
            .take(WALLET_RPC_RESPONSE_BYTES_MAX + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| RpcError::Transport(format!("reading the answer failed: {e}")))?;
        if bytes.len() as u64 > WALLET_RPC_RESPONSE_BYTES_MAX {
            return Err(RpcError::Transport(format!("answer exceeds {WALLET_RPC_RESPONSE_BYTES_MAX} bytes")));
        }
        let answer: Value =
            serde_json::from_slice(&bytes).map_err(|_| RpcError::Transport("answer is not JSON".to_owned()))?;
        result_of(answer)
    }
}

/// Why a wallet operation failed.
#[derive(Debug, Error)]
pub enum WalletError {
    /// The RPC failed or answered something unusable.
    #[error(transparent)]
    Rpc(#[from] RpcError),
    /// The transaction could not be built.
    #[error("Transaction failed: {0}")]
    Tx(#[from] TxError),
    /// The mint does not exist on the cluster.
    #[error("Token mint {0} not found")]
    MintNotFound(String),
    /// The mint belongs to another program than classic Token (e.g. Token-2022), which is not supported.
    #[error("Token mint {0} is not a classic SPL Token mint (Token-2022 is not supported)")]
    UnsupportedMint(String),
    /// The caller's decimals disagree with the mint's.
    #[error("Token {mint} has {actual} decimals, not {given}")]
    Decimals {
        /// The mint.
        mint: String,
        /// The mint's decimals.
        actual: u8,
        /// What the caller said.
        given: u8,
    },
}

/// A send's outcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sent {
    /// The transaction signature (base58).
    pub signature: String,
    /// How it ended.
    pub status: SendStatus,
}

/// A token balance of the wallet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TokenBalance {
    /// Base units over all the wallet's token accounts of the mint (`0` when it has none).
    pub amount: u64,
    /// The mint's decimals.
    pub decimals: u8,
    /// Whether the wallet has any token account of the mint.
    pub has_account: bool,
}

/// The wallet on a cluster.
pub struct Solana {
    rpc: Arc<dyn SolanaRpc>,
    wallet: Wallet,
    poll: Duration,
    version: MessageVersion,
}

impl Solana {
    /// `wallet` on the cluster behind `rpc`, polling once a second, sending v0 messages.
    pub fn new(rpc: Arc<dyn SolanaRpc>, wallet: Wallet) -> Self {
        Self { rpc, wallet, poll: Duration::from_millis(CONFIRM_POLL_INTERVAL_MS), version: MessageVersion::V0 }
    }

    /// The same with another poll interval (tests against a local VM need not wait a second).
    pub fn with_poll_interval(mut self, poll: Duration) -> Self {
        self.poll = poll;
        self
    }

    /// The wallet's address.
    pub fn address(&self) -> Pubkey {
        self.wallet.address()
    }

    /// The transport.
    pub fn rpc(&self) -> &Arc<dyn SolanaRpc> {
        &self.rpc
    }

    /// Lamports held by `address`.
    pub fn balance_of(&self, address: &Pubkey) -> Result<u64, RpcError> {
        parse_balance(&self.rpc.call(&RpcRequest::GetBalance(*address))?)
    }

    /// Decimals of `mint`, which must be a classic SPL Token mint.
    pub fn mint_decimals(&self, mint: &Pubkey) -> Result<u8, WalletError> {
        let info = parse_account_info(&self.rpc.call(&RpcRequest::GetAccountInfo(*mint))?)?
            .ok_or_else(|| WalletError::MintNotFound(mint.to_base58()))?;
        if info.owner != TOKEN_PROGRAM {
            return Err(WalletError::UnsupportedMint(mint.to_base58()));
        }
        mint_decimals(&info).ok_or(WalletError::Rpc(RpcError::Shape("getAccountInfo")))
    }

    /// The wallet's balance of `mint`: classic Token accounts only, summed.
    pub fn token_balance(&self, mint: &Pubkey) -> Result<TokenBalance, WalletError> {
        let decimals = self.mint_decimals(mint)?;
        let owner = self.address();
        let result = self.rpc.call(&RpcRequest::GetTokenAccountsByOwner { owner, mint: *mint })?;
        let accounts: Vec<_> =
            parse_token_accounts(&result, &owner)?.into_iter().filter(|a| a.program == TOKEN_PROGRAM).collect();
        let amount = accounts.iter().fold(0u64, |sum, a| sum.saturating_add(a.amount));
        Ok(TokenBalance { amount, decimals, has_account: !accounts.is_empty() })
    }

    /// Sends `lamports` to `to` and waits for the outcome.
    pub fn send_sol(&self, to: Pubkey, lamports: u64, memo: Option<String>) -> Result<Sent, WalletError> {
        let transfer = SolTransfer { to, lamports, memo };
        self.send(|blockhash| transfer.sign(&self.wallet, blockhash, self.version))
    }

    /// Sends `amount` base units of `mint` (whose decimals the caller asserts) to `to`'s associated token
    /// account, created idempotently, and waits for the outcome.
    pub fn send_token(
        &self,
        to: Pubkey,
        mint: Pubkey,
        amount: u64,
        decimals: u8,
        memo: Option<String>,
    ) -> Result<Sent, WalletError> {
        let actual = self.mint_decimals(&mint)?;
        if actual != decimals {
            return Err(WalletError::Decimals { mint: mint.to_base58(), actual, given: decimals });
        }
        let transfer = SplTransfer { mint, to, amount, decimals, create: AtaCreation::Idempotent, memo };
        self.send(|blockhash| transfer.sign(&self.wallet, blockhash, self.version))
    }

    /// Signs with a fresh blockhash, sends, confirms; an expired transaction is signed once more with a
    /// new blockhash (it can no longer land, so this cannot pay twice).
    fn send(&self, sign: impl Fn([u8; 32]) -> Result<SignedTransaction, TxError>) -> Result<Sent, WalletError> {
        let first = self.send_once(&sign)?;
        if first.status != SendStatus::Expired {
            return Ok(first);
        }
        self.send_once(&sign)
    }

    fn send_once(&self, sign: &impl Fn([u8; 32]) -> Result<SignedTransaction, TxError>) -> Result<Sent, WalletError> {
        let latest = parse_latest_blockhash(&self.rpc.call(&RpcRequest::GetLatestBlockhash)?)?;
        let tx = sign(latest.blockhash)?;
        let signature = tx.signature_base58();
        parse_sent_signature(&self.rpc.call(&RpcRequest::SendTransaction(tx.bytes))?, &signature)?;
        let status = self.confirm(&signature, Confirmation::new(latest.last_valid_block_height))?;
        Ok(Sent { signature, status })
    }

    /// Polls until the confirmation says how the transaction ended.
    fn confirm(&self, signature: &str, mut confirmation: Confirmation) -> Result<SendStatus, RpcError> {
        loop {
            let status = parse_signature_status(&self.rpc.call(&RpcRequest::GetSignatureStatuses(signature.into()))?)?;
            let height = parse_block_height(&self.rpc.call(&RpcRequest::GetBlockHeight)?)?;
            if let Some(end) = confirmation.observe(&status, height) {
                return Ok(end);
            }
            std::thread::sleep(self.poll);
        }
    }

    /// The landed transaction `signature` as `getTransaction` answers it (`None`: not found).
    pub fn transaction(&self, signature: &str) -> Result<Option<Value>, RpcError> {
        let result = self.rpc.call(&RpcRequest::GetTransaction(signature.into()))?;
        Ok((!result.is_null()).then_some(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_this_machine() {
        assert_eq!(check_rpc_url(SOLANA_RPC_DEFAULT), Ok(()));
        assert_eq!(check_rpc_url("http://127.0.0.1:8899"), Ok(()));
        assert_eq!(check_rpc_url("http://localhost:8899"), Ok(()));
        assert_eq!(check_rpc_url("http://api.mainnet-beta.solana.com"), Err(RpcUrlError::Insecure));
        assert_eq!(check_rpc_url("ftp://x"), Err(RpcUrlError::Malformed));
        assert_eq!(check_rpc_url("not a url"), Err(RpcUrlError::Malformed));
    }
}
