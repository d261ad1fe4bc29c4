//! [`Pools`]: shared API access sold for prepaid balances (SPEC §22). A pool's owner adds providers
//! (an upstream base URL and a credential, sealed at rest by [`seal`]); consumers buy a balance with a
//! verified on-chain payment and spend it on calls the owner's node makes for them.
//!
//! The rules this owner keeps: balances are integers in the pool asset's base units; a call reserves
//! its maximum cost before it starts and settles after (so concurrent calls can never overdraw, and
//! a call that fails costs nothing); a transaction pays for one purchase only; every table is bounded.
//! The path ([`path`]), header ([`headers`]) and metering ([`meter`]) rules are leaves of their own.

pub mod headers;
pub mod meter;
pub mod path;
pub mod seal;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::io::InboundId;
use crate::limits::{POOL_MAX, POOL_PROVIDERS_MAX, POOL_PURCHASES_MAX, POOL_TOKENS_MAX};
use crate::store::{self, Change, Record, RecordError, Table};

pub use crate::io::{UpstreamCall, UpstreamError, UpstreamId, UpstreamResponse};
pub use meter::Handler;

/// A provider: one upstream and its credential.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Provider {
    /// `pv-<12 hex>`.
    pub provider_id: String,
    /// Upstream base URL (https, or http to this machine in tests).
    pub base_url: String,
    /// The header the credential goes in (`authorization`, `x-api-key`).
    pub credential_header: String,
    /// The credential, sealed ([`seal`]); never answered.
    pub credential_sealed: Vec<u8>,
    /// Path prefixes consumers may call (segment boundaries).
    pub allowed_paths: Vec<String>,
    /// Whether a query string may follow the path.
    pub allow_query: bool,
    /// Request headers passed through (empty: [`headers::REQUEST_HEADERS_DEFAULT`]).
    pub allowed_headers: Vec<String>,
    /// Base units per call (and the fixed part of a token-priced call).
    pub price_per_call: u64,
    /// How calls are charged.
    pub handler: Handler,
    /// Charge upstream 4xx answers too (default: only 2xx is charged).
    pub charge_client_errors: bool,
    /// Whether it takes calls.
    pub enabled: bool,
    /// Calls answered by the upstream.
    pub calls_served: u64,
    /// Calls that did not reach an answer.
    pub failures: u64,
    /// ISO time it was added.
    pub added_at: String,
}

/// A pool.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// `pool-<12 hex>`.
    pub pool_id: String,
    /// Name.
    pub name: String,
    /// Tags (`pool:llm`, ...).
    pub tags: Vec<String>,
    /// Description.
    pub description: String,
    /// What balances are in: `SOL` or a mint address.
    pub asset: String,
    /// Decimals of `asset`.
    pub decimals: u8,
    /// Its providers.
    pub providers: Vec<Provider>,
    /// ISO creation time.
    pub created_at: String,
    /// The shard it was published as, if it was.
    pub shard_id: Option<String>,
}

impl Record for Pool {}

/// A consumer's prepaid balance in one pool, bound to that consumer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessToken {
    /// `at-<32 hex>`.
    pub token_id: String,
    /// Its pool.
    pub pool_id: String,
    /// The only agent that may spend it (signatures are checked against this id).
    pub consumer: String,
    /// Base units left.
    pub balance: u64,
    /// Base units ever credited.
    pub total_deposited: u64,
    /// Base units ever charged.
    pub total_spent: u64,
    /// Calls charged or not.
    pub calls_made: u64,
    /// ISO creation time.
    pub created_at: String,
    /// ISO time of the last call.
    pub last_used: Option<String>,
    /// Revoked by the owner.
    pub revoked: bool,
}

impl Record for AccessToken {}

/// A transaction that paid for a purchase (so it never pays twice).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Paid {
    /// The token it was credited to.
    pub token_id: String,
    /// Base units.
    pub units: u64,
}

impl Record for Paid {}

/// A purchase waiting for its payment's verdict; its HTTP request waits too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Purchase {
    /// The request to answer.
    pub inbound: InboundId,
    /// The pool.
    pub pool_id: String,
    /// The buyer.
    pub consumer: String,
    /// The transaction.
    pub tx_signature: String,
}

/// Why a pool operation was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PoolError {
    /// No pool with that id.
    #[error("Pool not found")]
    NoPool,
    /// No provider with that id in the pool.
    #[error("Provider not found")]
    NoProvider,
    /// No such access token, or it belongs to another pool.
    #[error("Invalid access token")]
    NoToken,
    /// The owner revoked the token.
    #[error("Access token revoked")]
    Revoked,
    /// `POOL_MAX` pools exist.
    #[error("at most {POOL_MAX} pools")]
    TooManyPools,
    /// `POOL_PROVIDERS_MAX` providers in this pool.
    #[error("at most {POOL_PROVIDERS_MAX} providers per pool")]
    TooManyProviders,
    /// `POOL_TOKENS_MAX` tokens exist.
    #[error("Access token limit reached")]
    TooManyTokens,
    /// The balance (less what calls in flight reserved) does not cover the call's maximum cost.
    #[error("Insufficient balance")]
    Insufficient,
    /// This transaction already paid for a purchase (or one is being checked).
    #[error("This transaction already paid for a purchase")]
    Reused,
    /// `POOL_PURCHASES_MAX` purchases are remembered.
    #[error("too many purchases remembered")]
    TooManyPurchases,
}

/// Every pool, token and paid transaction of this node, and the reservations of calls in flight.
#[derive(Default)]
pub struct Pools {
    pools: BTreeMap<String, Pool>,
    tokens: BTreeMap<String, AccessToken>,
    paid: BTreeMap<String, Paid>,
    /// Transactions whose purchase is being checked (not yet in `paid`).
    buying: BTreeSet<String>,
    /// token id → base units reserved by calls in flight (not persisted: a restart ends the calls).
    reserved: BTreeMap<String, u64>,
}

fn pool_key(id: &str) -> String {
    format!("pool/{id}")
}

fn token_key(id: &str) -> String {
    format!("token/{id}")
}

impl Pools {
    /// Reads back one row of [`Table::Pools`].
    pub fn restore_row(&mut self, key: &str, value: &[u8]) -> Result<(), RecordError> {
        if let Some(id) = key.strip_prefix("pool/") {
            self.pools.insert(id.to_owned(), store::decode(value)?);
        } else if let Some(id) = key.strip_prefix("token/") {
            self.tokens.insert(id.to_owned(), store::decode(value)?);
        } else if let Some(tx) = key.strip_prefix("paid/") {
            self.paid.insert(tx.to_owned(), store::decode(value)?);
        }
        Ok(())
    }

    /// Adds `pool`.
    pub fn create(&mut self, pool: Pool) -> Result<Change, PoolError> {
        if self.pools.len() >= POOL_MAX {
            return Err(PoolError::TooManyPools);
        }
        let change = Change::put(Table::Pools, &pool_key(&pool.pool_id), &pool);
        self.pools.insert(pool.pool_id.clone(), pool);
        Ok(change)
    }

    /// A pool.
    pub fn get(&self, pool_id: &str) -> Option<&Pool> {
        self.pools.get(pool_id)
    }

    /// Every pool, by id.
    pub fn all(&self) -> impl Iterator<Item = &Pool> {
        self.pools.values()
    }

    /// The tokens of `pool_id`.
    pub fn tokens_of<'a>(&'a self, pool_id: &'a str) -> impl Iterator<Item = &'a AccessToken> {
        self.tokens.values().filter(move |t| t.pool_id == pool_id)
    }

    fn update(
        &mut self,
        pool_id: &str,
        f: impl FnOnce(&mut Pool) -> Result<(), PoolError>,
    ) -> Result<Change, PoolError> {
        let pool = self.pools.get_mut(pool_id).ok_or(PoolError::NoPool)?;
        f(pool)?;
        Ok(Change::put(Table::Pools, &pool_key(pool_id), &*pool))
    }

    /// Adds `provider` to `pool_id`.
    pub fn add_provider(&mut self, pool_id: &str, provider: Provider) -> Result<Change, PoolError> {
        self.update(pool_id, |p| {
            if p.providers.len() >= POOL_PROVIDERS_MAX {
                return Err(PoolError::TooManyProviders);
            }
            p.providers.push(provider);
            Ok(())
        })
    }

    /// Changes a provider in place.
    pub fn set_provider(
        &mut self,
        pool_id: &str,
        provider_id: &str,
        f: impl FnOnce(&mut Provider),
    ) -> Result<Change, PoolError> {
        self.update(pool_id, |p| {
            let pv = p.providers.iter_mut().find(|v| v.provider_id == provider_id).ok_or(PoolError::NoProvider)?;
            f(pv);
            Ok(())
        })
    }

    /// Records the shard a pool was published as.
    pub fn set_shard(&mut self, pool_id: &str, shard_id: &str) -> Result<Change, PoolError> {
        self.update(pool_id, |p| {
            p.shard_id = Some(shard_id.to_owned());
            Ok(())
        })
    }

    /// Revokes a token: no more calls.
    pub fn revoke(&mut self, token_id: &str) -> Result<Change, PoolError> {
        let t = self.tokens.get_mut(token_id).ok_or(PoolError::NoToken)?;
        t.revoked = true;
        Ok(Change::put(Table::Pools, &token_key(token_id), &*t))
    }

    /// Holds `tx` while its payment is checked: a second purchase with it is refused until the
    /// first ends, and forever once it paid.
    pub fn begin_purchase(&mut self, tx: &str) -> Result<(), PoolError> {
        if self.paid.contains_key(tx) || self.buying.contains(tx) {
            return Err(PoolError::Reused);
        }
        if self.paid.len() + self.buying.len() >= POOL_PURCHASES_MAX {
            return Err(PoolError::TooManyPurchases);
        }
        self.buying.insert(tx.to_owned());
        Ok(())
    }

    /// A purchase whose payment was not credited lets its transaction go.
    pub fn abandon_purchase(&mut self, tx: &str) {
        self.buying.remove(tx);
    }

    /// Credits `units` paid by `tx` to `consumer`'s token in `pool_id` (a new one, `new_token_id`,
    /// when the consumer has none there); answers the token and the changes.
    pub fn credit(
        &mut self,
        purchase: &Purchase,
        units: u64,
        new_token_id: String,
        now_iso: &str,
    ) -> Result<(AccessToken, Vec<Change>), PoolError> {
        self.buying.remove(&purchase.tx_signature);
        if !self.pools.contains_key(&purchase.pool_id) {
            return Err(PoolError::NoPool);
        }
        let existing = self
            .tokens
            .values()
            .find(|t| t.pool_id == purchase.pool_id && t.consumer == purchase.consumer && !t.revoked)
            .map(|t| t.token_id.clone());
        let id = match existing {
            Some(id) => id,
            None if self.tokens.len() >= POOL_TOKENS_MAX => return Err(PoolError::TooManyTokens),
            None => {
                let token = AccessToken {
                    token_id: new_token_id.clone(),
                    pool_id: purchase.pool_id.clone(),
                    consumer: purchase.consumer.clone(),
                    balance: 0,
                    total_deposited: 0,
                    total_spent: 0,
                    calls_made: 0,
                    created_at: now_iso.to_owned(),
                    last_used: None,
                    revoked: false,
                };
                self.tokens.insert(new_token_id.clone(), token);
                new_token_id
            }
        };
        let t = self.tokens.get_mut(&id).ok_or(PoolError::NoToken)?;
        t.balance = t.balance.saturating_add(units);
        t.total_deposited = t.total_deposited.saturating_add(units);
        let paid = Paid { token_id: id.clone(), units };
        let changes = vec![
            Change::put(Table::Pools, &token_key(&id), &*t),
            Change::put(Table::Pools, &format!("paid/{}", purchase.tx_signature), &paid),
        ];
        self.paid.insert(purchase.tx_signature.clone(), paid);
        Ok((t.clone(), changes))
    }

    /// The token `token_id` of `pool_id`, usable (not revoked).
    pub fn token(&self, pool_id: &str, token_id: &str) -> Result<&AccessToken, PoolError> {
        let t = self.tokens.get(token_id).filter(|t| t.pool_id == pool_id).ok_or(PoolError::NoToken)?;
        if t.revoked {
            return Err(PoolError::Revoked);
        }
        Ok(t)
    }

    /// The provider a call to `path` goes to: the cheapest enabled one whose allowed paths cover it,
    /// then the one with fewest failures (0.5.3's order).
    pub fn select(&self, pool_id: &str, path: &str) -> Option<&Provider> {
        let pool = self.pools.get(pool_id)?;
        pool.providers
            .iter()
            .filter(|p| p.enabled && p.allowed_paths.iter().any(|a| path::under(path, a)))
            .min_by_key(|p| (p.price_per_call, p.failures))
    }

    /// What `token_id` can still spend: its balance less what calls in flight reserved.
    pub fn available(&self, token_id: &str) -> u64 {
        let balance = self.tokens.get(token_id).map_or(0, |t| t.balance);
        balance.saturating_sub(self.reserved.get(token_id).copied().unwrap_or(0))
    }

    /// Reserves `units` of `token_id` for a call, or refuses when they are not available: two calls
    /// that together exceed the balance cannot both start.
    pub fn reserve(&mut self, token_id: &str, units: u64) -> Result<(), PoolError> {
        if self.available(token_id) < units {
            return Err(PoolError::Insufficient);
        }
        *self.reserved.entry(token_id.to_owned()).or_insert(0) += units;
        Ok(())
    }

    /// Ends a call that reserved `reserved`: charges `charge` (at most the reservation), releases the
    /// rest, and counts the call against the provider (`served`: the upstream answered).
    pub fn settle(&mut self, call: &Settle<'_>, now_iso: &str) -> Vec<Change> {
        let charge = call.charge.min(call.reserved);
        if let Some(r) = self.reserved.get_mut(call.token_id) {
            *r = r.saturating_sub(call.reserved);
            if *r == 0 {
                self.reserved.remove(call.token_id);
            }
        }
        let mut changes = Vec::new();
        if let Some(t) = self.tokens.get_mut(call.token_id) {
            t.balance = t.balance.saturating_sub(charge);
            t.total_spent = t.total_spent.saturating_add(charge);
            t.calls_made += 1;
            t.last_used = Some(now_iso.to_owned());
            changes.push(Change::put(Table::Pools, &token_key(call.token_id), &*t));
        }
        let served = call.served;
        if let Ok(c) = self.set_provider(call.pool_id, call.provider_id, |p| match served {
            true => p.calls_served += 1,
            false => p.failures += 1,
        }) {
            changes.push(c);
        }
        changes
    }
}

/// How a call ended, for [`Pools::settle`].
pub struct Settle<'a> {
    /// The pool.
    pub pool_id: &'a str,
    /// The token charged.
    pub token_id: &'a str,
    /// The provider that took the call.
    pub provider_id: &'a str,
    /// What was reserved.
    pub reserved: u64,
    /// What the call costs.
    pub charge: u64,
    /// The upstream answered.
    pub served: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A SOL pool `pool-<i>` with no provider.
    fn empty_pool(i: usize) -> Pool {
        Pool {
            pool_id: format!("pool-{i}"),
            name: "n".into(),
            tags: vec![],
            description: String::new(),
            asset: "SOL".into(),
            decimals: 9,
            providers: vec![],
            created_at: String::new(),
            shard_id: None,
        }
    }

    fn pools_with_token(balance: u64) -> Pools {
        let mut p = Pools::default();
        p.create(empty_pool(1)).unwrap();
        let buy = Purchase {
            inbound: InboundId(1),
            pool_id: "pool-1".into(),
            consumer: "c".into(),
            tx_signature: "tx".into(),
        };
        p.begin_purchase("tx").unwrap();
        p.credit(&buy, balance, "at-1".into(), "").unwrap();
        p
    }

    #[test]
    fn concurrent_reservations_never_overdraw() {
        let mut p = pools_with_token(10);
        assert!(p.reserve("at-1", 10).is_ok());
        assert_eq!(p.reserve("at-1", 1), Err(PoolError::Insufficient), "the first call holds all of it");
        let call =
            Settle { pool_id: "pool-1", token_id: "at-1", provider_id: "pv", reserved: 10, charge: 0, served: false };
        p.settle(&call, "");
        assert_eq!(p.available("at-1"), 10, "a call that cost nothing gives its reservation back");
        p.reserve("at-1", 10).unwrap();
        let call = Settle { charge: 25, served: true, ..call };
        p.settle(&call, "");
        assert_eq!(p.token("pool-1", "at-1").unwrap().balance, 0, "never more than reserved");
    }

    #[test]
    fn pools_and_providers_are_bounded() {
        let mut p = Pools::default();
        let pool = empty_pool;
        for i in 0..POOL_MAX {
            p.create(pool(i)).unwrap();
        }
        assert_eq!(p.create(pool(POOL_MAX)), Err(PoolError::TooManyPools));
        let provider = |i: usize| Provider {
            provider_id: format!("pv-{i}"),
            base_url: "https://u".into(),
            credential_header: "authorization".into(),
            credential_sealed: vec![],
            allowed_paths: vec!["/v1".into()],
            allow_query: false,
            allowed_headers: vec![],
            price_per_call: 1 + i as u64,
            handler: Handler::Passthrough,
            charge_client_errors: false,
            enabled: true,
            calls_served: 0,
            failures: 0,
            added_at: String::new(),
        };
        for i in 0..POOL_PROVIDERS_MAX {
            p.add_provider("pool-0", provider(i)).unwrap();
        }
        assert_eq!(p.add_provider("pool-0", provider(99)), Err(PoolError::TooManyProviders));
        assert_eq!(p.select("pool-0", "/v1/x").unwrap().provider_id, "pv-0", "the cheapest");
        p.set_provider("pool-0", "pv-0", |v| v.enabled = false).unwrap();
        assert_eq!(p.select("pool-0", "/v1/x").unwrap().provider_id, "pv-1", "enabled ones only");
        assert!(p.select("pool-0", "/v2/x").is_none(), "outside every allowed path");
    }

    #[test]
    fn a_transaction_pays_once_and_tokens_are_bounded() {
        let mut p = pools_with_token(5);
        assert_eq!(p.begin_purchase("tx"), Err(PoolError::Reused));
        p.begin_purchase("tx2").unwrap();
        assert_eq!(p.begin_purchase("tx2"), Err(PoolError::Reused), "while it is checked");
        p.abandon_purchase("tx2");
        p.begin_purchase("tx2").unwrap();
        let buy = Purchase {
            inbound: InboundId(2),
            pool_id: "pool-1".into(),
            consumer: "c".into(),
            tx_signature: "tx2".into(),
        };
        let (t, _) = p.credit(&buy, 7, "at-2".into(), "").unwrap();
        assert_eq!((t.token_id.as_str(), t.balance), ("at-1", 12), "a purchase tops up the consumer's token");
        for i in 1..POOL_TOKENS_MAX {
            let tx = format!("t{i}");
            p.begin_purchase(&tx).unwrap();
            let buy = Purchase {
                inbound: InboundId(3),
                pool_id: "pool-1".into(),
                consumer: format!("c{i}"),
                tx_signature: tx,
            };
            p.credit(&buy, 1, format!("at-x{i}"), "").unwrap();
        }
        p.begin_purchase("last").unwrap();
        let buy = Purchase {
            inbound: InboundId(4),
            pool_id: "pool-1".into(),
            consumer: "new".into(),
            tx_signature: "last".into(),
        };
        assert_eq!(p.credit(&buy, 1, "at-last".into(), "").unwrap_err(), PoolError::TooManyTokens);
    }
}

/// Owner and consumer commands of pools (local only: never reachable from the peer port).
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AddProviderArgs {
    /// The pool.
    pub pool_id: String,
    /// Upstream base URL: https (http only to this machine).
    pub base_url: String,
    /// The header the credential goes in.
    pub credential_header: String,
    /// The credential; sealed at once, never answered or logged.
    pub credential_value: String,
    /// Path prefixes consumers may call.
    pub allowed_paths: Vec<String>,
    /// Whether a query string may follow the path.
    #[serde(default)]
    pub allow_query: bool,
    /// Request headers passed through (empty: the default list).
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    /// Price per call, decimal text in the pool's asset.
    pub price_per_call: String,
    /// `passthrough` (default) or `llm-tokens`.
    #[serde(default)]
    pub handler: Option<String>,
    /// `llm-tokens`: price per 1,000 input tokens, decimal text.
    #[serde(default)]
    pub input_per_1k: Option<String>,
    /// `llm-tokens`: price per 1,000 output tokens, decimal text.
    #[serde(default)]
    pub output_per_1k: Option<String>,
    /// Charge upstream 4xx answers too.
    #[serde(default)]
    pub charge_client_errors: bool,
}

impl std::fmt::Debug for AddProviderArgs {
    // The credential never reaches a log through a command's Debug.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AddProviderArgs")
            .field("pool_id", &self.pool_id)
            .field("base_url", &self.base_url)
            .field("credential_header", &self.credential_header)
            .field("credential_value", &"<redacted>")
            .finish_non_exhaustive()
    }
}

/// A pool command (`Command::Pool`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolCommand {
    /// A new pool, its balances in `price_token` (`SOL`, or a mint with `price_decimals`).
    Create {
        /// Name.
        name: String,
        /// Tags (`pool:` is added to those without it).
        tags: Vec<String>,
        /// Description.
        description: String,
        /// `SOL` (default) or a mint address.
        price_token: Option<String>,
        /// The mint's decimals (required for a mint).
        price_decimals: Option<u8>,
    },
    /// A provider for a pool.
    AddProvider(Box<AddProviderArgs>),
    /// Enable or disable a provider.
    SetProvider {
        /// The pool.
        pool_id: String,
        /// The provider.
        provider_id: String,
        /// Takes calls or not.
        enabled: bool,
    },
    /// Revoke an access token.
    Revoke {
        /// The token.
        token_id: String,
    },
    /// Our pools, their providers (no credentials) and tokens.
    List,
    /// Publish a pool as a shard tagged `pool:*` (updates the shard of an earlier publish).
    Publish {
        /// The pool.
        pool_id: String,
    },
    /// Consumer: ask `owner` (a connection) to credit a payment already made (`tx_signature`).
    Buy {
        /// The pool's owner.
        owner: String,
        /// The pool.
        pool_id: String,
        /// The amount paid, decimal text.
        amount: String,
        /// The transaction that paid it.
        tx_signature: String,
    },
    /// Consumer: one call through `owner`'s pool.
    Call {
        /// The pool's owner.
        owner: String,
        /// The pool.
        pool_id: String,
        /// Our token there.
        token_id: String,
        /// HTTP method.
        method: String,
        /// Path (and query, where allowed).
        path: String,
        /// Request headers.
        headers: BTreeMap<String, String>,
        /// Request body (text).
        body: Option<String>,
    },
    /// Consumer: `owner`'s public metadata of a pool.
    Info {
        /// The pool's owner.
        owner: String,
        /// The pool.
        pool_id: String,
    },
}
