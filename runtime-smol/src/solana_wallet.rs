//! The wallet as the tools use it: their typed arguments ([`WalletCall`], also a control line), known
//! tokens, the daily spending limits (`DARKMATTER_WALLET_SPEND_LIMIT`, off until set), and
//! [`WalletService`], which answers each call over [`Solana`] with the persisted ledger of what was spent
//! (a rolling day, integer base units) and the superagent setting.
//!
//! Who the recipient is (an agent's advertised wallet) and the signed notice after a send are the node's:
//! the MCP layer looks them up and sends it; this module never talks to peers.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use proto_core::limits::{PAYMENT_AGE_MAX_S, PAYMENT_CLOCK_SKEW_S, URL_BYTES_MAX, WALLET_DECIMALS_MAX};
use proto_core::wallet::{
    format_amount, parse_amount, verify_payment, Asset, PaymentClaim, PaymentRefusal, Pubkey, SendStatus,
};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use thiserror::Error;

use crate::solana::{Sent, Solana, WalletError};

/// Decimals of SOL (lamports).
pub const SOL_DECIMALS: u8 = 9;
/// File of the wallet's ledger and settings in the state directory (0600).
pub const WALLET_FILE: &str = "wallet.json";
/// The window of the daily spending limit, in seconds (a rolling day).
pub const SPEND_WINDOW_S: i64 = 86_400;
/// Spends remembered within the window; beyond it a send is refused rather than forgetting one.
pub const WALLET_SPENDS_MAX: usize = 4_096;
/// Entries `DARKMATTER_WALLET_SPEND_LIMIT` may hold.
pub const SPEND_LIMITS_MAX: usize = 16;
/// Time allowed to fetch the superagent's `network_info` for its wallet (R-G7), in milliseconds.
pub const SUPERAGENT_FETCH_MS: u64 = 5_000;
/// How long the superagent's wallet is reused before it is fetched again, in seconds (R-G7).
pub const SUPERAGENT_CACHE_S: i64 = 300;
/// Longest `network_info` answer read from the superagent, in bytes.
pub const SUPERAGENT_BODY_BYTES_MAX: u64 = 64 * 1024;
/// Credited payments remembered. A credit is forgotten once its payment is too old to count anyway
/// (`PAYMENT_AGE_MAX_S` plus the skew, so a replay of it is refused by age); before that, a new payment
/// beyond this many is not credited.
pub const WALLET_CREDITS_MAX: usize = 65_536;

/// The tokens known by symbol (0.5.3's table): symbol, mint, decimals.
pub const KNOWN_TOKENS: [(&str, &str, u8); 3] = [
    ("DM", "5DxioZwEeAKpBaYC5veTHArKE55qRDSmb5RZ6VwApump", 6),
    ("USDC", "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", 6),
    ("USDT", "Es9vMFrzaCERmJfrF4H2FYD4KCoNkY11McCe8BenwNYB", 6),
];

/// An amount as a tool receives it: a decimal text (exact), or a JSON number.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum AmountArg {
    /// `"1.001"`: converted exactly.
    Text(String),
    /// `1.001`: converted from its shortest decimal form, which is the text sent for up to 15
    /// significant digits; more are refused, since the number may already have been rounded.
    Number(serde_json::Number),
}

/// Most significant digits a JSON-number amount may have (an f64 holds 15 exactly).
const NUMBER_DIGITS_MAX: usize = 15;

impl AmountArg {
    /// Base units for a token of `decimals`, or why not.
    pub fn units(&self, decimals: u8) -> Result<u64, String> {
        let text = match self {
            Self::Text(t) => t.trim().to_owned(),
            Self::Number(n) => number_text(n)?,
        };
        parse_amount(&text, decimals).map_err(|e| format!("Invalid amount: {e}"))
    }
}

fn number_text(n: &serde_json::Number) -> Result<String, String> {
    if let Some(u) = n.as_u64() {
        return Ok(u.to_string());
    }
    let f = n.as_f64().filter(|f| f.is_finite() && *f > 0.0).ok_or("Invalid amount: must be greater than zero")?;
    // Rust writes the shortest text that reads back as the same f64, without an exponent.
    let text = f.to_string();
    let digits = text.trim_start_matches(['0', '.']).chars().filter(char::is_ascii_digit).count();
    if digits > NUMBER_DIGITS_MAX {
        return Err("Invalid amount: too many digits for a JSON number; send it as a string".to_owned());
    }
    Ok(text)
}

fn notify_default() -> bool {
    true
}

fn chain_default() -> String {
    "solana".to_owned()
}

/// One wallet operation: a tool's arguments, and the control line `{"cmd":"wallet","op":...}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub enum WalletCall {
    /// darkmatter_wallet_balances.
    Balances {
        /// Only this chain.
        #[serde(default)]
        chain: Option<String>,
    },
    /// darkmatter_get_balance.
    GetBalance {
        /// A token mint or symbol; none = SOL.
        #[serde(default)]
        mint: Option<String>,
    },
    /// darkmatter_send_sol (and darkmatter_wallet_send on Solana), to an already resolved wallet.
    SendSol {
        /// The recipient's wallet.
        to_wallet: String,
        /// SOL.
        amount: AmountArg,
    },
    /// darkmatter_send_token, to an already resolved wallet.
    SendToken {
        /// The recipient's wallet.
        to_wallet: String,
        /// Mint address or known symbol.
        mint: String,
        /// In whole tokens.
        amount: AmountArg,
        /// The mint's decimals (known symbols' own win).
        #[serde(default)]
        decimals: Option<u8>,
    },
    /// darkmatter_set_superagent.
    SetSuperagent {
        /// The URL; none = back to the default.
        #[serde(default)]
        url: Option<String>,
    },
}

impl WalletCall {
    /// Whether the call spends or redirects money: refused to spawned sessions (R-C7).
    pub fn spends(&self) -> bool {
        matches!(self, Self::SendSol { .. } | Self::SendToken { .. } | Self::SetSuperagent { .. })
    }
}

/// Arguments of darkmatter_wallet_balances.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BalancesArgs {
    /// Only this chain (`solana`); omit for every wallet.
    #[serde(default)]
    pub chain: Option<String>,
}

/// Arguments of darkmatter_get_balance.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct GetBalanceArgs {
    /// A token mint address or symbol (DM, USDC, USDT); omit for SOL.
    #[serde(default)]
    pub mint: Option<String>,
}

/// Arguments of darkmatter_wallet_send.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WalletSendArgs {
    /// The connected agent to pay.
    pub agent_id: String,
    /// Amount in SOL, as a decimal string ("1.001") or a number.
    pub amount: AmountArg,
    /// The chain (only `solana`).
    #[serde(default = "chain_default")]
    pub chain: String,
    /// Send the recipient a signed payment notice after the transfer confirms.
    #[serde(default = "notify_default")]
    pub notify: bool,
}

/// Arguments of darkmatter_send_sol.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendSolArgs {
    /// The connected agent to pay.
    pub agent_id: String,
    /// Amount in SOL, as a decimal string ("1.001") or a number.
    pub amount: AmountArg,
    /// Send the recipient a signed payment notice after the transfer confirms.
    #[serde(default = "notify_default")]
    pub notify: bool,
}

/// Arguments of darkmatter_send_token.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SendTokenArgs {
    /// The connected agent to pay.
    pub agent_id: String,
    /// The token: a mint address, or DM, USDC or USDT.
    pub mint: String,
    /// Amount in whole tokens, as a decimal string ("1.5") or a number.
    pub amount: AmountArg,
    /// The mint's decimals, 0..=18 (known symbols use their own).
    #[serde(default)]
    pub decimals: Option<u8>,
    /// Send the recipient a signed payment notice after the transfer confirms.
    #[serde(default = "notify_default")]
    pub notify: bool,
}

/// Arguments of darkmatter_set_superagent.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SetSuperagentArgs {
    /// The superagent's URL; omit or null to go back to the default (the first anchor).
    #[serde(default)]
    pub url: Option<String>,
}

/// A token resolved from a symbol or an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    /// The mint.
    pub mint: Pubkey,
    /// Its decimals, when known without asking the cluster.
    pub decimals: Option<u8>,
    /// The symbol, when known.
    pub symbol: Option<&'static str>,
}

/// `DM` / `USDC` / `USDT` (any case), or a base58 mint address.
pub fn resolve_token(text: &str) -> Result<Token, String> {
    let text = text.trim();
    if let Some((symbol, mint, decimals)) = KNOWN_TOKENS.iter().find(|(s, _, _)| s.eq_ignore_ascii_case(text)) {
        let mint = Pubkey::from_base58(mint).map_err(|e| e.to_string())?;
        return Ok(Token { mint, decimals: Some(*decimals), symbol: Some(symbol) });
    }
    let mint =
        Pubkey::from_base58(text).map_err(|_| format!("Invalid mint '{text}': not a token symbol or address"))?;
    Ok(Token { mint, decimals: None, symbol: None })
}

/// Why `DARKMATTER_WALLET_SPEND_LIMIT` was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum SpendLimitError {
    /// An entry is not `AMOUNT` or `ASSET=AMOUNT`.
    #[error("entry '{0}' must be AMOUNT (SOL) or ASSET=AMOUNT with ASSET SOL, DM, USDC, USDT or a mint")]
    Entry(String),
    /// An amount is not a decimal the asset can hold.
    #[error("amount '{0}': {1}")]
    Amount(String, String),
    /// More than `SPEND_LIMITS_MAX` entries.
    #[error("at most {SPEND_LIMITS_MAX} entries")]
    TooMany,
}

/// The daily limits: per asset (`SOL` or a mint address), a decimal text converted with the asset's
/// decimals when spent. An asset without a limit cannot be spent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SpendLimits(BTreeMap<String, String>);

impl SpendLimits {
    /// Parses `1.5` (SOL a day) or `SOL=1.5,USDC=100,<mint>=5`; empty or `0` = spending off.
    pub fn parse(text: &str) -> Result<Self, SpendLimitError> {
        let mut limits = BTreeMap::new();
        for entry in text.split(',').map(str::trim).filter(|e| !e.is_empty()) {
            let (asset, amount) = entry.split_once('=').unwrap_or(("SOL", entry));
            let (asset, amount) = (asset.trim(), amount.trim());
            let (key, decimals) = if asset.eq_ignore_ascii_case("SOL") {
                ("SOL".to_owned(), SOL_DECIMALS)
            } else {
                let token = resolve_token(asset).map_err(|_| SpendLimitError::Entry(entry.to_owned()))?;
                (token.mint.to_base58(), token.decimals.unwrap_or(WALLET_DECIMALS_MAX))
            };
            if amount.bytes().all(|b| b == b'0' || b == b'.') && !amount.is_empty() {
                continue; // zero: off for this asset
            }
            parse_amount(amount, decimals).map_err(|e| SpendLimitError::Amount(amount.to_owned(), e.to_string()))?;
            limits.insert(key, amount.to_owned());
            if limits.len() > SPEND_LIMITS_MAX {
                return Err(SpendLimitError::TooMany);
            }
        }
        Ok(Self(limits))
    }

    /// The limit of `asset` in base units of `decimals` (`None`: no limit set, so no spending).
    fn units(&self, asset: &str, decimals: u8) -> Option<u64> {
        self.0.get(asset).and_then(|text| parse_amount(text, decimals).ok())
    }
}

/// One spend of the ledger.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Spend {
    /// Unix seconds.
    at_s: i64,
    /// `SOL` or the mint.
    asset: String,
    /// Base units.
    units: u64,
    /// The transaction, once signed.
    #[serde(default)]
    signature: Option<String>,
}

/// A payment credited to a notice.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Credit {
    /// The notice (an inbox message id).
    message_id: String,
    /// When it was credited, unix seconds.
    at_s: i64,
    /// Base units that arrived.
    units: u64,
}

/// What the wallet file holds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
struct Ledger {
    #[serde(default)]
    spends: Vec<Spend>,
    #[serde(default)]
    superagent_url: Option<String>,
    /// Transaction signature → the notice it was credited to.
    #[serde(default)]
    credited: BTreeMap<String, Credit>,
}

/// A clock in unix seconds (tests move it).
pub type Clock = Arc<dyn Fn() -> i64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64))
}

/// Why a wallet call failed; the text is what the tool answers (0.5.3's where it had one).
#[derive(Debug, Error, PartialEq, Eq)]
#[error("{0}")]
pub struct CallError(pub String);

impl From<WalletError> for CallError {
    fn from(e: WalletError) -> Self {
        Self(e.to_string())
    }
}

/// The wallet service of one node.
pub struct WalletService {
    /// The superagent's wallet as last fetched: (url, wallet, unix seconds).
    superagent_wallet: Mutex<Option<(String, Option<String>, i64)>>,
    solana: Solana,
    limits: SpendLimits,
    default_superagent: Option<String>,
    file: PathBuf,
    ledger: Mutex<Ledger>,
    clock: Clock,
}

impl WalletService {
    /// The node's service as configured (`DARKMATTER_SOLANA_RPC`, `DARKMATTER_WALLET_SPEND_LIMIT`, the
    /// first anchor as default superagent), with the wallet derived from `passport`.
    pub fn from_config(config: &crate::RuntimeConfig, passport: &proto_core::Passport) -> Result<Self, String> {
        let rpc = crate::solana::HttpRpc::new(&config.solana_rpc).map_err(|e| format!("DARKMATTER_SOLANA_RPC: {e}"))?;
        let solana = Solana::new(Arc::new(rpc), proto_core::wallet::Wallet::from_passport(passport));
        let superagent = config.anchor_nodes.first().cloned();
        Self::open(solana, config.wallet_spend_limit.clone(), superagent, &config.state_dir, system_clock())
    }

    /// Makes the node's AntiMatter payouts on a thread of their own, one at a time and in order (each
    /// waits for the cluster's confirmation); one that fails is handed back to the node, which owes it
    /// again.
    pub fn pay_out(
        self: Arc<Self>,
        payouts: async_channel::Receiver<proto_core::antimatter::ledger::Payout>,
        failed: impl Fn(proto_core::antimatter::ledger::Payout) + Send + 'static,
    ) -> std::io::Result<()> {
        std::thread::Builder::new().name("dm-antimatter-pay".to_owned()).spawn(move || {
            while let Ok(payout) = payouts.recv_blocking() {
                if let Err(e) = self.pay_fee(&payout) {
                    eprintln!("darkmatter: AntiMatter fee {} not paid: {e}", payout.signal_id);
                    failed(payout);
                }
            }
        })?;
        Ok(())
    }

    /// The service over `solana`, keeping its ledger in `state_dir`; `default_superagent` is the first
    /// anchor, if any.
    pub fn open(
        solana: Solana,
        limits: SpendLimits,
        default_superagent: Option<String>,
        state_dir: &Path,
        clock: Clock,
    ) -> Result<Self, String> {
        let file = state_dir.join(WALLET_FILE);
        let ledger = match fs::read(&file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{} is damaged: {e}", file.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ledger::default(),
            Err(e) => return Err(format!("cannot read {}: {e}", file.display())),
        };
        Ok(Self {
            superagent_wallet: Mutex::new(None),
            solana,
            limits,
            default_superagent,
            file,
            ledger: Mutex::new(ledger),
            clock,
        })
    }

    /// The wallet's address.
    pub fn address(&self) -> String {
        self.solana.address().to_base58()
    }

    /// The Solana client.
    pub fn solana(&self) -> &Solana {
        &self.solana
    }

    /// The superagent URL in effect (the set one, else the default).
    pub fn superagent_url(&self) -> Option<String> {
        self.lock().superagent_url.clone().or_else(|| self.default_superagent.clone())
    }

    /// The Solana wallet the superagent advertises in its `network_info`, fetched at most every
    /// `SUPERAGENT_CACHE_S` (best effort: `None` when it cannot be had).
    pub fn superagent_wallet(&self) -> Option<String> {
        let url = self.superagent_url()?;
        let now = (self.clock)();
        let mut cached = self.superagent_wallet.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((u, wallet, at)) = cached.as_ref() {
            if *u == url && now - at < SUPERAGENT_CACHE_S {
                return wallet.clone();
            }
        }
        let wallet = fetch_wallet(&url);
        *cached = Some((url, wallet.clone(), now));
        wallet
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runs one call (blocking: it waits for the cluster).
    pub fn call(&self, call: WalletCall) -> Result<Value, CallError> {
        match call {
            WalletCall::Balances { chain } => self.balances(chain.as_deref()),
            WalletCall::GetBalance { mint } => self.get_balance(mint.as_deref()),
            WalletCall::SendSol { to_wallet, amount } => self.send_sol(&to_wallet, &amount),
            WalletCall::SendToken { to_wallet, mint, amount, decimals } => {
                self.send_token(&to_wallet, &mint, &amount, decimals)
            }
            WalletCall::SetSuperagent { url } => self.set_superagent(url),
        }
    }

    fn balances(&self, chain: Option<&str>) -> Result<Value, CallError> {
        if let Some(c) = chain.filter(|c| !c.eq_ignore_ascii_case("solana")) {
            return Err(CallError(format!("No wallet for chain '{c}'")));
        }
        let mut entry = json!({"chain": "solana", "address": self.address(), "unit": "SOL"});
        match self.solana.balance_of(&self.solana.address()) {
            Ok(lamports) => {
                entry["balance"] = json!(format_amount(lamports, SOL_DECIMALS));
                entry["lamports"] = json!(lamports);
            }
            Err(e) => {
                entry["balance"] = Value::Null;
                entry["error"] = json!(e.to_string());
            }
        }
        Ok(json!({"success": true, "wallets": [entry]}))
    }

    fn get_balance(&self, mint: Option<&str>) -> Result<Value, CallError> {
        let address = self.address();
        let Some(mint) = mint.filter(|m| !m.trim().is_empty() && !m.trim().eq_ignore_ascii_case("SOL")) else {
            let lamports = self.solana.balance_of(&self.solana.address()).map_err(|e| CallError(e.to_string()))?;
            return Ok(json!({"success": true, "token": "SOL", "balance": format_amount(lamports, SOL_DECIMALS),
                "lamports": lamports, "wallet_address": address}));
        };
        let token = resolve_token(mint).map_err(CallError)?;
        let balance = self.solana.token_balance(&token.mint)?;
        let mut out = json!({"success": true, "token": token.mint.to_base58(),
            "balance": format_amount(balance.amount, balance.decimals), "amount": balance.amount.to_string(),
            "decimals": balance.decimals, "wallet_address": address});
        if !balance.has_account {
            out["note"] = json!("No token account found");
        }
        Ok(out)
    }

    fn send_sol(&self, to_wallet: &str, amount: &AmountArg) -> Result<Value, CallError> {
        let to = recipient(to_wallet)?;
        let lamports = amount.units(SOL_DECIMALS).map_err(CallError)?;
        let spend = self.reserve("SOL", SOL_DECIMALS, lamports)?;
        let sent = self.solana.send_sol(to, lamports, None);
        let sent = self.settle(spend, sent)?;
        Ok(json!({"success": true, "status": sent.status.as_str(), "tx_signature": sent.signature,
            "amount": format_amount(lamports, SOL_DECIMALS), "lamports": lamports, "token": "SOL",
            "from_wallet": self.address(), "to_wallet": to.to_base58(),
            "sender_superagent_wallet": self.superagent_wallet()}))
    }

    fn send_token(
        &self,
        to_wallet: &str,
        mint: &str,
        amount: &AmountArg,
        decimals: Option<u8>,
    ) -> Result<Value, CallError> {
        let to = recipient(to_wallet)?;
        let token = resolve_token(mint).map_err(CallError)?;
        let decimals = match (token.decimals, decimals) {
            (Some(known), _) => known,
            (None, Some(d)) if d <= WALLET_DECIMALS_MAX => d,
            (None, Some(_)) => return Err(CallError(format!("decimals must be at most {WALLET_DECIMALS_MAX}"))),
            (None, None) => self.solana.mint_decimals(&token.mint)?,
        };
        let units = amount.units(decimals).map_err(CallError)?;
        let spend = self.reserve(&token.mint.to_base58(), decimals, units)?;
        let sent = self.solana.send_token(to, token.mint, units, decimals, None);
        let sent = self.settle(spend, sent)?;
        Ok(json!({"success": true, "status": sent.status.as_str(), "tx_signature": sent.signature,
            "amount": format_amount(units, decimals), "units": units.to_string(), "token": token.mint.to_base58(),
            "token_mint": token.mint.to_base58(), "decimals": decimals, "symbol": token.symbol,
            "from_wallet": self.address(), "to_wallet": to.to_base58(), "created_recipient_ata": "idempotent",
            "sender_superagent_wallet": self.superagent_wallet()}))
    }

    /// Records a spend against the asset's daily limit before anything is signed (two sends at once
    /// cannot both fit under the limit), or says why it does not fit.
    fn reserve(&self, asset: &str, decimals: u8, units: u64) -> Result<Spend, CallError> {
        let now = (self.clock)();
        let mut ledger = self.lock();
        ledger.spends.retain(|s| now - s.at_s < SPEND_WINDOW_S);
        let Some(limit) = self.limits.units(asset, decimals) else {
            return Err(CallError(format!(
                "Spending is off for {asset}: the user sets a daily limit with DARKMATTER_WALLET_SPEND_LIMIT"
            )));
        };
        let spent = ledger.spends.iter().filter(|s| s.asset == asset).fold(0u64, |sum, s| sum.saturating_add(s.units));
        if spent.saturating_add(units) > limit {
            return Err(CallError(format!(
                "Daily spending limit reached for {asset}: {} of {} spent in the last 24 h, {} asked",
                format_amount(spent, decimals),
                format_amount(limit, decimals),
                format_amount(units, decimals)
            )));
        }
        if ledger.spends.len() >= WALLET_SPENDS_MAX {
            return Err(CallError("Too many spends in the last 24 h".to_owned()));
        }
        let spend = Spend { at_s: now, asset: asset.to_owned(), units, signature: None };
        ledger.spends.push(spend.clone());
        self.save(&ledger)?;
        Ok(spend)
    }

    /// Keeps the reservation of a send that may have moved money (confirmed or submitted), with its
    /// signature; releases it when nothing can have moved (refused, expired, failed).
    fn settle(&self, spend: Spend, sent: Result<Sent, WalletError>) -> Result<Sent, CallError> {
        let mut ledger = self.lock();
        let at = ledger.spends.iter().position(|s| *s == spend);
        let keep = matches!(&sent, Ok(Sent { status: SendStatus::Confirmed | SendStatus::Submitted, .. }));
        match (at, &sent) {
            (Some(i), Ok(s)) if keep => ledger.spends[i].signature = Some(s.signature.clone()),
            (Some(i), _) => {
                ledger.spends.remove(i);
            }
            (None, _) => {}
        }
        self.save(&ledger)?;
        drop(ledger);
        match sent {
            Ok(Sent { status: SendStatus::Failed(e), signature }) => {
                Err(CallError(format!("Transaction failed: {e} (tx {signature})")))
            }
            Ok(s) => Ok(s),
            Err(WalletError::Rpc(e)) => Err(CallError(format!("Transaction failed: {e}"))),
            Err(e) => Err(e.into()),
        }
    }

    /// Makes one AntiMatter payout the node settled (SPEC §21.6), with memo `am:<signal id>`. It is
    /// not charged to the daily spending limit: it is 1 % of a payment this wallet received and
    /// verified, owed by protocol, not spending the agent chose. `Err` when nothing can have moved
    /// (refused, failed, expired): the node then owes it again.
    pub fn pay_fee(&self, payout: &proto_core::antimatter::ledger::Payout) -> Result<Sent, CallError> {
        let to = recipient(&payout.to_wallet)?;
        let memo = Some(format!("am:{}", payout.signal_id));
        let sent = if payout.asset == "SOL" {
            self.solana.send_sol(to, payout.units, memo)
        } else {
            let mint = resolve_token(&payout.asset).map_err(CallError)?.mint;
            self.solana.send_token(to, mint, payout.units, payout.decimals, memo)
        };
        match sent {
            Ok(s @ Sent { status: SendStatus::Confirmed | SendStatus::Submitted, .. }) => Ok(s),
            Ok(Sent { status, signature }) => {
                Err(CallError(format!("fee not paid: {} (tx {signature})", status.as_str())))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn set_superagent(&self, url: Option<String>) -> Result<Value, CallError> {
        let url = url.map(|u| u.trim().to_owned()).filter(|u| !u.is_empty());
        if let Some(u) = &url {
            if u.len() > URL_BYTES_MAX {
                return Err(CallError(format!("url is longer than {URL_BYTES_MAX} bytes")));
            }
            proto_core::url::validate(u).map_err(|e| CallError(format!("Invalid url: {e}")))?;
        }
        let mut ledger = self.lock();
        ledger.superagent_url = url.clone();
        self.save(&ledger)?;
        drop(ledger);
        Ok(json!({"success": true, "superagent_url": url, "effective_url": self.superagent_url(),
            "reset_to_default": url.is_none()}))
    }

    /// Writes the ledger: a private temporary file, then renamed over the old one.
    fn save(&self, ledger: &Ledger) -> Result<(), CallError> {
        let io = |e: std::io::Error| CallError(format!("cannot save {}: {e}", self.file.display()));
        let tmp = self.file.with_extension("json.tmp");
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp).map_err(io)?;
        f.write_all(&serde_json::to_vec(ledger).map_err(|e| CallError(e.to_string()))?).map_err(io)?;
        f.sync_all().map_err(io)?;
        fs::rename(&tmp, &self.file).map_err(io)
    }
}

/// Why a payment notice does not count.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum NoticeError {
    /// The notice itself is not a well-formed claim (fields missing or invalid).
    #[error("not a payment notice: {0}")]
    Claim(String),
    /// The cluster could not be asked (try again later).
    #[error("{0}")]
    Unavailable(String),
    /// The transaction does not show the claimed payment.
    #[error(transparent)]
    Refused(#[from] PaymentRefusal),
}

impl NoticeError {
    /// Whether a later check may find otherwise (the transaction may not be final yet, the RPC may be
    /// down): such answers are not remembered.
    pub fn transient(&self) -> bool {
        matches!(self, Self::Unavailable(_) | Self::Refused(PaymentRefusal::NotFound))
    }
}

impl WalletService {
    /// Whether the payment notice `message_id` (its `metadata`), from the peer whose handshake
    /// advertised `payer`, counts (R-G8): the transaction is fetched and checked, and credited to this
    /// notice alone (persisted). Answers the base units that arrived. Checking the same notice again
    /// answers the same; the same transaction under another notice is refused as replayed.
    pub fn verify_notice(&self, message_id: &str, payer: &str, metadata: &Value) -> Result<u64, NoticeError> {
        let claim = self.claim(payer, metadata)?;
        if let Some(credit) = self.lock().credited.get(&claim.signature) {
            return match same_credit(&credit.message_id, message_id) {
                true => Ok(credit.units),
                false => Err(PaymentRefusal::Replayed.into()),
            };
        }
        let tx = self.solana.transaction(&claim.signature).map_err(|e| NoticeError::Unavailable(e.to_string()))?;
        let units = verify_payment(&tx.unwrap_or(Value::Null), &claim, (self.clock)())?;
        self.credit(&claim.signature, message_id, units)
    }

    /// The core's [`proto_core::PaymentCheck`], answered: verified and credited once under its key (one
    /// ledger for notices and pool purchases alike), refused, or unavailable for now.
    pub fn verify_check(&self, check: &proto_core::PaymentCheck) -> proto_core::PaymentVerdict {
        use proto_core::PaymentVerdict;
        let mut metadata = json!({"type": "solana_payment", "tx_signature": check.tx_signature,
            "token": check.token, "amount": check.amount});
        if let Some(memo) = &check.memo {
            metadata["memo"] = json!(memo);
        }
        match self.verify_notice(&check.credit_key, &check.payer_wallet, &metadata) {
            Ok(units) => PaymentVerdict::Verified(units),
            Err(e) if e.transient() => PaymentVerdict::Unavailable(e.to_string()),
            Err(e) => PaymentVerdict::Refused(e.to_string()),
        }
    }

    /// Records the credit unless another notice took the signature meanwhile.
    fn credit(&self, signature: &str, message_id: &str, units: u64) -> Result<u64, NoticeError> {
        let now = (self.clock)();
        let mut ledger = self.lock();
        ledger.credited.retain(|_, c| now - c.at_s <= PAYMENT_AGE_MAX_S + PAYMENT_CLOCK_SKEW_S);
        if let Some(c) = ledger.credited.get(signature) {
            return if same_credit(&c.message_id, message_id) {
                Ok(c.units)
            } else {
                Err(PaymentRefusal::Replayed.into())
            };
        }
        if ledger.credited.len() >= WALLET_CREDITS_MAX {
            return Err(NoticeError::Unavailable("too many payments credited in the last day".to_owned()));
        }
        let credit = Credit { message_id: message_id.to_owned(), at_s: now, units };
        ledger.credited.insert(signature.to_owned(), credit);
        self.save(&ledger).map_err(|e| NoticeError::Unavailable(e.0))?;
        Ok(units)
    }

    /// The claim a notice makes: its signature, asset and amount (converted with the mint's decimals
    /// as the cluster reports them), from `payer` to this wallet.
    fn claim(&self, payer: &str, metadata: &Value) -> Result<PaymentClaim, NoticeError> {
        let bad = |what: &str| NoticeError::Claim(what.to_owned());
        let field = |k: &str| metadata.get(k).and_then(Value::as_str).map(str::trim);
        if field("type") != Some("solana_payment") {
            return Err(bad("type is not solana_payment"));
        }
        let signature = field("tx_signature").filter(|s| s.len() <= 100).ok_or_else(|| bad("tx_signature"))?;
        let payer = Pubkey::from_base58(payer).map_err(|_| bad("the sender has no valid wallet"))?;
        let token = field("token").unwrap_or("SOL");
        let (asset, decimals) = if token.eq_ignore_ascii_case("SOL") {
            (Asset::Sol, SOL_DECIMALS)
        } else {
            let mint = resolve_token(token).map_err(|_| bad("token"))?.mint;
            let decimals = self.solana.mint_decimals(&mint).map_err(|e| match e {
                WalletError::Rpc(r) => NoticeError::Unavailable(r.to_string()),
                other => NoticeError::Claim(other.to_string()),
            })?;
            (Asset::Token(mint), decimals)
        };
        let amount = match metadata.get("amount") {
            Some(Value::String(t)) => AmountArg::Text(t.clone()),
            Some(Value::Number(n)) => AmountArg::Number(n.clone()),
            _ => return Err(bad("amount")),
        };
        let amount = amount.units(decimals).map_err(NoticeError::Claim)?;
        let memo = field("memo").map(str::to_owned);
        Ok(PaymentClaim { signature: signature.to_owned(), payer, payee: self.solana.address(), asset, amount, memo })
    }
}

/// Whether a recorded credit key and a check's key name the same purpose. The core keys a notice
/// `notice:<message id>`; ledgers written before pools keyed it by the bare message id, which still
/// counts as that notice's — unless it has a `:`, as every other purpose's key has (a sender picks its
/// message ids, and one named `pool:<pool>:<tx>` must not match a purchase's credit).
fn same_credit(recorded: &str, key: &str) -> bool {
    recorded == key || (!recorded.contains(':') && key.strip_prefix("notice:") == Some(recorded))
}

/// `wallets.solana` of `<url>/__darkmatter__/network_info`, when it is a valid address.
fn fetch_wallet(url: &str) -> Option<String> {
    use std::io::Read as _;
    let agent = ureq::AgentBuilder::new()
        .timeout(std::time::Duration::from_millis(SUPERAGENT_FETCH_MS))
        .redirects(0)
        .user_agent(crate::client::USER_AGENT)
        .build();
    let response = agent.get(&proto_core::url::endpoint(url, "network_info")).call().ok()?;
    let mut body = Vec::new();
    response.into_reader().take(SUPERAGENT_BODY_BYTES_MAX + 1).read_to_end(&mut body).ok()?;
    if body.len() as u64 > SUPERAGENT_BODY_BYTES_MAX {
        return None;
    }
    let info: Value = serde_json::from_slice(&body).ok()?;
    let wallet = info.get("wallets")?.get("solana")?.as_str()?;
    Pubkey::from_base58(wallet).ok().map(|p| p.to_base58())
}

fn recipient(text: &str) -> Result<Pubkey, CallError> {
    Pubkey::from_base58(text.trim()).map_err(|_| CallError(format!("Invalid recipient wallet '{text}'")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spend_limits_parse_per_asset_and_zero_is_off() {
        let l = SpendLimits::parse("1.5").unwrap();
        assert_eq!(l.units("SOL", 9), Some(1_500_000_000));
        let l = SpendLimits::parse("SOL=0, usdc=100").unwrap();
        assert_eq!(l.units("SOL", 9), None);
        assert_eq!(l.units("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v", 6), Some(100_000_000));
        assert_eq!(SpendLimits::parse("").unwrap(), SpendLimits::default());
        assert!(matches!(SpendLimits::parse("SOL=1.0000000001"), Err(SpendLimitError::Amount(..))));
        assert!(matches!(SpendLimits::parse("FOO=1"), Err(SpendLimitError::Entry(_))));
        assert!(matches!(SpendLimits::parse("SOL=-1"), Err(SpendLimitError::Amount(..))));
    }

    #[test]
    fn the_wallet_variables_are_checked_at_start_up() {
        let config = |var: &'static str, value: &'static str| {
            crate::RuntimeConfig::from_lookup(std::env::temp_dir(), move |k| (k == var).then(|| value.to_owned()))
        };
        let c = config("DARKMATTER_WALLET_SPEND_LIMIT", "").unwrap();
        assert_eq!((c.wallet_spend_limit, c.solana_rpc.as_str()), (SpendLimits::default(), SOLANA_RPC_DEFAULT_TEXT));
        assert!(config("DARKMATTER_WALLET_SPEND_LIMIT", "SOL=2").unwrap().wallet_spend_limit.units("SOL", 9).is_some());
        for (var, value) in [
            ("DARKMATTER_WALLET_SPEND_LIMIT", "SOL=lots"),
            ("DARKMATTER_SOLANA_RPC", "http://rpc.example"),
            ("DARKMATTER_SOLANA_RPC", "not a url"),
        ] {
            let e = config(var, value).unwrap_err().to_string();
            assert!(e.contains(var), "{e}");
        }
        assert_eq!(
            config("DARKMATTER_SOLANA_RPC", "http://127.0.0.1:8899").unwrap().solana_rpc,
            "http://127.0.0.1:8899"
        );
    }

    /// 0.5.3's default cluster, as the README documents it.
    const SOLANA_RPC_DEFAULT_TEXT: &str = "https://api.mainnet-beta.solana.com";

    #[test]
    fn json_numbers_are_exact_up_to_fifteen_digits() {
        let n = |v: Value| match v {
            Value::Number(n) => AmountArg::Number(n),
            _ => unreachable!(),
        };
        assert_eq!(n(json!(1.001)).units(9), Ok(1_001_000_000), "0.5.3 sent 1,000,999,999");
        assert_eq!(n(json!(2)).units(9), Ok(2_000_000_000));
        assert_eq!(n(json!(0.1)).units(9), Ok(100_000_000));
        assert!(n(json!(1.0000001)).units(6).is_err(), "7 decimals for a 6-decimal token");
        assert!(n(json!(0.12345678901234568)).units(18).is_err());
        assert!(n(json!(-1.5)).units(9).is_err());
        assert!(AmountArg::Text("0".into()).units(9).is_err());
        assert!(AmountArg::Text("18446744073.709551616".into()).units(9).is_err(), "one over u64");
        assert_eq!(AmountArg::Text("18446744073.709551615".into()).units(9), Ok(u64::MAX));
    }

    #[test]
    fn a_wallet_call_crosses_the_control_protocol_unchanged() {
        let calls = [
            WalletCall::SendSol { to_wallet: "w".into(), amount: AmountArg::Text("1.001".into()) },
            WalletCall::SendToken {
                to_wallet: "w".into(),
                mint: "USDC".into(),
                amount: AmountArg::Number(serde_json::Number::from(2)),
                decimals: Some(6),
            },
            WalletCall::Balances { chain: None },
            WalletCall::GetBalance { mint: Some("DM".into()) },
            WalletCall::SetSuperagent { url: None },
        ];
        for call in calls {
            // How the attach client writes it.
            let mut line = serde_json::to_value(&call).unwrap();
            line["cmd"] = json!("wallet");
            line["id"] = json!(7);
            match crate::control::parse(&line) {
                Ok(crate::control::Request::Wallet(back)) => assert_eq!(back, call),
                other => panic!("{call:?}: {:?}", other.err()),
            }
        }
        let unknown = json!({"cmd": "wallet", "op": "send_sol", "to_wallet": "w", "amount": "1", "x": 1});
        assert!(crate::control::parse(&unknown).is_err(), "unknown fields are refused");
    }

    #[test]
    fn a_credit_names_one_purpose() {
        assert!(same_credit("notice:m1", "notice:m1"));
        assert!(same_credit("m1", "notice:m1"), "a ledger from before pools");
        assert!(!same_credit("pool:p:tx", "notice:pool:p:tx"), "a message id never names a purchase");
        assert!(!same_credit("notice:m1", "pool:p:m1"));
    }

    #[test]
    fn tokens_resolve_by_symbol_in_any_case_or_by_address() {
        let usdc = resolve_token("usdc").unwrap();
        assert_eq!((usdc.decimals, usdc.symbol), (Some(6), Some("USDC")));
        let raw = resolve_token("EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v").unwrap();
        assert_eq!((raw.mint, raw.decimals), (usdc.mint, None));
        assert!(resolve_token("not-a-mint").is_err());
        assert!(resolve_token("1111").is_err(), "must decode to 32 bytes");
    }
}
