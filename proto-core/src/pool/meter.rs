//! What a call costs (R-H4): a price per call (`passthrough`), or per thousand input and output
//! tokens read from the upstream's `usage` (`llm-tokens`), with an upper bound reserved before the
//! call so that no settlement can exceed what was reserved.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::limits::POOL_LLM_MAX_TOKENS_DEFAULT;

/// How a provider's calls are charged.
// Stored with postcard (by variant index): no internal tag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Handler {
    /// A price per call (0.5.3's only handler).
    Passthrough,
    /// A price per 1,000 tokens each way, from the upstream's `usage`.
    LlmTokens {
        /// Base units per 1,000 input (prompt) tokens.
        input_per_1k: u64,
        /// Base units per 1,000 output (completion) tokens.
        output_per_1k: u64,
    },
}

impl Handler {
    /// The name 0.5.3 gives it (`handler_type`).
    pub fn name(&self) -> &'static str {
        match self {
            Self::Passthrough => "passthrough",
            Self::LlmTokens { .. } => "llm-tokens",
        }
    }

    /// The most a call with `body` can cost, reserved up front: the call price, or for tokens an
    /// input bound of one token per body byte and the request's `max_tokens` (or the default) out.
    pub fn estimate(&self, price_per_call: u64, body: &[u8]) -> u64 {
        match self {
            Self::Passthrough => price_per_call,
            Self::LlmTokens { input_per_1k, output_per_1k } => {
                let out = serde_json::from_slice::<Value>(body)
                    .ok()
                    .and_then(|v| v.get("max_tokens").and_then(Value::as_u64))
                    .unwrap_or(POOL_LLM_MAX_TOKENS_DEFAULT);
                let input = body.len() as u64;
                price_per_call.saturating_add(per_1k(input, *input_per_1k)).saturating_add(per_1k(out, *output_per_1k))
            }
        }
    }

    /// What a finished call costs, never more than `reserved`: the call price for `passthrough`; the
    /// tokens the upstream's `usage` reports (OpenAI or Anthropic names) for `llm-tokens`, or the whole
    /// reservation when it reports none (the bound is what the consumer agreed to).
    pub fn cost(&self, price_per_call: u64, reserved: u64, response: &[u8]) -> u64 {
        let cost = match self {
            Self::Passthrough => price_per_call,
            Self::LlmTokens { input_per_1k, output_per_1k } => match usage(response) {
                Some((input, output)) => price_per_call
                    .saturating_add(per_1k(input, *input_per_1k))
                    .saturating_add(per_1k(output, *output_per_1k)),
                None => reserved,
            },
        };
        cost.min(reserved)
    }
}

/// `tokens × price / 1000`, rounded up (a fraction of a base unit is charged as one).
fn per_1k(tokens: u64, price: u64) -> u64 {
    let product = u128::from(tokens) * u128::from(price);
    u64::try_from(product.div_ceil(1000)).unwrap_or(u64::MAX)
}

/// (input, output) tokens of an OpenAI (`prompt_tokens`/`completion_tokens`) or Anthropic
/// (`input_tokens`/`output_tokens`) `usage` object.
pub fn usage(response: &[u8]) -> Option<(u64, u64)> {
    let v: Value = serde_json::from_slice(response).ok()?;
    let u = v.get("usage")?;
    let n = |k: &str| u.get(k).and_then(Value::as_u64);
    match (n("prompt_tokens"), n("completion_tokens")) {
        (Some(i), Some(o)) => Some((i, o)),
        _ => Some((n("input_tokens")?, n("output_tokens")?)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_charged_from_usage_and_never_beyond_the_reservation() {
        let h = Handler::LlmTokens { input_per_1k: 1_000, output_per_1k: 3_000 };
        let body = br#"{"model":"m","max_tokens":100}"#;
        let reserved = h.estimate(0, body);
        assert_eq!(reserved, body.len() as u64 + 300);
        assert_eq!(h.cost(0, reserved, br#"{"usage":{"prompt_tokens":10,"completion_tokens":20}}"#), 70);
        assert_eq!(h.cost(0, reserved, br#"{"usage":{"input_tokens":1,"output_tokens":1}}"#), 4, "rounded up");
        assert_eq!(h.cost(0, reserved, br#"{"usage":{"input_tokens":1000000,"output_tokens":1}}"#), reserved);
        assert_eq!(h.cost(0, reserved, b"not json"), reserved, "no usage: the bound");
        assert_eq!(Handler::Passthrough.cost(5, 5, b""), 5);
    }
}
