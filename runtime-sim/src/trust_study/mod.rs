//! Trust studies: how fast a newcomer vouched for by one trusted peer is accepted, and how well the
//! acceptance policy resists Sybils. Two scenarios, `trust-propagation` and `sybil`, their scripts,
//! what they measure, and the plots.
//!
//! Node layout: nodes `0..newcomers` are the newcomers (outside formation; like any fresh node they
//! auto-accept local requests, which is how their voucher connects to them), then the Sybils (their
//! own mesh, auto-accepting), then the honest mesh of `--nodes` nodes. The honest mesh forms by
//! hand-accepted connects; after [`HAND_ACCEPT_UNTIL_US`] nobody accepts by hand, so every later
//! request to an honest node is decided by proto-core's acceptance policy or not at all.
//!
//! The vouching model:
//! - at [`IMPRESS_AT_US`] every honest node trusts each honest connection with probability
//!   `trust_prob`, at a score uniform in `trust_range` (0.3–0.9); every Sybil scores every other
//!   Sybil +1;
//! - a newcomer arrives: a random honest *voucher* connects to it and scores it in `vouch_range`;
//!   ten seconds later the newcomer asks, spread over `stagger_us`: every honest connection of the
//!   voucher that trusts the voucher (at least [`TRUSTED_MIN`]: *vouched* targets), the voucher's
//!   other connections (*neighbour*), up to `two_hop_max` nodes that trust a vouched target but are
//!   not the voucher's neighbours (*two-hop*), and `controls` random nodes (*control*).
//!
//! The Sybil model: `sybils` identities on their own random mesh (degree `sybil_degree`), each
//! scoring every other +1. A fraction `gateway_frac` of them got `gateway_links` connections to
//! random honest nodes during formation (an honest agent accepted them by hand, as anyone can);
//! those honest nodes trust their Sybil with probability `gateway_trust` (0 by default: a stranger
//! they let in, neutral). From [`START_US`], over `window_us`, each Sybil asks `sybil_targets`
//! random honest nodes to connect.
//!
//! The engine knows nothing of all this: [`setup`] builds a scenario's options and script (which
//! nodes exist, who connects to whom and when), `watch` is the [`Observer`](crate::observer::Observer)
//! that steps in at scheduled moments (impressions, newcomers' requests, retries) and tallies the
//! events, `diagnose` reads a target's pending record to say why a request is not accepted, and
//! [`report`] turns the tallies into the summary, the CSV and the plots ([`plot`]).

mod diagnose;
pub mod plot;
pub mod report;
pub mod setup;
mod watch;

pub use plot::{cumulative, line_chart, Series};
pub use report::{quantile, Ask, Class, ClassStats, StudyReport};
pub use setup::{apply, is_key, propagation, retry_text, sybil, StudyConfig, StudyKind};
pub(crate) use watch::observer;

/// One second, µs.
pub(crate) const S: u64 = 1_000_000;
/// `derive` purpose of the study's own choices (the engine's purposes are 1..=8).
pub(crate) const STUDY: u64 = 101;
/// Formation connects (honest mesh, Sybil mesh, gateway links) happen before this.
pub const FORMATION_US: u64 = 60 * S;
/// Honest agents accept requests by hand until this time (formation), never after.
pub const HAND_ACCEPT_UNTIL_US: u64 = 90 * S;
/// When impressions are set.
pub const IMPRESS_AT_US: u64 = 100 * S;
/// Sybil requests and newcomer arrivals start here.
pub const START_US: u64 = 120 * S;
/// A peer counts as *trusted* from this impression on: the confidence minimum, so its opinion alone
/// can carry a decision (automatic deltas of a few deliveries, 0.001 each, do not make a peer trusted).
pub const TRUSTED_MIN: f64 = proto_core::limits::TRUST_CONFIDENCE_MIN;
/// An opinion smaller than this (in absolute value) is *hearsay-sized*: what a node's impression of a
/// stranger becomes from its peers' reports alone (each moves it by `TRUST_REPORT_WEIGHT` = 0.1 x
/// the reporter's weight x the gap). Every first-hand impression of the model is at least 0.3.
pub const HEARSAY_MAX: f64 = 0.2;
