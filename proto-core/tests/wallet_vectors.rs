//! Known answers for the Solana wallet: the derivation of 0.5.3 and transactions produced by `solders`
//! 0.29.0 (`solana-vectors-gen.py` in the batch-2 reference; its output copied here verbatim).

use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use proto_core::limits::WALLET_MEMO_BYTES_MAX;
use proto_core::wallet::{
    associated_token_address, base58_encode, compact_u16, find_program_address, AtaCreation, MessageVersion, Pubkey,
    SolTransfer, SplTransfer, TxError, Wallet, ASSOCIATED_TOKEN_PROGRAM, MEMO_PROGRAM, RENT_SYSVAR, SYSTEM_PROGRAM,
    TOKEN_PROGRAM,
};
use sha2::{Digest, Sha256};

const A_WALLET: &str = "2v93UzRjd3fTUFkPBRsHU2k53wWWsdBjFyg7jQLgbZNi";
const B_WALLET: &str = "9mtBrewhn452nzFuxR3A9zxqUGA1u5qCVjpfT4tmjdsP";
const A_SEED_SHA256: &str = "b21b44f8313d9dab8daa57eb13e056377e47ecab3c0b458ef1b5352d4b498a43";
const BLOCKHASH: [u8; 32] = [7; 32];
const BLOCKHASH_B58: &str = "US517G5965aydkZ46HS38QLi7UQiSojurfbQfKCELFx";
const USDC: &str = "EPjFWdd5AufqSSqeM2qN1xzybapC8G4wEGGkZwyTDt1v";

const SOL_MSG_HEX: &str = "010001031c7890576bf4a22932b6b4b04126444b25800d0bae423d5f0f5c01dd93dbefcb825cedb44f708d6fbc5b174a33c9c43a2d2237fe437936c7aeed6f31899c646a0000000000000000000000000000000000000000000000000000000000000000070707070707070707070707070707070707070707070707070707070707070701020200010c0200000040420f000000000000";
const SOL_TX_HEX: &str = "016bac3dac6ab0955d6197230088bf69929ff09844d8e1e7e1534fed02412d20ee4d73354ecac1853f546a2f892cc00e444fc364b24a10c094189ab0007343830980010001031c7890576bf4a22932b6b4b04126444b25800d0bae423d5f0f5c01dd93dbefcb825cedb44f708d6fbc5b174a33c9c43a2d2237fe437936c7aeed6f31899c646a0000000000000000000000000000000000000000000000000000000000000000070707070707070707070707070707070707070707070707070707070707070701020200010c0200000040420f000000000000";
const SOL_SIG: &str = "39rmNnwB2eEcnLqTJZfWonrN9Ko3tbHKhXjeTJBnikzRQ8xFAztwdcdAXqkZNZ5M6LAru4jC8oUrNDJs2oK5zni4";
const SPL_MSG_HEX: &str = "010006091c7890576bf4a22932b6b4b04126444b25800d0bae423d5f0f5c01dd93dbefcb81624b95a0100c551a6458d7eb330f41e023a4e88958cd8233639c4ed1dd1dcf93e6da4f8a8819671b370dcf0a1a2a41b8131c5660257f541457192072e7cf11000000000000000000000000000000000000000000000000000000000000000006a7d517192c5c51218cc94c3d4af17f58daee089ba1fd44e3dbd98a0000000006ddf6e1d765a193d9cbe146ceeb79ac1cb485ed5f5b37913a8cf5857eff00a9825cedb44f708d6fbc5b174a33c9c43a2d2237fe437936c7aeed6f31899c646a8c97258f4e2489f1bb3d1029148e0d830b5a1399daff1084048e7bd8dbe9f859c6fa7af3bedbad3a3d65f36aabc97431b1bbe4c2d2f6e0e47ca60203452f5d61070707070707070707070707070707070707070707070707070707070707070702070700010608030504000504020801000a0c60e31600000000000600";
const SPL_SIG: &str = "4XSfhJhyFiDqzGnC2CWuxRdV1Tm7GzZEVj7JDei1uuTLbK6AgydcDGdHHrTrX7o3ferDZDZrAuJP3sCUPZY6fr7k";

// From wallet_vectors_gen.py beside this file (solders 0.29.0): memo, idempotent creation, legacy messages.
const SOL_MEMO_V0_HEX: &str = "016be3714e856115d4ac8c8f91d442cf470b6bda5911650a27d72aa3352fbb280698ab0344f4770e7763f83326a261db6f5e5e66a485c7954829dda912cc11810980010002041c7890576bf4a22932b6b4b04126444b25800d0bae423d5f0f5c01dd93dbefcb825cedb44f708d6fbc5b174a33c9c43a2d2237fe437936c7aeed6f31899c646a0000000000000000000000000000000000000000000000000000000000000000054a535a992921064d24e87160da387c7c35b5ddbc92bb81e41fa8404105448d070707070707070707070707070707070707070707070707070707070707070702020200010c0200000040420f0000000000030008646d3a6d73672d3100";
const SOL_LEGACY_HEX: &str = "01fb7d3650668afd52c7f1147fae021255cda2faf81e96135803d42f8b3fcc090b9e7d5a701224ba5baf2af2b128cd388ae6b2e1cff7e6a3be181854cdea6fde0f010001031c7890576bf4a22932b6b4b04126444b25800d0bae423d5f0f5c01dd93dbefcb825cedb44f708d6fbc5b174a33c9c43a2d2237fe437936c7aeed6f31899c646a0000000000000000000000000000000000000000000000000000000000000000070707070707070707070707070707070707070707070707070707070707070701020200010c0200000040420f0000000000";
const SPL_IDEM_MEMO_V0_HEX: &str = "01b328318abb99e686cd68d4472a43952817a0c74e8dcbc475264a3bb3b8c332b688e1896578f9e86397f51d0af04ab618d94871e6c8a5b2c109f55f440f1b4a0a80010006091c7890576bf4a22932b6b4b04126444b25800d0bae423d5f0f5c01dd93dbefcb81624b95a0100c551a6458d7eb330f41e023a4e88958cd8233639c4ed1dd1dcf93e6da4f8a8819671b370dcf0a1a2a41b8131c5660257f541457192072e7cf110000000000000000000000000000000000000000000000000000000000000000054a535a992921064d24e87160da387c7c35b5ddbc92bb81e41fa8404105448d06ddf6e1d765a193d9cbe146ceeb79ac1cb485ed5f5b37913a8cf5857eff00a9825cedb44f708d6fbc5b174a33c9c43a2d2237fe437936c7aeed6f31899c646a8c97258f4e2489f1bb3d1029148e0d830b5a1399daff1084048e7bd8dbe9f859c6fa7af3bedbad3a3d65f36aabc97431b1bbe4c2d2f6e0e47ca60203452f5d61070707070707070707070707070707070707070707070707070707070707070703070600010608030501010504020801000a0c60e316000000000006040008646d3a6d73672d3100";
const SPL_NOCREATE_LEGACY_HEX: &str = "01fd215a36f4e959a253f60d54c5aa13e392b7890d1389d0fbd951a02217a3578c75ef21d779026210332ce95143a8635d47106234418954093034262ac62ebd08010002051c7890576bf4a22932b6b4b04126444b25800d0bae423d5f0f5c01dd93dbefcb81624b95a0100c551a6458d7eb330f41e023a4e88958cd8233639c4ed1dd1dcf93e6da4f8a8819671b370dcf0a1a2a41b8131c5660257f541457192072e7cf1106ddf6e1d765a193d9cbe146ceeb79ac1cb485ed5f5b37913a8cf5857eff00a9c6fa7af3bedbad3a3d65f36aabc97431b1bbe4c2d2f6e0e47ca60203452f5d610707070707070707070707070707070707070707070707070707070707070707010304020401000a0c60e316000000000006";

fn wallet(byte: u8) -> Wallet {
    Wallet::from_passport_seed(&[byte; 32])
}

fn key(text: &str) -> Pubkey {
    Pubkey::from_base58(text).unwrap()
}

/// The signed message of a v0 transaction with one signature: everything after `01 ‖ sig`.
fn signed_part(tx: &[u8]) -> &[u8] {
    &tx[65..]
}

fn assert_signature_verifies(wallet: &Wallet, tx: &[u8]) {
    let public = VerifyingKey::from_bytes(&wallet.address().0).unwrap();
    let signature = Signature::from_bytes(tx[1..65].try_into().unwrap());
    public.verify(signed_part(tx), &signature).unwrap();
}

#[test]
fn t_g1_derivation_matches_0_5_3() {
    let seed: [u8; 32] = Sha256::new().chain_update([0x1f; 32]).chain_update(b"darkmatter-solana-v1").finalize().into();
    assert_eq!(hex::encode(seed), A_SEED_SHA256);
    assert_eq!(wallet(0x1f).address().to_base58(), A_WALLET);
    assert_eq!(wallet(0x2a).address().to_base58(), B_WALLET);
    assert_eq!(key(A_WALLET), wallet(0x1f).address());
    let passport = proto_core::identity::Passport::from_seed([0x1f; 32]);
    assert_eq!(Wallet::from_passport(&passport).address().to_base58(), A_WALLET);
    assert_eq!(base58_encode(&BLOCKHASH), BLOCKHASH_B58);
}

#[test]
fn t_g1_the_debug_form_shows_the_address_not_the_key() {
    assert_eq!(format!("{:?}", wallet(0x1f)), format!("Wallet({A_WALLET})"));
}

#[test]
fn addresses_of_other_lengths_or_alphabets_are_refused() {
    assert!(Pubkey::from_base58("11111111111111111111111111111111").is_ok());
    assert!(Pubkey::from_base58("1111111111111111111111111111111").is_err()); // 31 bytes
    assert!(Pubkey::from_base58(&format!("1{A_WALLET}")).is_err()); // 33 bytes
    assert!(Pubkey::from_base58(&A_WALLET.replace('2', "0")).is_err());
    assert!(Pubkey::from_base58(&"z".repeat(10_000)).is_err());
}

#[test]
fn t_g2_sol_transfer_is_byte_identical_to_solders() {
    let transfer = SolTransfer { to: key(B_WALLET), lamports: 1_000_000, memo: None };
    let tx = transfer.sign(&wallet(0x1f), BLOCKHASH, MessageVersion::V0).unwrap();
    assert_eq!(hex::encode(&tx.bytes), SOL_TX_HEX);
    assert_eq!(tx.bytes.len(), 217);
    assert_eq!(hex::encode(&tx.bytes[66..]), SOL_MSG_HEX);
    assert_eq!(tx.signature_base58(), SOL_SIG);
    assert_eq!(tx.bytes[65], 0x80);
    assert_signature_verifies(&wallet(0x1f), &tx.bytes);
}

#[test]
fn t_g2_spl_transfer_with_legacy_create_is_byte_identical_to_solders() {
    let mint = key(USDC);
    let a_ata = associated_token_address(&wallet(0x1f).address(), &mint).unwrap();
    let b_ata = associated_token_address(&key(B_WALLET), &mint).unwrap();
    assert_eq!(a_ata.to_base58(), "AxM6jph1pHFUw2QWUfyBQtNxRFawTwHoWhcqcMSDKjLk");
    assert_eq!(b_ata.to_base58(), "9i4XVtnjNC7wWT58R1dW5foYFzmdMkm4wCLHD5N8fkKp");
    let transfer = SplTransfer {
        mint,
        to: key(B_WALLET),
        amount: 1_500_000,
        decimals: 6,
        create: AtaCreation::Legacy,
        memo: None,
    };
    let tx = transfer.sign(&wallet(0x1f), BLOCKHASH, MessageVersion::V0).unwrap();
    assert_eq!(hex::encode(&tx.bytes[66..]), SPL_MSG_HEX);
    assert_eq!((tx.bytes.len(), tx.bytes.len() - 66), (419, 353));
    assert_eq!(tx.signature_base58(), SPL_SIG);
    assert_signature_verifies(&wallet(0x1f), &tx.bytes);
}

#[test]
fn ata_bumps_match_solders() {
    let token = TOKEN_PROGRAM;
    let mint = key(USDC);
    let owner = wallet(0x1f).address();
    let (address, bump) = find_program_address(&[&owner.0, &token.0, &mint.0], &ASSOCIATED_TOKEN_PROGRAM).unwrap();
    assert_eq!((address.to_base58().as_str(), bump), ("AxM6jph1pHFUw2QWUfyBQtNxRFawTwHoWhcqcMSDKjLk", 255));
    assert!(!address.is_on_curve());
    assert!(owner.is_on_curve());
}

#[test]
fn legacy_messages_drop_the_prefix_and_the_lookup_table_count() {
    let transfer = SolTransfer { to: key(B_WALLET), lamports: 1_000_000, memo: None };
    let tx = transfer.sign(&wallet(0x1f), BLOCKHASH, MessageVersion::Legacy).unwrap();
    // solders' legacy transaction for the same transfer is 215 bytes.
    assert_eq!(tx.bytes.len(), 215);
    let v0_message = &SOL_MSG_HEX[..SOL_MSG_HEX.len() - 2];
    assert_eq!(hex::encode(&tx.bytes[65..]), v0_message);
    assert_signature_verifies(&wallet(0x1f), &tx.bytes);
}

#[test]
fn idempotent_create_has_data_1_and_six_accounts() {
    let transfer = SplTransfer {
        mint: key(USDC),
        to: key(B_WALLET),
        amount: 1,
        decimals: 6,
        create: AtaCreation::Idempotent,
        memo: None,
    };
    let instructions = transfer.instructions(&wallet(0x1f).address()).unwrap();
    assert_eq!(instructions[0].program, ASSOCIATED_TOKEN_PROGRAM);
    assert_eq!((instructions[0].data.as_slice(), instructions[0].accounts.len()), (&[1u8][..], 6));
    let none = SplTransfer { create: AtaCreation::None, ..transfer };
    assert_eq!(none.instructions(&wallet(0x1f).address()).unwrap().len(), 1);
}

#[test]
fn a_memo_is_the_last_instruction_and_has_no_accounts() {
    let transfer = SolTransfer { to: key(B_WALLET), lamports: 5, memo: Some("dm:msg-1".into()) };
    let tx = transfer.sign(&wallet(0x1f), BLOCKHASH, MessageVersion::V0).unwrap();
    // … ‖ program index 3 (memo, the last read-only key) ‖ 0 accounts ‖ 8 data bytes ‖ data ‖ 0 lookups.
    assert!(hex::encode(&tx.bytes).ends_with(&format!("030008{}00", hex::encode("dm:msg-1"))));
    assert_signature_verifies(&wallet(0x1f), &tx.bytes);
}

#[test]
fn compact_u16_edges() {
    let cases: [(u16, &[u8]); 6] = [
        (0, &[0x00]),
        (127, &[0x7f]),
        (128, &[0x80, 0x01]),
        (16_383, &[0xff, 0x7f]),
        (16_384, &[0x80, 0x80, 0x01]),
        (65_535, &[0xff, 0xff, 0x03]),
    ];
    for (value, expected) in cases {
        let mut out = Vec::new();
        compact_u16(value, &mut out);
        assert_eq!(out, expected, "{value}");
    }
}

fn spl(create: AtaCreation, memo: Option<&str>) -> SplTransfer {
    SplTransfer {
        mint: key(USDC),
        to: key(B_WALLET),
        amount: 1_500_000,
        decimals: 6,
        create,
        memo: memo.map(Into::into),
    }
}

#[test]
fn t_g2_memo_idempotent_and_legacy_variants_are_byte_identical_to_solders() {
    let a = wallet(0x1f);
    let sol = |memo: Option<&str>| SolTransfer { to: key(B_WALLET), lamports: 1_000_000, memo: memo.map(Into::into) };
    let cases = [
        ("SOL + memo, v0", sol(Some("dm:msg-1")).sign(&a, BLOCKHASH, MessageVersion::V0), SOL_MEMO_V0_HEX),
        ("SOL, legacy", sol(None).sign(&a, BLOCKHASH, MessageVersion::Legacy), SOL_LEGACY_HEX),
        (
            "SPL idempotent + memo, v0",
            spl(AtaCreation::Idempotent, Some("dm:msg-1")).sign(&a, BLOCKHASH, MessageVersion::V0),
            SPL_IDEM_MEMO_V0_HEX,
        ),
        (
            "SPL without creation, legacy",
            spl(AtaCreation::None, None).sign(&a, BLOCKHASH, MessageVersion::Legacy),
            SPL_NOCREATE_LEGACY_HEX,
        ),
    ];
    for (name, tx, expected) in cases {
        let tx = tx.unwrap();
        assert_eq!(hex::encode(&tx.bytes), expected, "{name}");
        assert_signature_verifies(&a, &tx.bytes);
    }
}

#[test]
fn the_default_spl_transfer_creates_idempotently_in_a_v0_message() {
    let transfer = spl(AtaCreation::default(), Some("dm:msg-1"));
    let tx = transfer.sign(&wallet(0x1f), BLOCKHASH, MessageVersion::default()).unwrap();
    assert_eq!(hex::encode(&tx.bytes), SPL_IDEM_MEMO_V0_HEX);
}

#[test]
fn a_memo_longer_than_the_limit_is_refused_at_its_edge() {
    let a = wallet(0x1f);
    let at_limit = spl(AtaCreation::None, Some(&"m".repeat(WALLET_MEMO_BYTES_MAX)));
    assert!(at_limit.sign(&a, BLOCKHASH, MessageVersion::V0).is_ok());
    let over = spl(AtaCreation::None, Some(&"m".repeat(WALLET_MEMO_BYTES_MAX + 1)));
    assert_eq!(over.sign(&a, BLOCKHASH, MessageVersion::V0), Err(TxError::MemoTooLong(WALLET_MEMO_BYTES_MAX + 1)));
}

#[test]
fn program_ids_are_the_well_known_addresses() {
    let ids = [
        (SYSTEM_PROGRAM, "11111111111111111111111111111111"),
        (TOKEN_PROGRAM, "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA"),
        (ASSOCIATED_TOKEN_PROGRAM, "ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL"),
        (RENT_SYSVAR, "SysvarRent111111111111111111111111111111111"),
        (MEMO_PROGRAM, "MemoSq4gqABAXKb96qnH8TysNcWxMyWCqXgDLGmfcHr"),
    ];
    for (id, text) in ids {
        assert_eq!(id.to_base58(), text);
    }
}
