//! Solana transactions for SOL and SPL transfers, built and signed byte for byte as Solana's own
//! `Message::try_compile` lays them out (SPEC §17.2).

use std::collections::BTreeMap;

use thiserror::Error;

use super::derive::{find_program_address, Pubkey, Wallet};
use crate::limits::WALLET_MEMO_BYTES_MAX;

/// The System program (SOL transfers, account creation).
/// `11111111111111111111111111111111`.
pub const SYSTEM_PROGRAM: Pubkey = Pubkey([0; 32]);
/// The classic SPL Token program; Token-2022 mints are not supported.
/// `TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA`.
pub const TOKEN_PROGRAM: Pubkey = Pubkey([
    6, 221, 246, 225, 215, 101, 161, 147, 217, 203, 225, 70, 206, 235, 121, 172, 28, 180, 133, 237, 95, 91, 55, 145,
    58, 140, 245, 133, 126, 255, 0, 169,
]);
/// The Associated Token Account program.
/// `ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL`.
pub const ASSOCIATED_TOKEN_PROGRAM: Pubkey = Pubkey([
    140, 151, 37, 143, 78, 36, 137, 241, 187, 61, 16, 41, 20, 142, 13, 131, 11, 90, 19, 153, 218, 255, 16, 132, 4, 142,
    123, 216, 219, 233, 248, 89,
]);
/// The rent sysvar, which only the legacy ATA `Create` lists.
/// `SysvarRent111111111111111111111111111111111`.
pub const RENT_SYSVAR: Pubkey = Pubkey([
    6, 167, 213, 23, 25, 44, 92, 81, 33, 140, 201, 76, 61, 74, 241, 127, 88, 218, 238, 8, 155, 161, 253, 68, 227, 219,
    217, 138, 0, 0, 0, 0,
]);
/// The Memo program (v2), which binds a transfer to the notice that announces it.
/// `MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr`.
pub const MEMO_PROGRAM: Pubkey = Pubkey([
    5, 74, 83, 90, 153, 41, 33, 6, 77, 36, 232, 113, 96, 218, 56, 124, 124, 53, 181, 221, 188, 146, 187, 129, 228, 31,
    168, 64, 65, 5, 68, 141,
]);

/// System program instruction 2: `Transfer { lamports }`.
const SYSTEM_TRANSFER: u32 = 2;
/// Token program instruction 12: `TransferChecked { amount, decimals }`.
const TOKEN_TRANSFER_CHECKED: u8 = 12;
/// ATA program instruction 1: `CreateIdempotent` (succeeds if the account already exists).
const ATA_CREATE_IDEMPOTENT: u8 = 1;
/// First byte of a serialized v0 message: the high bit marks "versioned", the low bits the version 0.
const V0_PREFIX: u8 = 0x80;

/// Why a transaction was not built.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum TxError {
    /// The memo is longer than `WALLET_MEMO_BYTES_MAX`.
    #[error("memo is {0} bytes, at most {WALLET_MEMO_BYTES_MAX} allowed")]
    MemoTooLong(usize),
    /// More than 255 distinct accounts (one-byte indices and header counts), or a list longer than
    /// compact-u16 carries.
    #[error("too many accounts or too much data for one message")]
    TooLarge,
    /// No associated token address exists for this owner and mint (all 256 bumps on the curve).
    #[error("no associated token address")]
    NoAssociatedAddress,
}

/// The message format: `V0` (what 0.5.3 sends) or `Legacy` (for clusters or tools without v0 support).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MessageVersion {
    /// Versioned message 0 with no address lookup tables.
    #[default]
    V0,
    /// The original message format.
    Legacy,
}

/// Whether an SPL transfer first creates the recipient's associated token account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum AtaCreation {
    /// `CreateIdempotent`: safe whether or not the account exists, so there is no check-then-send race.
    #[default]
    Idempotent,
    /// 0.5.3's `Create` (fails if the account appeared meanwhile); kept for byte compatibility.
    Legacy,
    /// The caller knows the account exists.
    None,
}

/// One account an instruction touches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AccountMeta {
    /// The account.
    pub key: Pubkey,
    /// Must sign the transaction.
    pub signer: bool,
    /// May be modified.
    pub writable: bool,
}

/// One instruction before compilation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instruction {
    /// The program that runs it.
    pub program: Pubkey,
    /// The accounts, in the program's order.
    pub accounts: Vec<AccountMeta>,
    /// The program's input.
    pub data: Vec<u8>,
}

/// A SOL transfer from the wallet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SolTransfer {
    /// The recipient's wallet.
    pub to: Pubkey,
    /// The amount in lamports (10⁻⁹ SOL).
    pub lamports: u64,
    /// Memo text (e.g. `dm:<message_id>`), sent as a Memo instruction after the transfer.
    pub memo: Option<String>,
}

/// An SPL token transfer from the wallet's associated token account to the recipient's.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SplTransfer {
    /// The token mint.
    pub mint: Pubkey,
    /// The recipient's wallet (the owner of the destination token account).
    pub to: Pubkey,
    /// The amount in the mint's base units.
    pub amount: u64,
    /// The mint's decimals, which `TransferChecked` makes the Token program verify.
    pub decimals: u8,
    /// Whether to create the recipient's token account first.
    pub create: AtaCreation,
    /// Memo text, sent as a Memo instruction after the transfer.
    pub memo: Option<String>,
}

/// A signed transaction ready for `sendTransaction`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedTransaction {
    /// The wire bytes (base64-encode them for the RPC).
    pub bytes: Vec<u8>,
    /// The fee payer's signature, which is also the transaction's id.
    pub signature: [u8; 64],
}

impl SignedTransaction {
    /// The transaction id as explorers and `getTransaction` write it.
    pub fn signature_base58(&self) -> String {
        super::base58::encode(&self.signature)
    }
}

/// Solana's compact-u16 ("shortvec"): 7-bit groups, least significant first, high bit = more follows.
pub fn compact_u16(value: u16, out: &mut Vec<u8>) {
    let mut rest = value;
    loop {
        let low = (rest & 0x7f) as u8;
        rest >>= 7;
        if rest == 0 {
            out.push(low);
            return;
        }
        out.push(low | 0x80);
    }
}

/// The associated token account of `owner` for `mint` (classic Token program).
pub fn associated_token_address(owner: &Pubkey, mint: &Pubkey) -> Option<Pubkey> {
    let token = TOKEN_PROGRAM;
    let seeds: [&[u8]; 3] = [&owner.0, &token.0, &mint.0];
    find_program_address(&seeds, &ASSOCIATED_TOKEN_PROGRAM).map(|(address, _)| address)
}

impl SolTransfer {
    /// The instructions: System `Transfer`, then the memo if any.
    pub fn instructions(&self, from: &Pubkey) -> Result<Vec<Instruction>, TxError> {
        let mut data = SYSTEM_TRANSFER.to_le_bytes().to_vec();
        data.extend(self.lamports.to_le_bytes());
        let transfer = Instruction {
            program: SYSTEM_PROGRAM,
            accounts: vec![meta(*from, true, true), meta(self.to, false, true)],
            data,
        };
        with_memo(vec![transfer], self.memo.as_deref())
    }

    /// Builds and signs the transfer with `wallet` as payer.
    pub fn sign(
        &self,
        wallet: &Wallet,
        blockhash: [u8; 32],
        version: MessageVersion,
    ) -> Result<SignedTransaction, TxError> {
        sign(wallet, &self.instructions(&wallet.address())?, blockhash, version)
    }
}

impl SplTransfer {
    /// The instructions: the ATA creation if asked, `TransferChecked`, then the memo if any.
    pub fn instructions(&self, from: &Pubkey) -> Result<Vec<Instruction>, TxError> {
        let source = associated_token_address(from, &self.mint).ok_or(TxError::NoAssociatedAddress)?;
        let destination = associated_token_address(&self.to, &self.mint).ok_or(TxError::NoAssociatedAddress)?;
        let mut instructions: Vec<Instruction> = self.create_instruction(from, &destination).into_iter().collect();
        let mut data = vec![TOKEN_TRANSFER_CHECKED];
        data.extend(self.amount.to_le_bytes());
        data.push(self.decimals);
        instructions.push(Instruction {
            program: TOKEN_PROGRAM,
            accounts: vec![
                meta(source, false, true),
                meta(self.mint, false, false),
                meta(destination, false, true),
                meta(*from, true, false),
            ],
            data,
        });
        with_memo(instructions, self.memo.as_deref())
    }

    /// The ATA program call creating `destination`, or `None` for [`AtaCreation::None`].
    fn create_instruction(&self, payer: &Pubkey, destination: &Pubkey) -> Option<Instruction> {
        let mut accounts = vec![
            meta(*payer, true, true),
            meta(*destination, false, true),
            meta(self.to, false, false),
            meta(self.mint, false, false),
            meta(SYSTEM_PROGRAM, false, false),
            meta(TOKEN_PROGRAM, false, false),
        ];
        let data = match self.create {
            AtaCreation::None => return None,
            AtaCreation::Idempotent => vec![ATA_CREATE_IDEMPOTENT],
            AtaCreation::Legacy => {
                accounts.push(meta(RENT_SYSVAR, false, false));
                Vec::new()
            }
        };
        Some(Instruction { program: ASSOCIATED_TOKEN_PROGRAM, accounts, data })
    }

    /// Builds and signs the transfer with `wallet` as payer and token owner.
    pub fn sign(
        &self,
        wallet: &Wallet,
        blockhash: [u8; 32],
        version: MessageVersion,
    ) -> Result<SignedTransaction, TxError> {
        sign(wallet, &self.instructions(&wallet.address())?, blockhash, version)
    }
}

fn meta(key: Pubkey, signer: bool, writable: bool) -> AccountMeta {
    AccountMeta { key, signer, writable }
}

/// Appends the Memo instruction (no accounts: the memo binds by being in the signed transaction).
fn with_memo(mut instructions: Vec<Instruction>, memo: Option<&str>) -> Result<Vec<Instruction>, TxError> {
    if let Some(text) = memo {
        if text.len() > WALLET_MEMO_BYTES_MAX {
            return Err(TxError::MemoTooLong(text.len()));
        }
        instructions.push(Instruction { program: MEMO_PROGRAM, accounts: Vec::new(), data: text.into() });
    }
    Ok(instructions)
}

/// Compiles the message with `wallet` as the only signer and fee payer, signs it and frames the
/// transaction: `compact-u16(1) ‖ signature ‖ message`, where a v0 message starts with `0x80`, and the
/// signature covers the message exactly as framed (prefix included).
pub fn sign(
    wallet: &Wallet,
    instructions: &[Instruction],
    blockhash: [u8; 32],
    version: MessageVersion,
) -> Result<SignedTransaction, TxError> {
    let mut message = Vec::new();
    if version == MessageVersion::V0 {
        message.push(V0_PREFIX);
    }
    compile(&wallet.address(), instructions, blockhash, &mut message)?;
    if version == MessageVersion::V0 {
        compact_u16(0, &mut message); // no address lookup tables
    }
    let signature = wallet.sign(&message);
    let mut bytes = Vec::with_capacity(1 + 64 + message.len());
    compact_u16(1, &mut bytes);
    bytes.extend(signature);
    bytes.extend(message);
    Ok(SignedTransaction { bytes, signature })
}

/// Account order of a compiled message: writable signers (payer first), read-only signers, writable
/// non-signers, read-only non-signers; within a group by key bytes, as Solana's `CompiledKeys` (a
/// `BTreeMap`) orders them, which is what makes the bytes reproducible.
fn ordered_keys(payer: &Pubkey, instructions: &[Instruction]) -> (Vec<Pubkey>, [u8; 3]) {
    let mut flags: BTreeMap<Pubkey, (bool, bool)> = BTreeMap::new();
    for ix in instructions {
        flags.entry(ix.program).or_default();
        for account in &ix.accounts {
            let entry = flags.entry(account.key).or_default();
            entry.0 |= account.signer;
            entry.1 |= account.writable;
        }
    }
    flags.remove(payer);
    let group =
        |signer: bool, writable: bool| flags.iter().filter(move |(_, f)| **f == (signer, writable)).map(|(k, _)| *k);
    let readonly_signed = group(true, false).count();
    let readonly_unsigned = group(false, false).count();
    let keys: Vec<Pubkey> = std::iter::once(*payer)
        .chain(group(true, true))
        .chain(group(true, false))
        .chain(group(false, true))
        .chain(group(false, false))
        .collect();
    let signers = 1 + group(true, true).count() + readonly_signed;
    // Header counts fit a byte whenever the keys do; `compile` checks the key count first.
    (keys, [signers as u8, readonly_signed as u8, readonly_unsigned as u8])
}

/// Appends the message body: header, keys, blockhash, instructions.
fn compile(
    payer: &Pubkey,
    instructions: &[Instruction],
    blockhash: [u8; 32],
    out: &mut Vec<u8>,
) -> Result<(), TxError> {
    let (keys, header) = ordered_keys(payer, instructions);
    if keys.len() > usize::from(u8::MAX) {
        return Err(TxError::TooLarge);
    }
    // Every key an instruction names is in `keys` by construction, so the default is never taken.
    let index = |key: &Pubkey| keys.iter().position(|k| k == key).unwrap_or_default() as u8;
    out.extend(header);
    compact_u16(keys.len() as u16, out);
    keys.iter().for_each(|k| out.extend(k.0));
    out.extend(blockhash);
    compact_u16(u16_len(instructions.len())?, out);
    for ix in instructions {
        out.push(index(&ix.program));
        compact_u16(u16_len(ix.accounts.len())?, out);
        ix.accounts.iter().for_each(|a| out.push(index(&a.key)));
        compact_u16(u16_len(ix.data.len())?, out);
        out.extend(&ix.data);
    }
    Ok(())
}

/// A length as compact-u16 may carry it.
fn u16_len(len: usize) -> Result<u16, TxError> {
    u16::try_from(len).map_err(|_| TxError::TooLarge)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};

    use super::*;
    use crate::limits::WALLET_MEMO_BYTES_MAX;

    /// Solana's `PACKET_DATA_SIZE`: the largest transaction a cluster accepts.
    const PACKET_BYTES_MAX: usize = 1232;

    fn verifies(wallet: &Wallet, tx: &SignedTransaction) -> bool {
        let public = VerifyingKey::from_bytes(&wallet.address().0).unwrap();
        let signed = &tx.bytes[65..];
        tx.bytes[1..65] == tx.signature && public.verify(signed, &Signature::from_bytes(&tx.signature)).is_ok()
    }

    fn transfer(seed: u8, amount: u64, memo: String, legacy: bool, create: u8) -> (Wallet, SignedTransaction) {
        let wallet = Wallet::from_passport_seed(&[seed; 32]);
        let memo: String = memo.chars().take(WALLET_MEMO_BYTES_MAX / 4).collect();
        let version = if legacy { MessageVersion::Legacy } else { MessageVersion::V0 };
        let to = Wallet::from_passport_seed(&[seed.wrapping_add(1); 32]).address();
        let create = [AtaCreation::Idempotent, AtaCreation::Legacy, AtaCreation::None][usize::from(create % 3)];
        let spl = SplTransfer { mint: MEMO_PROGRAM, to, amount, decimals: 6, create, memo: Some(memo) };
        let tx = spl.sign(&wallet, [seed; 32], version).unwrap();
        (wallet, tx)
    }

    quickcheck::quickcheck! {
        fn every_transfer_is_signed_over_what_it_sends(seed: u8, amount: u64, memo: String, legacy: bool, create: u8)
            -> bool {
            let (wallet, tx) = transfer(seed, amount, memo, legacy, create);
            verifies(&wallet, &tx) && (tx.bytes[65] == V0_PREFIX) != legacy
        }
        fn the_largest_transfer_fits_a_packet(seed: u8, amount: u64, legacy: bool) -> bool {
            let memo = "m".repeat(WALLET_MEMO_BYTES_MAX);
            let wallet = Wallet::from_passport_seed(&[seed; 32]);
            let to = Wallet::from_passport_seed(&[seed.wrapping_add(1); 32]).address();
            let version = if legacy { MessageVersion::Legacy } else { MessageVersion::V0 };
            let spl = SplTransfer { mint: MEMO_PROGRAM, to, amount, decimals: 6, create: AtaCreation::Legacy, memo: Some(memo) };
            spl.sign(&wallet, [0; 32], version).unwrap().bytes.len() <= PACKET_BYTES_MAX
        }
    }
}
