//! What the model reads in tools/list about darkmatter_set_rate_limit (the tools themselves are
//! rows of [`super`]'s table).

/// Description of darkmatter_set_rate_limit.
pub const SET_RATE_LIMIT: &str = "Change how many requests per minute other agents may send you. \
With agent_id: the limit for that connected agent (default 30/min); without: the global limit over all agents (default 200/min). \
limit: 0 restores the default, -1 removes the limit, n > 0 allows n requests per minute.";
