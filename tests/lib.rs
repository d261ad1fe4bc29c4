//! Shared helpers for the workspace-level integration tests.
//!
//! Kept here rather than in `proto-core` because they exist only to state expectations: a test that
//! reused the code under test to compute its expected value would prove nothing.

pub mod harness;
pub mod python;

use proto_core::Passport;

/// The passport for a seed written as 64 hex digits, as the vectors file writes seeds.
pub fn passport_from_hex_seed(seed_hex: &str) -> Passport {
    let mut seed = [0u8; 32];
    hex::decode_to_slice(seed_hex, &mut seed).expect("a seed is 64 hex digits");
    Passport::from_seed(seed)
}

/// 0.5.3's `tags_str` for a shard: the tags sorted by Unicode code point (Python's `sorted` on `str`)
/// and joined with `,`.
pub fn tags_str<S: AsRef<str>>(tags: &[S]) -> String {
    let mut sorted: Vec<&str> = tags.iter().map(AsRef::as_ref).collect();
    // Comparing `chars()` says "code point order" outright; it agrees with UTF-8 byte order.
    sorted.sort_by(|a, b| a.chars().cmp(b.chars()));
    sorted.join(",")
}

/// The signature with bit `bit` (0..512, little-endian within each byte) flipped, re-encoded as hex.
pub fn flip_signature_bit(sig_hex: &str, bit: usize) -> String {
    let mut bytes = hex::decode(sig_hex).expect("a signature is hex");
    assert!(bit < bytes.len() * 8, "bit {bit} is outside a {}-byte signature", bytes.len());
    bytes[bit / 8] ^= 1 << (bit % 8);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_sort_by_code_point_so_upper_case_comes_first() {
        assert_eq!(tags_str(&["zeta", "alpha", "Beta"]), "Beta,alpha,zeta");
        assert_eq!(tags_str(&["é", "z", "\u{1F600}", "\u{FFFF}"]), "z,é,\u{FFFF},\u{1F600}");
        assert_eq!(tags_str::<&str>(&[]), "");
    }

    #[test]
    fn flipping_a_bit_changes_exactly_one_bit() {
        let sig = "00".repeat(64);
        assert_eq!(&flip_signature_bit(&sig, 0)[..2], "01");
        assert_eq!(&flip_signature_bit(&sig, 511)[126..], "80");
    }
}
