//! Base58 with the Bitcoin alphabet, as Solana writes keys, hashes and signatures.
//!
//! Hand-written (about thirty lines) because the inputs are at most 64 bytes, so the quadratic
//! schoolbook conversion costs nothing and saves a dependency.

const ALPHABET: &[u8; 58] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";

/// Encodes `bytes`; each leading zero byte becomes a leading `1`.
pub fn encode(bytes: &[u8]) -> String {
    let zeros = bytes.iter().take_while(|&&b| b == 0).count();
    // Base-58 digits, least significant first.
    let mut digits: Vec<u8> = Vec::with_capacity(bytes.len() * 138 / 100 + 1);
    for &byte in &bytes[zeros..] {
        let mut carry = u32::from(byte);
        for d in digits.iter_mut() {
            carry += u32::from(*d) << 8;
            *d = (carry % 58) as u8;
            carry /= 58;
        }
        while carry > 0 {
            digits.push((carry % 58) as u8);
            carry /= 58;
        }
    }
    let mut text = "1".repeat(zeros);
    text.extend(digits.iter().rev().map(|&d| char::from(ALPHABET[usize::from(d)])));
    text
}

/// Decodes `text`; `None` if it holds a character outside the alphabet.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let ones = text.bytes().take_while(|&c| c == b'1').count();
    // Bytes, least significant first.
    let mut bytes: Vec<u8> = Vec::with_capacity(text.len());
    for c in text.bytes().skip(ones) {
        let mut carry = ALPHABET.iter().position(|&a| a == c)? as u32;
        for b in bytes.iter_mut() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.push((carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let mut out = vec![0u8; ones];
    out.extend(bytes.iter().rev());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_answers() {
        assert_eq!(encode(&[0u8; 32]), "11111111111111111111111111111111");
        assert_eq!(encode(b"hello world"), "StV1DL6CwTryKyV");
        assert_eq!(decode("StV1DL6CwTryKyV").unwrap(), b"hello world");
        assert_eq!(encode(&[]), "");
        assert_eq!(decode("").unwrap(), Vec::<u8>::new());
    }

    #[test]
    fn leading_zero_bytes_keep_their_ones() {
        let bytes = [0, 0, 1, 2, 3];
        let text = encode(&bytes);
        assert!(text.starts_with("11") && !text.starts_with("111"));
        assert_eq!(decode(&text).unwrap(), bytes);
    }

    #[test]
    fn characters_outside_the_alphabet_are_refused() {
        for bad in ["0", "O", "I", "l", "+", "é", "abc "] {
            assert_eq!(decode(bad), None, "{bad}");
        }
    }

    quickcheck::quickcheck! {
        fn round_trips(bytes: Vec<u8>) -> bool {
            decode(&encode(&bytes)).as_deref() == Some(&bytes[..])
        }
        fn decode_never_panics(text: String) -> bool {
            let _ = decode(&text);
            true
        }
    }
}
