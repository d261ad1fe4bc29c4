//! # runtime-sim: many proto-core nodes in one process, on simulated time and a simulated network
//!
//! Answers the questions no real test on one machine can: does trust propagate, does the mesh heal,
//! what do partitions and churn do, how does cost grow with size.
//!
//! - [`event_queue`]: the discrete-event queue, ordered by `(time, sequence)`.
//! - [`net`]: latency, jitter, (bursty) loss, partitions, addresses.
//! - [`topology`]: random regular, small-world, clustered, star.
//! - [`workload`]: traffic generators and agent habits.
//! - [`invariants`]: checks that run with every event.
//! - [`trace`]: one line per event, hashed.
//! - [`metrics`]: counters over time, CSV and SVG.
//! - [`scenario`]: options and named scenarios.
//! - [`sim`], `delivery` and `agent`: the engine (event loop and drain; the path of a request;
//!   agents, workload firings and faults).
//! - [`observer`]: the hook a study watches a run through (events, wake-ups, actions it asks for);
//!   the engine knows no study.
//! - [`bench`]: the benchmark.
//! - [`crypto`]: the signature providers a run chooses (`--signatures real|real-inline|null`; null is
//!   measurement only and exists in no other crate) and the counting wrapper every node uses.
//! - [`verify_ahead`]: signature checks done on the other cores before the receiver asks for them,
//!   answering exactly as `verify_strict` (so the trace does not change).
//! - [`scenario_antimatter`]: the AntiMatter study (how signals end on a tenure-ordered graph).
//! - [`scenario_churn`]: the healing study (`churn-heal`): nodes move, some answerers lie, links to
//!   moved peers are timed until they work again.
//! - [`trust_study`]: the trust propagation and Sybil resistance studies (scenarios, an observer,
//!   measures, plots).
//!
//! The same seed and options give the same trace byte for byte: all randomness derives from the one
//! seed ([`rng`]), the queue breaks ties by scheduling order, and nothing iterates a hash map.

#![forbid(unsafe_code)]

mod agent;
pub mod bench;
pub mod crypto;
mod delivery;
pub mod event_queue;
pub mod invariants;
pub mod metrics;
pub mod net;
pub mod observer;
pub mod rng;
pub mod scenario;
pub mod scenario_antimatter;
pub mod scenario_churn;
pub mod scenario_nat;
pub mod sim;
pub mod topology;
pub mod trace;
pub mod trust_study;
pub mod verify_ahead;
pub mod workload;

pub use invariants::Violation;
pub use scenario::{catalog, find, lan_discovery, Action, Options, Sabotage, Scenario, LAN_DISCOVERY_SEGMENT};
pub use sim::{Report, Sim};
