//! Exact decimal amounts: the tool layer's `"1.001"` becomes integer base units (lamports, token base
//! units) without ever passing through a float, which is how 0.5.3 turned 1.001 SOL into 1,000,999,999
//! lamports.
//!
//! A JSON number must reach [`parse_amount`] as the text the caller wrote (serde_json's
//! `arbitrary_precision`, or a raw value): once it is an `f64` the exactness is already gone.

use thiserror::Error;

use crate::limits::{WALLET_AMOUNT_CHARS_MAX, WALLET_DECIMALS_MAX};

/// Why an amount text was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum AmountError {
    /// Longer than `WALLET_AMOUNT_CHARS_MAX` characters.
    #[error("amount is longer than {WALLET_AMOUNT_CHARS_MAX} characters")]
    TooLong,
    /// Not `digits` or `digits.digits` (no sign, exponent, spaces or separators).
    #[error("amount must be a plain decimal number such as 1.5")]
    Malformed,
    /// More fractional digits than the token has decimals; rounding would send a different amount.
    #[error("amount has {given} decimal places, the token has {allowed}")]
    TooPrecise {
        /// Fractional digits given.
        given: usize,
        /// The token's decimals.
        allowed: u8,
    },
    /// Zero: a transfer of nothing is a mistake.
    #[error("amount must be greater than zero")]
    Zero,
    /// More base units than a u64 holds.
    #[error("amount is too large")]
    Overflow,
    /// The token claims more than `WALLET_DECIMALS_MAX` decimals.
    #[error("decimals must be at most {WALLET_DECIMALS_MAX}")]
    Decimals,
}

/// Parses `text` (e.g. `"1.001"`) into base units of a token with `decimals` decimals.
pub fn parse_amount(text: &str, decimals: u8) -> Result<u64, AmountError> {
    if decimals > WALLET_DECIMALS_MAX {
        return Err(AmountError::Decimals);
    }
    if text.chars().count() > WALLET_AMOUNT_CHARS_MAX {
        return Err(AmountError::TooLong);
    }
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    let digits = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    // "1." and ".5" are refused: a tool argument is written by a program, and either side missing is more
    // likely a bug than shorthand.
    if whole.is_empty() || !digits(whole) || !digits(fraction) || (text.contains('.') && fraction.is_empty()) {
        return Err(AmountError::Malformed);
    }
    if fraction.len() > usize::from(decimals) {
        return Err(AmountError::TooPrecise { given: fraction.len(), allowed: decimals });
    }
    let padded = format!("{whole}{fraction:0<width$}", width = usize::from(decimals));
    let units = padded.bytes().try_fold(0u64, |acc, b| {
        acc.checked_mul(10).and_then(|v| v.checked_add(u64::from(b - b'0'))).ok_or(AmountError::Overflow)
    })?;
    if units == 0 {
        return Err(AmountError::Zero);
    }
    Ok(units)
}

/// Writes `units` base units as a decimal with exactly `decimals` fractional digits trimmed of trailing
/// zeros (`1500000`, 6 → `"1.5"`); the inverse of [`parse_amount`].
pub fn format_amount(units: u64, decimals: u8) -> String {
    // Past 10^38 the scale saturates; every u64 is then below it, which keeps the result exact.
    let scale = 10u128.checked_pow(u32::from(decimals)).unwrap_or(u128::MAX);
    let (whole, fraction) = (u128::from(units) / scale, u128::from(units) % scale);
    if fraction == 0 {
        return whole.to_string();
    }
    let fraction = format!("{fraction:0>width$}", width = usize::from(decimals));
    format!("{whole}.{}", fraction.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_g3_exact_where_0_5_3_used_floats() {
        assert_eq!(parse_amount("1.001", 9), Ok(1_001_000_000)); // 0.5.3: 1,000,999,999
        assert_eq!(parse_amount("1.001", 6), Ok(1_001_000)); // 0.5.3: 1,000,999
        assert_eq!(parse_amount("1.5", 6), Ok(1_500_000));
        assert_eq!(parse_amount("0.000000001", 9), Ok(1));
        assert_eq!(parse_amount("42", 0), Ok(42));
        assert_eq!(parse_amount("007.50", 2), Ok(750));
    }

    #[test]
    fn t_g3_excess_precision_is_refused_not_rounded() {
        assert_eq!(parse_amount("1.0000001", 6), Err(AmountError::TooPrecise { given: 7, allowed: 6 }));
        assert_eq!(parse_amount("1.0", 0), Err(AmountError::TooPrecise { given: 1, allowed: 0 }));
        assert_eq!(parse_amount("1.000000", 6), Ok(1_000_000));
    }

    #[test]
    fn zero_and_overflow_are_refused_at_the_edge() {
        assert_eq!(parse_amount("0", 9), Err(AmountError::Zero));
        assert_eq!(parse_amount("0.000000000", 9), Err(AmountError::Zero));
        assert_eq!(parse_amount("18446744073709551615", 0), Ok(u64::MAX));
        assert_eq!(parse_amount("18446744073709551616", 0), Err(AmountError::Overflow));
        assert_eq!(parse_amount("18446744073.709551615", 9), Ok(u64::MAX));
        assert_eq!(parse_amount("18446744073.709551616", 9), Err(AmountError::Overflow));
    }

    #[test]
    fn float_like_and_signed_texts_are_malformed() {
        for text in ["", ".5", "1.", "-1", "+1", "1e9", "1E-3", " 1", "1 ", "1,5", "1.2.3", "NaN", "inf", "0x10", "１"]
        {
            assert_eq!(parse_amount(text, 9), Err(AmountError::Malformed), "{text:?}");
        }
    }

    #[test]
    fn limits_at_their_edge() {
        let longest = format!("{}1", "0".repeat(WALLET_AMOUNT_CHARS_MAX - 1));
        assert_eq!(parse_amount(&longest, 0), Ok(1));
        assert_eq!(parse_amount(&format!("0{longest}"), 0), Err(AmountError::TooLong));
        assert_eq!(parse_amount("1", WALLET_DECIMALS_MAX), Ok(10u64.pow(18)));
        assert_eq!(parse_amount("1", WALLET_DECIMALS_MAX + 1), Err(AmountError::Decimals));
    }

    #[test]
    fn formatting_trims_trailing_zeros() {
        assert_eq!(format_amount(1_500_000, 6), "1.5");
        assert_eq!(format_amount(1_001_000_000, 9), "1.001");
        assert_eq!(format_amount(1, 9), "0.000000001");
        assert_eq!(format_amount(7, 0), "7");
        assert_eq!(format_amount(u64::MAX, 255).len(), 2 + 255);
    }

    quickcheck::quickcheck! {
        fn never_panics(text: String, decimals: u8) -> bool {
            let _ = parse_amount(&text, decimals);
            true
        }
        fn round_trips(units: u64, decimals: u8) -> bool {
            let decimals = decimals % (WALLET_DECIMALS_MAX + 1);
            units == 0 || parse_amount(&format_amount(units, decimals), decimals) == Ok(units)
        }
        fn one_digit_beyond_the_decimals_is_refused(units: u64, decimals: u8, extra: u8) -> bool {
            let decimals = decimals % (WALLET_DECIMALS_MAX + 1);
            let text = format_amount(units, decimals);
            let (whole, fraction) = text.split_once('.').unwrap_or((&text, ""));
            let padded = format!("{whole}.{fraction:0<width$}{}", extra % 9 + 1, width = usize::from(decimals));
            matches!(parse_amount(&padded, decimals), Err(AmountError::TooPrecise { .. }))
        }
    }
}
