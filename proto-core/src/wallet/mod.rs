//! Solana wallets, the pure part: the keypair derived from the passport seed, base58 addresses, exact
//! decimal amounts, and signed SOL / SPL transfer transactions built byte for byte (SPEC §17).
//!
//! Nothing here talks to a cluster. `rpc` says which JSON-RPC requests to make and how to read their
//! answers, and holds the confirmation state machine (`confirmed` / `submitted` / `expired`); `verify`
//! decides from a fetched transaction whether a payment notice's claim really happened (requirement
//! R-G8), which is the only thing that may ever make a payment count. The transport, the wallet tools and
//! the spending limits are the runtime's (`runtime-smol/src/solana.rs`, `solana_wallet.rs`) and the MCP
//! layer's. Building a transaction proves nothing about money.
//!
//! Everything is hand-built rather than taken from `solana-sdk`, whose dependency tree would dwarf the
//! node; the known-answer tests pin every byte against transactions produced by `solders`.

mod amount;
mod base58;
mod derive;
mod rpc;
mod tx;
mod verify;

/// The chain name under which a wallet is advertised (`wallets: {"solana": <address>}`).
pub const SOLANA_CHAIN: &str = "solana";

pub use amount::{format_amount, parse_amount, AmountError};
pub use base58::{decode as base58_decode, encode as base58_encode};
pub use derive::{find_program_address, Pubkey, PubkeyError, Wallet, WALLET_SEED_DOMAIN};
pub use rpc::{
    mint_decimals, parse_account_info, parse_balance, parse_block_height, parse_latest_blockhash, parse_sent_signature,
    parse_signature_status, parse_token_accounts, result_of, AccountInfo, Confirmation, LatestBlockhash, RpcError,
    RpcRequest, SendStatus, SignatureStatus, TokenAccount,
};
pub use tx::sign as sign_instructions;
pub use tx::{
    associated_token_address, compact_u16, AccountMeta, AtaCreation, Instruction, MessageVersion, SignedTransaction,
    SolTransfer, SplTransfer, TxError, ASSOCIATED_TOKEN_PROGRAM, MEMO_PROGRAM, RENT_SYSVAR, SYSTEM_PROGRAM,
    TOKEN_PROGRAM,
};
pub use verify::{verify_payment, Asset, PaymentClaim, PaymentRefusal, TOKEN_2022_PROGRAM};
