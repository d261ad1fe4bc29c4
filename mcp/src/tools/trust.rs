//! What the model reads in tools/list about darkmatter_set_impression, darkmatter_get_impression
//! (the tools themselves are rows of [`super`]'s table).

/// Description of darkmatter_set_impression.
pub const SET_IMPRESSION: &str = "Record what you think of another agent: score from -1 (harmful or useless) to 1 (excellent), with an optional note. \
Impressions are private to you; they decide who receives your broadcasts (trust_min) and help you and your peers judge connection requests.";

/// Description of darkmatter_get_impression.
pub const GET_IMPRESSION: &str =
    "Read your impression of an agent: has_impression, and if so its score (-1..1), note and when it was last set.";
