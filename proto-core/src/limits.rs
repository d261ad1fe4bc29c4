//! Every limit of the protocol as a named constant, and the sliding-window rate limiter.
//!
//! Units come last in each name. SPEC.md §Limits lists the same table; a test sits at each edge.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// Longest message or shard content, in Unicode scalar values (0.5.3 counts Python characters).
pub const CONTENT_CHARS_MAX: usize = 65_536;
/// Longest bio we accept or send, in characters.
pub const BIO_CHARS_MAX: usize = 1_000;
/// Longest display name we keep, in characters (0.5.3 truncates to 100 on peer_update).
pub const DISPLAY_NAME_CHARS_MAX: usize = 100;
/// Longest agent id accepted on the wire, in bytes, before the stricter 64-hex key check.
pub const AGENT_ID_BYTES_MAX: usize = 128;
/// Longest message id, request id or shard id accepted, in bytes.
pub const ID_BYTES_MAX: usize = 128;
/// Longest URL accepted anywhere, in bytes.
pub const URL_BYTES_MAX: usize = 2_048;
/// Longest note on a forward or an impression, in characters.
pub const NOTE_CHARS_MAX: usize = 1_000;
/// Largest `metadata` object accepted on a message, in bytes of its canonical JSON.
pub const METADATA_BYTES_MAX: usize = 8_192;

/// Largest request body the core will parse, in bytes: the longest content at six bytes per
/// character (a JSON `\uXXXX` escape) plus room for the envelope. The runtime refuses larger bodies before reading them.
pub const BODY_BYTES_MAX: usize = CONTENT_CHARS_MAX * 6 + 32 * 1024;
/// Largest plaintext sealed or opened end to end, in bytes: a relayed message's inner JSON is a body
/// the core parses, so it gets the same bound; checked before any hex is decoded or byte decrypted.
pub const E2E_PLAINTEXT_BYTES_MAX: usize = BODY_BYTES_MAX;

/// Default maximum number of connections (`DARKMATTER_MAX_CONNECTIONS`).
pub const CONNECTIONS_MAX_DEFAULT: usize = 50;
/// Largest value `DARKMATTER_MAX_CONNECTIONS` may take.
pub const CONNECTIONS_MAX_CEILING: usize = 1_000;
/// Times we send `connection_accepted` to a peer we accepted while the call is lost (transport
/// error, 5xx or 429): the first at once, the others at the next housekeeping runs.
pub const ACCEPTANCE_ATTEMPTS_MAX: u32 = 3;
/// Pending incoming connection requests kept at once.
pub const PENDING_REQUESTS_MAX: usize = 50;
/// Pending incoming requests from one source address at once (see [`SOURCE_V6_PREFIX_BITS`]): one host
/// with throwaway keys holds at most this many of the [`PENDING_REQUESTS_MAX`], and a source at its cap
/// is refused rather than displacing anyone else's request.
pub const PENDING_PER_SOURCE_MAX: usize = 8;
/// Local auto-accepts granted to one source address per [`AUTO_ACCEPT_WINDOW_S`]; its further
/// requests wait for the agent like remote ones. A LAN host with throwaway keys cannot fill the
/// connection table.
pub const AUTO_ACCEPTS_PER_SOURCE_MAX: usize = 8;
/// Local auto-accepts granted to all sources together per [`AUTO_ACCEPT_WINDOW_S`].
pub const AUTO_ACCEPTS_MAX: usize = 40;
/// The window of the auto-accept budgets, in seconds (sliding).
pub const AUTO_ACCEPT_WINDOW_S: u64 = 3_600;
/// Connection slots that automatic acceptance (local auto-accept, the trust policy) leaves free for
/// what the agent accepts or connects to itself: of the connection cap `max`, automatic acceptance
/// fills at most `max - min(CONNECTIONS_RESERVED_FOR_AGENT, max / 2)` (45 of the default 50).
pub const CONNECTIONS_RESERVED_FOR_AGENT: usize = 5;
/// Outbound connection requests awaiting the other side's answer at once.
pub const PENDING_OUTBOUND_MAX: usize = 64;
/// How long a pending request (either direction) lives, in seconds.
pub const REQUEST_EXPIRY_S: u64 = 3_600;
/// How long a connection challenge may be answered, in seconds.
pub const CHALLENGE_TTL_S: u64 = 60;

/// Inbox room for messages from connections; when it is full their messages are answered 429.
pub const INBOX_MAX: usize = 50;
/// Inbox room for messages from signers that are not connections (strangers), all together. It is
/// separate room: strangers never take a connection's, and the inbox holds at most
/// [`INBOX_MAX`] + [`INBOX_STRANGERS_MAX`] = 60 messages.
pub const INBOX_STRANGERS_MAX: usize = 10;
/// Messages from one stranger waiting at once (a share of [`INBOX_STRANGERS_MAX`]).
pub const INBOX_PER_STRANGER_MAX: usize = 3;
/// Sent-message records kept; the oldest is dropped first.
pub const SENT_MAX: usize = 100;
/// Responses kept per sent message.
pub const RESPONSES_PER_SENT_MAX: usize = 32;
/// Signed webhook updates kept per sent message.
pub const UPDATES_PER_SENT_MAX: usize = 64;
/// Unsigned webhook updates (anyone can make them up) kept per sent message, in a budget of their own
/// so that they can never take the room of signed ones. Smaller than the signed budget, but room for
/// one `received` receipt from each target of a broadcast at the default connection cap (0.5.3 and
/// nodes of this project post `received` unsigned).
pub const UNSIGNED_UPDATES_PER_SENT_MAX: usize = CONNECTIONS_MAX_DEFAULT;
/// Targets of one send or forward.
pub const TARGETS_PER_SEND_MAX: usize = CONNECTIONS_MAX_CEILING;
/// Concurrent `wait_for_response` calls.
pub const WAITERS_MAX: usize = 64;
/// Longest `wait_for_response`, in seconds.
pub const WAIT_TIMEOUT_S_MAX: u64 = 3_600;
/// Hop budget of a new message, and the most a received message may carry.
pub const HOPS_MAX: u32 = 10;

/// Freshness window for signed timestamps, either side of now, in seconds.
pub const FRESHNESS_WINDOW_S: u64 = 300;
/// Entries in the replay (dedup) cache.
pub const REPLAY_ENTRIES_MAX: usize = 10_000;

/// Rate-limit window, in milliseconds (sliding).
pub const RATE_WINDOW_MS: u64 = 60_000;
/// Requests per window from one connected peer, unless overridden.
pub const RATE_PER_PEER_DEFAULT: u32 = 30;
/// Authenticated requests per window from everyone together.
pub const RATE_GLOBAL_DEFAULT: u32 = 200;
/// One party (a connected peer; for anyone else, its source address) may use at most
/// 1/[`RATE_PARTY_SHARE_DIVISOR`] of the global window (50 of the default 200), so no single flood
/// can take it all. A peer's own limit applies as well; the smaller one holds.
pub const RATE_PARTY_SHARE_DIVISOR: u32 = 4;
/// Requests that do not come from a connected peer may together use at most
/// 1/[`RATE_STRANGERS_SHARE_DIVISOR`] of the global window (100 of the default 200): the rest is
/// always left for connected peers.
pub const RATE_STRANGERS_SHARE_DIVISOR: u32 = 2;
/// Source addresses whose windows are kept at once; a new source then takes the place of the one
/// idle longest.
pub const RATE_SOURCES_MAX: usize = 1_024;
/// An IPv6 source address is counted by its prefix of this many bits (an IPv4 source by its
/// address): one host is routinely given a whole /64 and may pick any address in it.
pub const SOURCE_V6_PREFIX_BITS: u32 = 64;
/// Largest finite per-window limit that may be configured (bounds the window's memory).
pub const RATE_LIMIT_CEILING: u32 = 100_000;

/// Wallet entries kept from a peer's handshake.
pub const WALLETS_MAX: usize = 8;
/// Longest wallet chain name or address kept, in bytes.
pub const WALLET_FIELD_BYTES_MAX: usize = 128;
/// Most decimals a token amount may have (the SPL range the wallet tools accept, 0..=18).
pub const WALLET_DECIMALS_MAX: u8 = 18;
/// Longest amount text parsed, in characters: a u64 has 20 digits, plus the point and 18 decimals, plus
/// room for leading zeros.
pub const WALLET_AMOUNT_CHARS_MAX: usize = 64;
/// Longest memo put in a transfer, in bytes (`dm:` and a message id fit many times over; keeps the
/// transaction far below Solana's 1,232-byte packet).
pub const WALLET_MEMO_BYTES_MAX: usize = 256;
/// Status polls (one a second) before a sent transaction is reported `submitted` rather than waited for:
/// about as long as a blockhash lives (150 blocks of ~0.4 s), so most sends end `confirmed` or `expired`.
pub const WALLET_CONFIRM_POLLS_MAX: u32 = 60;
/// Longest answer read from the Solana RPC, in bytes (a `getTransaction` of the largest transaction with
/// its logs is far below it).
pub const WALLET_RPC_RESPONSE_BYTES_MAX: u64 = 1024 * 1024;
/// Time allowed for one Solana RPC call, connection included, in milliseconds (R-G4).
pub const WALLET_RPC_TIMEOUT_MS: u64 = 10_000;
/// Oldest payment that counts, by the block time of its transaction, in seconds (R-G8: a day).
pub const PAYMENT_AGE_MAX_S: i64 = 86_400;
/// How far in the future a payment's block time may be (clock differences), in seconds.
pub const PAYMENT_CLOCK_SKEW_S: i64 = 300;
/// Payment checks waiting for the runtime's wallet at once (notices and pool purchases); a claim
/// beyond them is refused for now (a purchase answers 503; a notice stays unverified).
pub const PAYMENT_CHECKS_MAX: usize = 64;
/// Times a claim is checked when the wallet cannot decide (RPC down, transaction not final yet).
pub const PAYMENT_CHECK_ATTEMPTS_MAX: u32 = 5;
/// Wait before a claim the wallet could not decide is checked again, in milliseconds (finality on
/// Solana takes about 13 s).
pub const PAYMENT_RECHECK_MS: u64 = 15_000;
/// Payment notices whose outcome (verified, refused, checking) is remembered for `get_message`.
pub const PAYMENT_NOTICES_MAX: usize = 1_024;
/// Pools one node owns (0.5.3's `POOL_MAX`, which it never enforced).
pub const POOL_MAX: usize = 10;
/// Providers in one pool (0.5.3's `POOL_MAX_PROVIDERS`, never enforced).
pub const POOL_PROVIDERS_MAX: usize = 20;
/// Access tokens across this node's pools (0.5.3's `POOL_MAX_ACCESS_TOKENS`).
pub const POOL_TOKENS_MAX: usize = 100;
/// Transactions remembered as having paid for a purchase (each pays once, for ever).
pub const POOL_PURCHASES_MAX: usize = 65_536;
/// Time a pool call waits for its upstream, in milliseconds. 0.5.3 waits 30 s; ours stays below the
/// peer server's 30 s wait for the core, so the consumer gets the pool's answer, not a timeout.
pub const POOL_UPSTREAM_TIMEOUT_MS: u64 = 25_000;
/// Longest upstream answer relayed, in bytes (more answers 502 "Upstream response too large").
pub const POOL_RESPONSE_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Pool calls waiting for their upstream at once, across pools; more answer 429.
pub const POOL_CALLS_IN_FLIGHT_MAX: usize = 32;
/// Longest path a consumer may call, in bytes.
pub const POOL_PATH_BYTES_MAX: usize = 2_048;
/// Headers a consumer may send with one call.
pub const POOL_HEADERS_MAX: usize = 32;
/// Output tokens reserved for an `llm-tokens` call that names no `max_tokens`.
pub const POOL_LLM_MAX_TOKENS_DEFAULT: u64 = 4_096;
/// Hops an AntiMatter signal may travel before it times out (0.5.3's `max_hops`); a signal claiming
/// more is refused, so its hop chain is bounded too.
pub const ANTIMATTER_HOPS_MAX: u32 = 10;
/// Age of an AntiMatter signal after which it times out, in seconds (0.5.3's value).
pub const ANTIMATTER_SIGNAL_AGE_MAX_S: i64 = 300;
/// Grace after the signal's age limit before the originator's watchdog resolves it as a timeout, in
/// seconds (0.5.3's 305 s watchdog): a result sent at the last moment still wins.
pub const ANTIMATTER_WATCHDOG_GRACE_S: i64 = 5;
/// AntiMatter events kept in `antimatter_log` (0.5.3's value).
pub const ANTIMATTER_LOG_MAX: usize = 100;
/// Commit-reveal sessions a node keeps as a game's peer; the least recently used goes first.
pub const ANTIMATTER_SESSIONS_MAX: usize = 1_000;
/// Life of a commit-reveal session, in milliseconds (0.5.3's 10 s).
pub const ANTIMATTER_SESSION_TTL_MS: u64 = 10_000;
/// Largest `n` a peer accepts in a match request: more than any node has connections.
pub const ANTIMATTER_N_MAX: u32 = 10_000;
/// Peers a node plays one match game with (the first ones eligible); bounds a game's fan-out.
pub const ANTIMATTER_GAME_PEERS_MAX: usize = 64;
/// Time allowed for one commit or reveal call, in milliseconds.
pub const ANTIMATTER_CALL_TIMEOUT_MS: u64 = 5_000;
/// Signals in flight (originated or being played) at once; a payment beyond them starts no game.
pub const ANTIMATTER_FLOWS_MAX: usize = 1_024;
/// Resolved flows and started payments remembered, so a transaction never starts a second game.
pub const ANTIMATTER_STARTED_MAX: usize = 65_536;
/// Destinations with an accrued fee kept at once (R-F2).
pub const ANTIMATTER_ACCRUALS_MAX: usize = 4_096;
/// Smallest SOL fee paid, in lamports: the rent-exempt minimum of a fresh system account (890,880) plus
/// one transaction fee (5,000). Below it a fee accrues for its destination (R-F2).
pub const ANTIMATTER_SOL_PAYABLE_MIN: u64 = 895_880;
/// A peer counts as online for veteran choice when it was active this recently, in seconds.
pub const ANTIMATTER_ONLINE_S: i64 = 300;
/// Longest signal id accepted, in bytes (`am-` and 12 hex in 0.5.3).
pub const ANTIMATTER_SIGNAL_ID_BYTES_MAX: usize = 64;
/// How long a payer waits for its payee's `antimatter_started` after a payment notice, in seconds:
/// past it the payee counts as not routing (R-F7). Long beside a payment's verification (seconds) and
/// a game (a few calls of at most 5 s).
pub const ANTIMATTER_STARTED_WAIT_S: i64 = 600;
/// Payment notices a payer awaits a started notice for at once; a payment beyond them is not watched.
pub const ANTIMATTER_AWAITED_MAX: usize = 1_024;
/// Connections a payee sends one disagreement report to (R-F7); bounds the fan-out of one payment.
pub const ANTIMATTER_REPORT_FANOUT_MAX: usize = 64;
/// Disagreement reports taken from one reporter within [`ANTIMATTER_REPORT_WINDOW_S`]; more are
/// refused (429). Beyond [`TRUST_VOUCHES_PER_PEER_MAX`] subjects a reporter's reports already weigh
/// nothing (its vouch budget); this bounds the work and the log they cause.
pub const ANTIMATTER_REPORTS_PER_REPORTER_MAX: usize = 8;
/// The window of [`ANTIMATTER_REPORTS_PER_REPORTER_MAX`], in seconds: a day.
pub const ANTIMATTER_REPORT_WINDOW_S: i64 = 86_400;
/// AntiMatter events a status report shows (the newest); the whole log is a command away.
pub const ANTIMATTER_STATUS_RECENT_MAX: usize = 5;
/// Disagreement reports remembered for that bound (reporter, when), oldest dropped first; not
/// persisted.
pub const ANTIMATTER_REPORT_RECORDS_MAX: usize = 4_096;
/// Longest informational timestamp kept from a peer (`created_at`), in characters.
pub const TIMESTAMP_FIELD_CHARS_MAX: usize = 64;

/// Impressions kept (one per agent).
pub const IMPRESSIONS_MAX: usize = 10_000;
/// Trust gained by a peer each time it acknowledges a message we sent (0.5.3's value).
pub const TRUST_DELTA_DELIVERED: f64 = 0.001;
/// Trust gained by a peer whose reply completes an exchange we started.
pub const TRUST_DELTA_REPLIED: f64 = 0.02;
/// Trust lost by a peer that refuses or cannot take a message we send it.
pub const TRUST_DELTA_DELIVERY_FAILED: f64 = -0.005;
/// Trust lost by a peer that signs a wrong packet: an answer to our trust query with a score out of
/// range. Forged or replayed packets *in* a peer's name move nothing:
/// anyone can make them, so they say nothing about the peer.
pub const TRUST_DELTA_FORGED: f64 = -0.2;
/// How far a trusted peer's report moves our impression of its subject, times our trust in it.
pub const TRUST_REPORT_WEIGHT: f64 = 0.1;
/// Peers asked about an unknown requester in one round, most trusted first.
pub const TRUST_QUERY_FANOUT_MAX: usize = 8;
/// Peers asked about one requester over all rounds: while the answers do not weigh enough, the
/// next most trusted peers are asked, up to this many in all.
pub const TRUST_QUERY_ASKED_MAX: usize = 32;
/// How long a trust query may take, in milliseconds.
pub const TRUST_QUERY_TIMEOUT_MS: u64 = 3_000;
/// We answer trust queries only from connected peers we trust at least this much: anyone we do not
/// count as negative (see [`TRUST_NEGATIVE_MARGIN`]). Not 0.0: one failed delivery
/// ([`TRUST_DELTA_DELIVERY_FAILED`]) would then silence a peer's answers to a good neighbour.
pub const TRUST_ANSWER_MIN: f64 = -0.05;
/// Default auto-accept threshold of the combined peer opinion.
pub const TRUST_ACCEPT_MIN_DEFAULT: f64 = 0.5;
/// Default auto-reject threshold of the combined peer opinion.
pub const TRUST_REJECT_MAX_DEFAULT: f64 = -0.5;
/// Least total weight (sum of our trust in the peers who answered) for the policy to act.
pub const TRUST_CONFIDENCE_MIN: f64 = 0.2;
/// An impression counts as negative (for auto-disconnect) below minus this margin.
pub const TRUST_NEGATIVE_MARGIN: f64 = 0.05;
/// A connection whose impression stays negative this long is dropped, in seconds.
pub const TRUST_NEGATIVE_TIMEOUT_S: u64 = 3_600;
/// Automatic gains (deliveries, replies) never raise a score above this; only the agent sets trust
/// beyond. Below [`TRUST_VOUCH_SCORE_MIN`] and [`TRUST_CONFIDENCE_MIN`]: hours of helpful replies
/// (trust farming) never make a peer a voucher whose word alone moves a decision.
pub const TRUST_AUTO_CEILING: f64 = 0.15;
/// An opinion of at least this much (either sign) is a *vouch* (or a warning): strong enough to count
/// toward a decision, so each one is charged to its giver's vouch budget.
pub const TRUST_VOUCH_SCORE_MIN: f64 = 0.2;
/// Requesters one peer may vouch for (or warn against) within [`TRUST_VOUCH_WINDOW_S`] and still
/// be counted: a peer that speaks strongly of more at once is vouching for a crowd (a Sybil cluster, a
/// slander campaign), and its strong opinions then count for nothing; the agent decides.
/// Two, not one: an honest peer may introduce two newcomers the same day (in the study's model a
/// voucher picked twice is common) without either waiting for the agent.
pub const TRUST_VOUCHES_PER_PEER_MAX: usize = 2;
/// The window of a peer's vouch budget, in seconds.
pub const TRUST_VOUCH_WINDOW_S: u64 = 86_400;
/// Vouches remembered for the budget (peer, requester, when), oldest dropped first; not persisted.
pub const TRUST_VOUCH_RECORDS_MAX: usize = 4_096;
/// The policy decides a request only once it has waited this long, in seconds: time for a voucher that
/// vouches for a crowd to show it before its first vouch carries.
pub const TRUST_DECISION_HOLD_S: u64 = 600;

/// Own shards kept.
pub const SHARDS_OWN_MAX: usize = 200;
/// Other agents' shards cached.
pub const SHARDS_CACHED_MAX: usize = 200;
/// A cached shard is dropped this long after its last update, in seconds.
pub const SHARD_CACHE_TTL_S: u64 = 86_400;
/// Tags per shard.
pub const SHARD_TAGS_MAX: usize = 16;
/// Longest tag, in characters.
pub const SHARD_TAG_CHARS_MAX: usize = 64;
/// Longest shard summary, in characters.
pub const SHARD_SUMMARY_CHARS_MAX: usize = 1_000;
/// Conversation log entries kept; the oldest is dropped first.
pub const CONVERSATIONS_MAX: usize = 500;
/// Longest content kept per conversation entry, in characters.
pub const CONVERSATION_CONTENT_CHARS_MAX: usize = 2_000;
/// Entries in the direct section of the context feed.
pub const FEED_DIRECT_MAX: usize = 30;
/// Entries in the network section of the context feed.
pub const FEED_NETWORK_MAX: usize = 15;

/// Live spawned agents at once by default (`DARKMATTER_AGENT_MAX_CONCURRENT`, 0.5.3's value).
pub const SPAWN_CONCURRENT_DEFAULT: usize = 2;
/// Agent spawns per sliding hour by default (`DARKMATTER_AGENT_MAX_PER_HOUR`, 0.5.3's value).
pub const SPAWN_PER_HOUR_DEFAULT: usize = 15;
/// Agent spawns per sliding hour for one sender by default: one chatty peer cannot use up the hour.
pub const SPAWN_PER_SENDER_PER_HOUR_DEFAULT: usize = 4;
/// The sliding window of the spawn limits, in milliseconds (monotonic clock).
pub const SPAWN_WINDOW_MS: u64 = 3_600_000;
/// One spawn per connection requester in this long, in milliseconds: repeating a request costs nothing.
pub const SPAWN_REQUESTER_QUIET_MS: u64 = 3_600_000;
/// Triggers waiting for room to spawn: every inbox message from connections and every pending request.
pub const SPAWN_WAITING_MAX: usize = INBOX_MAX + PENDING_REQUESTS_MAX;
/// At start-up, queued messages at most this old spawn again, in seconds (0.5.3's value).
pub const SPAWN_RESPAWN_AGE_S_MAX: u64 = 1_800;
/// Memory lines in a spawned agent's prompt.
pub const SPAWN_CONTEXT_LINES_MAX: usize = 30;
/// Longest memory line in a spawned agent's prompt, in characters.
pub const SPAWN_CONTEXT_LINE_CHARS_MAX: usize = 200;

/// Timeout we give peer HTTP calls, in milliseconds.
pub const PEER_CALL_TIMEOUT_MS: u64 = 10_000;

/// After a lookup of a peer ends, none starts for it again before this many ms have passed (0.5.3
/// looks up on every failed send): ten failed deliveries in ten seconds cause one fan-out.
pub const LOOKUP_COOLDOWN_MS: u64 = 60_000;
/// Lookups running at once; a delivery failing while all are busy fails as it would without healing.
pub const LOOKUPS_IN_FLIGHT_MAX: usize = 4;
/// Connections asked in one lookup (0.5.3's `PEER_LOOKUP_MAX_CONCURRENT`), most trusted first.
pub const LOOKUP_ASK_MAX: usize = 50;
/// Timeout of one lookup question, in ms (0.5.3's `PEER_LOOKUP_TIMEOUT`).
pub const LOOKUP_TIMEOUT_MS: u64 = 5_000;
/// Failed deliveries to one peer held while its lookup runs (retried if it finds the peer); more
/// fail at once.
pub const LOOKUP_PARKED_MAX: usize = 16;
/// How far in the future a signed update's timestamp may lie and still count, in seconds.
pub const LOOKUP_FUTURE_S_MAX: i64 = 300;
/// Distinct answerers that must name the same URL for an unsigned answer to be adopted (or
/// [`LOOKUP_UNSIGNED_SCORE_MIN`]).
pub const LOOKUP_UNSIGNED_AGREE_MIN: usize = 2;
/// Combined weight (Σ max(trust, 0.1), 0.5 for an answerer we have no impression of) at which one
/// unsigned URL is adopted without a second answerer.
pub const LOOKUP_UNSIGNED_SCORE_MIN: f64 = 1.0;
/// Posts of one webhook callback, the first included, when its owner is looked up after failures
/// (0.5.3's `WEBHOOK_RECOVERY_MAX_ATTEMPTS`).
pub const WEBHOOK_RECOVERY_ATTEMPTS_MAX: u32 = 3;
/// A webhook callback is posted again only within this many ms of its first failure (0.5.3's
/// `WEBHOOK_RECOVERY_TIMEOUT`): a status update minutes late says little.
pub const WEBHOOK_RECOVERY_WINDOW_MS: u64 = 30_000;
/// Timeout for the connection request call, in milliseconds (a 0.5.3 target queries its peers first).
pub const CONNECT_CALL_TIMEOUT_MS: u64 = 30_000;
/// Outbound calls in flight at once; more are refused with a clear error.
pub const OUTBOUND_IN_FLIGHT_MAX: usize = 4_096;
/// Outputs buffered before the driver drains them; an assertion, not a policy.
pub const OUTPUTS_BUFFERED_MAX: usize = 100_000;
/// Longest inactivity period one `set_status` may ask for, in minutes.
pub const INACTIVE_MINUTES_MAX: u64 = 1_440;

// ----- The anchor (`darkmatter anchor`, SPEC §19) -----

/// How long a registration stays in the anchor's directory after its last refresh, in seconds
/// (0.5.3's value: nodes refresh at every start and URL change; lookups of older entries answer 404).
pub const ANCHOR_REGISTRATION_STALE_S: u64 = 86_400;
/// Registrations the anchor's directory holds. 0.5.3 stops at 10,000; ours holds the capacity target
/// (100,000 nodes in 256 MiB), and a full directory first drops entries older than
/// [`ANCHOR_REGISTRATION_STALE_S`].
pub const ANCHOR_DIRECTORY_ENTRIES_MAX: usize = 100_000;
/// Registrations one source (TCP address, IPv6 /64) may send per [`ANCHOR_SOURCE_WINDOW_MS`]
/// (0.5.3's value, counted by its spoofable X-Forwarded-For).
pub const ANCHOR_REGISTRATIONS_PER_SOURCE: usize = 10;
/// Relay posts (to any mailbox) one source may send per [`ANCHOR_SOURCE_WINDOW_MS`]: two a second on
/// average, far above a node's own traffic, and what keeps one source from filling the buffers.
pub const ANCHOR_POSTS_PER_SOURCE: usize = 120;
/// Reachability probes one source may ask for per [`ANCHOR_SOURCE_WINDOW_MS`]: a node probes at
/// start-up, on a change of URL and hourly, so six a minute is far above honest use, and each probe
/// is one outbound GET the anchor makes.
pub const ANCHOR_PROBES_PER_SOURCE: usize = 6;
/// Timeout of the anchor's GET of a probed URL, in ms (0.5.3's 5 s).
pub const ANCHOR_PROBE_TIMEOUT_MS: u64 = 5_000;
/// Probes in flight at once; beyond it a probe is answered 503 (each holds an outbound connection).
pub const ANCHOR_PROBES_IN_FLIGHT_MAX: usize = 16;
/// The window of the per-source counts above, in milliseconds.
pub const ANCHOR_SOURCE_WINDOW_MS: u64 = 60_000;
/// Sources whose windows the anchor remembers; a newcomer over it evicts the source seen least
/// recently (its window is forgotten, never anyone else's mailbox).
pub const ANCHOR_SOURCES_MAX: usize = 10_000;
/// Largest body buffered in a mailbox, in bytes (a larger POST is answered 413).
pub const ANCHOR_ENTRY_BYTES_MAX: usize = 256 * 1024;
/// Bytes one mailbox (one kind, one target) may hold; a post over it evicts like a full count does.
pub const ANCHOR_MAILBOX_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Bytes charged per buffered entry on top of its body (its key, times, source) against
/// [`ANCHOR_BUFFERED_BYTES_MAX`], so that many tiny entries are bounded too.
pub const ANCHOR_ENTRY_OVERHEAD_BYTES: usize = 256;
/// Bytes all mailboxes together may hold; a post over it is answered 507. Entries live in memory as
/// well as on disk, so this bounds the anchor's resident size.
pub const ANCHOR_BUFFERED_BYTES_MAX: usize = 256 * 1024 * 1024;
/// Entries of one target's webhook mailbox (0.5.3's value).
pub const ANCHOR_WEBHOOK_ENTRIES_MAX: usize = 100;
/// Lifetime of a buffered webhook callback, in seconds (0.5.3's value).
pub const ANCHOR_WEBHOOK_TTL_S: u64 = 3_600;
/// Entries of one target's connection mailbox (0.5.3's value).
pub const ANCHOR_CONNECTION_ENTRIES_MAX: usize = 20;
/// Lifetime of a buffered connection callback, in seconds (0.5.3's value).
pub const ANCHOR_CONNECTION_TTL_S: u64 = 3_600;
/// Entries of one target's SDP mailbox (0.5.3's value).
pub const ANCHOR_SDP_ENTRIES_MAX: usize = 10;
/// Lifetime of a buffered SDP signal, in seconds (0.5.3's value: SDP goes stale fast).
pub const ANCHOR_SDP_TTL_S: u64 = 120;
/// Entries of one target's message mailbox (0.5.3's value).
pub const ANCHOR_MESSAGE_ENTRIES_MAX: usize = 50;
/// Lifetime of a buffered relayed message, in seconds (0.5.3's value).
pub const ANCHOR_MESSAGE_TTL_S: u64 = 3_600;
/// Poll timestamps remembered per agent and mailbox kind (each for the freshness window): one poll
/// every 2.3 s sustained; an honest 0.5.3 node polls every 60 s, its WormHole every 5 s.
pub const ANCHOR_POLLS_PER_MAILBOX_MAX: usize = 128;
/// Longest long poll (`?wait=`), in seconds; longer requests are cut to it.
pub const ANCHOR_LONG_POLL_S_MAX: u64 = 25;
/// Long polls held at once; a poll over it is answered at once, as a plain poll. Below the HTTP
/// server's requests in flight (64), so held polls never starve registrations and lookups.
pub const ANCHOR_LONG_POLLS_MAX: usize = 32;

/// A configured rate limit.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum RateLimit {
    /// The protocol default for that window.
    #[default]
    Default,
    /// At most this many requests per window (1..=[`RATE_LIMIT_CEILING`]).
    PerWindow(u32),
    /// No limit.
    Unlimited,
}

impl RateLimit {
    /// The 0.5.3 tool encoding: 0 = default, -1 = unlimited, n > 0 = n per minute.
    pub fn from_tool_value(value: i64) -> Option<Self> {
        match value {
            0 => Some(Self::Default),
            -1 => Some(Self::Unlimited),
            n if n > 0 && n <= RATE_LIMIT_CEILING as i64 => Some(Self::PerWindow(n as u32)),
            _ => None,
        }
    }

    /// The 0.5.3 encoding of this limit.
    pub fn to_tool_value(self) -> i64 {
        match self {
            Self::Default => 0,
            Self::Unlimited => -1,
            Self::PerWindow(n) => n as i64,
        }
    }

    fn resolve(self, default: u32) -> Option<u32> {
        match self {
            Self::Default => Some(default),
            Self::PerWindow(n) => Some(n.min(RATE_LIMIT_CEILING)),
            Self::Unlimited => None,
        }
    }
}

/// A sliding window of admitted request times. Holds at most `limit` entries, so its memory is
/// bounded by the limit itself.
#[derive(Clone, Debug, Default)]
pub struct RateWindow {
    admitted_ms: VecDeque<u64>,
}

impl RateWindow {
    /// Admits one request at `now_ms` if fewer than the limit were admitted in the last window.
    pub fn try_admit(&mut self, now_ms: u64, limit: RateLimit, default: u32) -> bool {
        let Some(max) = limit.resolve(default) else { return true };
        while let Some(&t) = self.admitted_ms.front() {
            if t + RATE_WINDOW_MS <= now_ms {
                self.admitted_ms.pop_front();
            } else {
                break;
            }
        }
        // A lowered limit leaves old entries above it; they age out as above.
        if self.admitted_ms.len() >= max as usize {
            return false;
        }
        self.admitted_ms.push_back(now_ms);
        debug_assert!(self.admitted_ms.len() <= max as usize);
        true
    }

    /// Whether fewer than `max` requests were admitted in the `window_ms` ending at `now_ms`; drops
    /// the older entries. Admits nothing: [`RateWindow::record`] does, once every window agreed.
    pub fn has_room(&mut self, now_ms: u64, window_ms: u64, max: usize) -> bool {
        while self.admitted_ms.front().is_some_and(|&t| t + window_ms <= now_ms) {
            self.admitted_ms.pop_front();
        }
        self.admitted_ms.len() < max
    }

    /// Counts one request at `now_ms` (after [`RateWindow::has_room`] said yes).
    pub fn record(&mut self, now_ms: u64) {
        self.admitted_ms.push_back(now_ms);
    }

    /// When the newest request in the window was admitted (`None`: none is).
    pub fn newest_ms(&self) -> Option<u64> {
        self.admitted_ms.back().copied()
    }

    /// Requests admitted in the window ending at `now_ms`.
    pub fn count(&self, now_ms: u64) -> usize {
        self.admitted_ms.iter().filter(|&&t| t + RATE_WINDOW_MS > now_ms).count()
    }
}

// ----- Reaching a node through anchors (the node side, SPEC §20) -----

/// Anchors a node is configured with; more are refused at start-up (each is registered with, asked
/// in every lookup and polled).
pub const RELAY_ANCHORS_MAX: usize = 16;
/// Interval of the registration refresh, in ms: twice a day against the anchor's 24 h expiry
/// ([`ANCHOR_REGISTRATION_STALE_S`]).
pub const RELAY_REGISTER_INTERVAL_MS: u64 = 12 * 3_600_000;
/// Timeout of a registration, in ms (0.5.3's 5 s).
pub const RELAY_REGISTER_TIMEOUT_MS: u64 = 5_000;
/// Timeout of an anchor's answer in a peer lookup, in ms: anchors are asked beside the connections,
/// as a last resort, and must not hold the lookup up.
pub const RELAY_LOOKUP_TIMEOUT_MS: u64 = 2_000;
/// Timeout of a post to an anchor's relay mailbox, in ms (0.5.3's 15 s).
pub const RELAY_POST_TIMEOUT_MS: u64 = 15_000;
/// Interval between polls of a mailbox that the anchor does not hold, in ms.
pub const RELAY_POLL_INTERVAL_MS: u64 = 10_000;
/// The interval after [`RELAY_POLL_EMPTY_BEFORE_BACKOFF`] empty polls in a row, in ms.
pub const RELAY_POLL_INTERVAL_MAX_MS: u64 = 60_000;
/// Empty polls in a row before the interval grows to [`RELAY_POLL_INTERVAL_MAX_MS`].
pub const RELAY_POLL_EMPTY_BEFORE_BACKOFF: u32 = 5;
/// How long a node that is not behind NAT keeps polling after a period in which it could not be
/// reached (its start, a change of URL, a probe that said unreachable, a stall, relayed entries), in
/// ms: what was buffered for it meanwhile is fetched (0.5.3's public nodes never poll; entries live
/// 1 h, so this outlives every entry posted during the period).
pub const RELAY_POLL_AFTER_UNREACHABLE_MS: u64 = 3_600_000;
/// A node that handled no timer for this long, in ms, by either clock, did not run (stopped,
/// suspended, starved): peers could not reach it meanwhile. The core asks for a timer at least every
/// [`crate::node::HOUSEKEEPING_INTERVAL_MS`] (60 s), so twice that is not a busy node.
pub const RELAY_STALL_MS: u64 = 120_000;
/// Interval of the reachability probe of our public URL by the anchors, in ms: hourly, so a port
/// closed or opened later is noticed within the hour.
pub const RELAY_PROBE_INTERVAL_MS: u64 = 3_600_000;
/// Least time between two probe rounds, in ms: a URL that changes every second costs each anchor at
/// most [`ANCHOR_PROBES_PER_SOURCE`] probes a minute.
pub const RELAY_PROBE_SPACING_MS: u64 = 10_000;
/// Timeout of a probe request, in ms: the anchor's own GET ([`ANCHOR_PROBE_TIMEOUT_MS`]) plus margin.
pub const RELAY_PROBE_TIMEOUT_MS: u64 = 10_000;
/// The `wait` of our long poll of the message mailbox, in seconds (below [`ANCHOR_LONG_POLL_S_MAX`]).
pub const RELAY_LONG_POLL_S: u64 = 20;
/// A poll answered at least this long after it was sent, in ms, was held by the anchor: the next
/// one goes out at once (an anchor that ignores `wait` answers at once and is polled on the interval).
pub const RELAY_POLL_HELD_MS: u64 = 1_000;
/// Entries taken from one poll answer; the rest of a longer answer is dropped (an anchor holds at
/// most [`ANCHOR_WEBHOOK_ENTRIES_MAX`] per mailbox).
pub const RELAY_POLL_ENTRIES_MAX: usize = 128;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_admits_exactly_the_limit_then_refuses() {
        let mut w = RateWindow::default();
        for i in 0..30 {
            assert!(w.try_admit(i, RateLimit::Default, RATE_PER_PEER_DEFAULT), "request {i}");
        }
        assert!(!w.try_admit(30, RateLimit::Default, RATE_PER_PEER_DEFAULT));
        // The first admission leaves the window exactly one window later.
        assert!(!w.try_admit(RATE_WINDOW_MS - 1, RateLimit::Default, RATE_PER_PEER_DEFAULT));
        assert!(w.try_admit(RATE_WINDOW_MS, RateLimit::Default, RATE_PER_PEER_DEFAULT));
    }

    #[test]
    fn unlimited_admits_everything_and_stores_nothing() {
        let mut w = RateWindow::default();
        for i in 0..10_000 {
            assert!(w.try_admit(i, RateLimit::Unlimited, 1));
        }
        assert_eq!(w.count(10_000), 0);
    }

    #[test]
    fn tool_encoding_round_trips_and_refuses_out_of_range() {
        assert_eq!(RateLimit::from_tool_value(0), Some(RateLimit::Default));
        assert_eq!(RateLimit::from_tool_value(-1), Some(RateLimit::Unlimited));
        assert_eq!(RateLimit::from_tool_value(5), Some(RateLimit::PerWindow(5)));
        assert_eq!(
            RateLimit::from_tool_value(RATE_LIMIT_CEILING as i64),
            Some(RateLimit::PerWindow(RATE_LIMIT_CEILING))
        );
        assert_eq!(RateLimit::from_tool_value(RATE_LIMIT_CEILING as i64 + 1), None);
        assert_eq!(RateLimit::from_tool_value(-2), None);
        for v in [-1, 0, 1, 77] {
            assert_eq!(RateLimit::from_tool_value(v).unwrap().to_tool_value(), v);
        }
    }
}
