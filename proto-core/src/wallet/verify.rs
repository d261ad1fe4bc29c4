//! Payment verification (R-G8), the pure part: given a transaction as `getTransaction` returned it
//! (base64 bytes and `meta`) and what a payment notice claims, decide whether the claimed payment
//! really happened. Nothing the RPC says about signers is believed: the bytes are decoded here, the
//! payer's Ed25519 signature is checked over the message, and the transfer instructions are read from
//! the message itself; the RPC's balances (`meta`) must agree with them.
//!
//! Whether the signature was credited before is the caller's (a persisted set).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::Value;
use thiserror::Error;

use super::derive::Pubkey;
use super::tx::{MEMO_PROGRAM, SYSTEM_PROGRAM, TOKEN_PROGRAM};
use crate::limits::{PAYMENT_AGE_MAX_S, PAYMENT_CLOCK_SKEW_S};

/// Token-2022's program id (`TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb`): payments through it are not
/// accepted (its transfer hooks and fees make "amount sent" and "amount received" differ).
pub const TOKEN_2022_PROGRAM: Pubkey = Pubkey([
    6, 221, 246, 225, 238, 117, 143, 222, 24, 66, 93, 188, 228, 108, 205, 218, 182, 26, 252, 77, 131, 185, 13, 39, 254,
    189, 249, 40, 216, 161, 139, 252,
]);

/// System program instruction 2: `Transfer { lamports }`.
const SYSTEM_TRANSFER: u32 = 2;
/// Token program instruction 3: `Transfer { amount }`.
const TOKEN_TRANSFER: u8 = 3;
/// Token program instruction 12: `TransferChecked { amount, decimals }`.
const TOKEN_TRANSFER_CHECKED: u8 = 12;

/// What was paid.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Asset {
    /// Lamports.
    Sol,
    /// Base units of this mint (classic Token program).
    Token(Pubkey),
}

/// What a payment notice claims.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PaymentClaim {
    /// The transaction signature (base58), which must be the transaction's first.
    pub signature: String,
    /// The payer's wallet: the one its sender's signed handshake advertised, never the notice's word.
    pub payer: Pubkey,
    /// Our wallet.
    pub payee: Pubkey,
    /// What.
    pub asset: Asset,
    /// At least this many base units.
    pub amount: u64,
    /// The memo the transaction must carry, when the notice names one.
    pub memo: Option<String>,
}

/// Why a payment does not count.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PaymentRefusal {
    /// The cluster has no such transaction (yet, or at this commitment).
    #[error("transaction not found")]
    NotFound,
    /// The answer is not a transaction we can decode.
    #[error("transaction undecodable: {0}")]
    Malformed(&'static str),
    /// The transaction's first signature is not the one the notice names.
    #[error("the transaction's signature is not the notice's")]
    SignatureMismatch,
    /// The transaction failed (`meta.err` set): nothing moved but the fee.
    #[error("the transaction failed")]
    Failed,
    /// The payer did not sign it (or its signature does not verify).
    #[error("the payer did not sign the transaction")]
    PayerNotSigner,
    /// No transfer from the payer to us of the asset.
    #[error("no transfer from the payer to this wallet")]
    NoTransfer,
    /// Less arrived than claimed.
    #[error("short payment: {received} base units arrived, {claimed} claimed")]
    Short {
        /// What the balances show.
        received: u64,
        /// What the notice says.
        claimed: u64,
    },
    /// The token moved is another mint.
    #[error("wrong mint")]
    WrongMint,
    /// Paid through Token-2022, which is not accepted.
    #[error("Token-2022 payments are not accepted")]
    Token2022,
    /// No block time, or older than `PAYMENT_AGE_MAX_S`, or in the future.
    #[error("the transaction is too old or has no valid block time")]
    Age,
    /// The notice names a memo the transaction does not carry.
    #[error("the memo does not match")]
    Memo,
    /// Already credited to another notice.
    #[error("this transaction was already credited")]
    Replayed,
}

/// A decoded transaction: signatures, the signed message bytes, and what the message says.
struct Decoded {
    signatures: Vec<[u8; 64]>,
    message: Vec<u8>,
    required_signatures: usize,
    keys: Vec<Pubkey>,
    instructions: Vec<CompiledInstruction>,
}

struct CompiledInstruction {
    program: usize,
    accounts: Vec<usize>,
    data: Vec<u8>,
}

/// A cursor over bytes that never panics.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], PaymentRefusal> {
        let end =
            self.at.checked_add(n).filter(|e| *e <= self.bytes.len()).ok_or(PaymentRefusal::Malformed("short"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn byte(&mut self) -> Result<u8, PaymentRefusal> {
        Ok(self.take(1)?[0])
    }

    /// compact-u16: at most three bytes.
    fn compact(&mut self) -> Result<usize, PaymentRefusal> {
        let mut value = 0usize;
        for shift in [0, 7, 14] {
            let b = self.byte()?;
            value |= usize::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(PaymentRefusal::Malformed("compact-u16"))
    }

    fn key(&mut self) -> Result<Pubkey, PaymentRefusal> {
        let mut k = [0u8; 32];
        k.copy_from_slice(self.take(32)?);
        Ok(Pubkey(k))
    }
}

/// Decodes transaction bytes (legacy or v0 message).
fn decode(bytes: &[u8]) -> Result<Decoded, PaymentRefusal> {
    let mut r = Reader { bytes, at: 0 };
    let n = r.compact()?;
    let mut signatures = Vec::with_capacity(n.min(16));
    for _ in 0..n {
        let mut s = [0u8; 64];
        s.copy_from_slice(r.take(64)?);
        signatures.push(s);
    }
    let message = bytes.get(r.at..).ok_or(PaymentRefusal::Malformed("message"))?.to_vec();
    let mut m = Reader { bytes: &message, at: 0 };
    let first = *message.first().ok_or(PaymentRefusal::Malformed("message"))?;
    let versioned = first & 0x80 != 0;
    if versioned {
        if first != 0x80 {
            return Err(PaymentRefusal::Malformed("message version"));
        }
        m.byte()?;
    }
    let required_signatures = usize::from(m.byte()?);
    m.take(2)?; // read-only counts: not needed to find signers
    let n_keys = m.compact()?;
    let keys = (0..n_keys).map(|_| m.key()).collect::<Result<Vec<_>, _>>()?;
    m.take(32)?; // recent blockhash
    let n_ix = m.compact()?;
    let mut instructions = Vec::with_capacity(n_ix.min(64));
    for _ in 0..n_ix {
        let program = usize::from(m.byte()?);
        let n_acc = m.compact()?;
        let accounts = m.take(n_acc)?.iter().map(|a| usize::from(*a)).collect();
        let n_data = m.compact()?;
        let data = m.take(n_data)?.to_vec();
        instructions.push(CompiledInstruction { program, accounts, data });
    }
    if versioned {
        // Address lookup tables: their addresses come back in `meta.loadedAddresses`.
        for _ in 0..m.compact()? {
            m.key()?;
            let writable = m.compact()?;
            m.take(writable)?;
            let readonly = m.compact()?;
            m.take(readonly)?;
        }
    }
    if m.at != message.len() {
        return Err(PaymentRefusal::Malformed("trailing bytes"));
    }
    if required_signatures > keys.len() || signatures.len() != required_signatures {
        return Err(PaymentRefusal::Malformed("signature count"));
    }
    Ok(Decoded { signatures, message, required_signatures, keys, instructions })
}

/// The account keys an instruction index refers to: the message's, then the lookup tables' (writable,
/// then read-only) as `meta.loadedAddresses` lists them.
fn all_keys(decoded: &Decoded, meta: &Value) -> Result<Vec<Pubkey>, PaymentRefusal> {
    let mut keys = decoded.keys.clone();
    for group in ["writable", "readonly"] {
        let list = meta.get("loadedAddresses").and_then(|l| l.get(group)).and_then(Value::as_array);
        for k in list.into_iter().flatten() {
            let text = k.as_str().ok_or(PaymentRefusal::Malformed("loadedAddresses"))?;
            keys.push(Pubkey::from_base58(text).map_err(|_| PaymentRefusal::Malformed("loadedAddresses"))?);
        }
    }
    Ok(keys)
}

/// Checks `tx` (a `getTransaction` result, base64 encoding) against `claim` at unix time `now_s`.
/// Returns the base units that arrived (at least the claimed amount).
pub fn verify_payment(tx: &Value, claim: &PaymentClaim, now_s: i64) -> Result<u64, PaymentRefusal> {
    if tx.is_null() {
        return Err(PaymentRefusal::NotFound);
    }
    let meta = tx.get("meta").filter(|m| m.is_object()).ok_or(PaymentRefusal::Malformed("meta"))?;
    let encoded = tx
        .get("transaction")
        .and_then(|t| t.get(0))
        .and_then(Value::as_str)
        .ok_or(PaymentRefusal::Malformed("transaction"))?;
    let bytes = BASE64.decode(encoded).map_err(|_| PaymentRefusal::Malformed("base64"))?;
    let decoded = decode(&bytes)?;
    let named = super::base58::decode(&claim.signature).ok_or(PaymentRefusal::SignatureMismatch)?;
    if decoded.signatures.first().map(|s| &s[..]) != Some(&named[..]) {
        return Err(PaymentRefusal::SignatureMismatch);
    }
    if !meta.get("err").is_some_and(Value::is_null) {
        return Err(PaymentRefusal::Failed);
    }
    payer_signed(&decoded, &claim.payer)?;
    check_age(tx, now_s)?;
    let keys = all_keys(&decoded, meta)?;
    if let Some(memo) = &claim.memo {
        let carried = decoded
            .instructions
            .iter()
            .any(|ix| keys.get(ix.program) == Some(&MEMO_PROGRAM) && ix.data == memo.as_bytes());
        if !carried {
            return Err(PaymentRefusal::Memo);
        }
    }
    match &claim.asset {
        Asset::Sol => sol_received(&decoded, &keys, meta, claim),
        Asset::Token(mint) => token_received(&decoded, &keys, meta, claim, mint),
    }
}

/// The payer is one of the required signers and its signature verifies over the message.
fn payer_signed(decoded: &Decoded, payer: &Pubkey) -> Result<(), PaymentRefusal> {
    let at = decoded.keys[..decoded.required_signatures]
        .iter()
        .position(|k| k == payer)
        .ok_or(PaymentRefusal::PayerNotSigner)?;
    let key = ed25519_dalek::VerifyingKey::from_bytes(&payer.0).map_err(|_| PaymentRefusal::PayerNotSigner)?;
    let signature = ed25519_dalek::Signature::from_bytes(&decoded.signatures[at]);
    key.verify_strict(&decoded.message, &signature).map_err(|_| PaymentRefusal::PayerNotSigner)
}

fn check_age(tx: &Value, now_s: i64) -> Result<(), PaymentRefusal> {
    let at = tx.get("blockTime").and_then(Value::as_i64).ok_or(PaymentRefusal::Age)?;
    let age = now_s.saturating_sub(at);
    if !(-PAYMENT_CLOCK_SKEW_S..=PAYMENT_AGE_MAX_S).contains(&age) {
        return Err(PaymentRefusal::Age);
    }
    Ok(())
}

fn u64_at(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(at..at + 8)?.try_into().ok()?))
}

/// SOL: System transfers from the payer to us add up to the claim, and so does our balance's rise.
fn sol_received(decoded: &Decoded, keys: &[Pubkey], meta: &Value, claim: &PaymentClaim) -> Result<u64, PaymentRefusal> {
    let mut sent = 0u64;
    for ix in &decoded.instructions {
        let is_transfer = keys.get(ix.program) == Some(&SYSTEM_PROGRAM)
            && ix.data.len() == 12
            && ix.data[..4] == SYSTEM_TRANSFER.to_le_bytes();
        let from = ix.accounts.first().and_then(|i| keys.get(*i));
        let to = ix.accounts.get(1).and_then(|i| keys.get(*i));
        if is_transfer && from == Some(&claim.payer) && to == Some(&claim.payee) {
            sent = sent.saturating_add(u64_at(&ix.data, 4).unwrap_or(0));
        }
    }
    if sent == 0 {
        return Err(PaymentRefusal::NoTransfer);
    }
    let index = keys.iter().position(|k| *k == claim.payee).ok_or(PaymentRefusal::NoTransfer)?;
    let balance = |field: &'static str| {
        meta.get(field).and_then(|b| b.get(index)).and_then(Value::as_u64).ok_or(PaymentRefusal::Malformed(field))
    };
    let received = balance("postBalances")?.saturating_sub(balance("preBalances")?).min(sent);
    if received < claim.amount {
        return Err(PaymentRefusal::Short { received, claimed: claim.amount });
    }
    Ok(received)
}

/// The owner, mint, program and amount of a token account in `pre/postTokenBalances` by account index.
fn token_entry(meta: &Value, field: &'static str, index: usize) -> Option<(String, String, Option<String>, u64)> {
    let entry = meta
        .get(field)?
        .as_array()?
        .iter()
        .find(|e| e.get("accountIndex").and_then(Value::as_u64) == Some(index as u64))?;
    let text = |k: &str| entry.get(k).and_then(Value::as_str).map(str::to_owned);
    let amount = entry.get("uiTokenAmount")?.get("amount")?.as_str()?.parse().ok()?;
    Some((text("owner")?, text("mint")?, text("programId"), amount))
}

/// SPL: Token transfers whose authority is the payer into a token account that the balances show is
/// ours, of the claimed mint, under the classic program, rising by at least the claim.
fn token_received(
    decoded: &Decoded,
    keys: &[Pubkey],
    meta: &Value,
    claim: &PaymentClaim,
    mint: &Pubkey,
) -> Result<u64, PaymentRefusal> {
    let mut saw_2022 = false;
    let mut destinations = Vec::new();
    for ix in &decoded.instructions {
        let program = keys.get(ix.program);
        let (dest, authority) = match ix.data.first() {
            Some(&TOKEN_TRANSFER) if ix.data.len() == 9 => (ix.accounts.get(1), ix.accounts.get(2)),
            Some(&TOKEN_TRANSFER_CHECKED) if ix.data.len() == 10 => (ix.accounts.get(2), ix.accounts.get(3)),
            _ => continue,
        };
        if program == Some(&TOKEN_2022_PROGRAM) {
            saw_2022 = true;
            continue;
        }
        if program != Some(&TOKEN_PROGRAM) || authority.and_then(|a| keys.get(*a)) != Some(&claim.payer) {
            continue;
        }
        if let Some(d) = dest {
            destinations.push(*d);
        }
    }
    if destinations.is_empty() {
        return Err(if saw_2022 { PaymentRefusal::Token2022 } else { PaymentRefusal::NoTransfer });
    }
    let (payee, mint_text, classic) = (claim.payee.to_base58(), mint.to_base58(), TOKEN_PROGRAM.to_base58());
    let mut received = 0u64;
    let mut wrong_mint = false;
    destinations.sort_unstable();
    destinations.dedup();
    for index in destinations {
        let Some((owner, m, program, post)) = token_entry(meta, "postTokenBalances", index) else { continue };
        if owner != payee {
            continue;
        }
        if m != mint_text || program.is_some_and(|p| p != classic) {
            wrong_mint = true;
            continue;
        }
        let pre = token_entry(meta, "preTokenBalances", index).map_or(0, |e| e.3);
        received = received.saturating_add(post.saturating_sub(pre));
    }
    if received == 0 {
        return Err(if wrong_mint { PaymentRefusal::WrongMint } else { PaymentRefusal::NoTransfer });
    }
    if received < claim.amount {
        return Err(PaymentRefusal::Short { received, claimed: claim.amount });
    }
    Ok(received)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_2022_id_is_its_base58_text() {
        assert_eq!(TOKEN_2022_PROGRAM.to_base58(), "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb");
    }

    #[test]
    fn decoding_never_panics_on_truncations() {
        let wallet = crate::wallet::Wallet::from_passport_seed(&[1; 32]);
        let tx = crate::wallet::SolTransfer { to: Pubkey([9; 32]), lamports: 5, memo: Some("dm:x".into()) }
            .sign(&wallet, [7; 32], crate::wallet::MessageVersion::V0)
            .unwrap();
        assert!(decode(&tx.bytes).is_ok());
        for end in 0..tx.bytes.len() {
            assert!(decode(&tx.bytes[..end]).is_err(), "{end}");
        }
        assert!(decode(&[0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
