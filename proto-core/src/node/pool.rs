//! Pools on the node (SPEC §22): the owner's local commands, the public routes `/pool_buy` (credits a
//! payment the wallet verified), `/pool_proxy` (a signed call, reserved, made by the runtime, settled)
//! and `/pool_info/<id>`, and the consumer's commands that call them.
//!
//! Both paid routes answer later: the request's id waits in the purchase (for the payment's verdict)
//! or in the call (for the upstream's answer), and is answered from `handle_payment_checked` or
//! [`Node::handle_upstream`].

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{Call, Node};
use crate::crypto;
use crate::error::{CommandError, Refusal};
use crate::io::{CheckId, InboundId, InboundRequest, Method, Output, PaymentCheck};
use crate::limits::{
    POOL_CALLS_IN_FLIGHT_MAX, POOL_HEADERS_MAX, POOL_RESPONSE_BYTES_MAX, POOL_UPSTREAM_TIMEOUT_MS,
    WALLET_RPC_TIMEOUT_MS,
};
use crate::payments::Purpose;
use crate::pool::meter::Handler;
use crate::pool::{
    headers, path, seal, AddProviderArgs, Pool, PoolCommand, PoolError, Pools, Provider, Purchase, Settle,
    UpstreamCall, UpstreamError, UpstreamId, UpstreamResponse,
};
use crate::replay::{check_fresh, sig_key};
use crate::sign::{v2_bytes, V2_POOL_BUY, V2_POOL_CALL};
use crate::wallet::{format_amount, parse_amount};
use crate::wire;

/// A call waiting for its upstream.
pub(crate) struct InFlight {
    inbound: InboundId,
    pool_id: String,
    token_id: String,
    provider_id: String,
    reserved: u64,
}

/// The node's pools and the calls in flight.
#[derive(Default)]
pub(crate) struct PoolState {
    pub(crate) pools: Pools,
    calls: BTreeMap<UpstreamId, InFlight>,
    next_call: u64,
}

#[derive(Deserialize)]
struct BuyBody {
    pool_id: String,
    consumer_agent_id: String,
    amount: Value,
    #[serde(default)]
    payment_token: Option<String>,
    #[serde(default)]
    tx_signature: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    dm_signature_hex: Option<String>,
}

#[derive(Deserialize)]
struct CallBody {
    pool_id: String,
    access_token: String,
    #[serde(default = "get")]
    method: String,
    path: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    timestamp: Option<String>,
    #[serde(default)]
    dm_signature_hex: Option<String>,
}

fn get() -> String {
    "GET".to_owned()
}

fn sha256_hex(bytes: &[u8]) -> String {
    crate::identity::lower_hex(&Sha256::digest(bytes))
}

fn amount_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn pool_refusal(e: PoolError) -> Refusal {
    match e {
        PoolError::NoPool | PoolError::NoProvider => Refusal::NotFound(e.to_string()),
        PoolError::NoToken | PoolError::Revoked => Refusal::Unauthorized(e.to_string()),
        PoolError::Insufficient => Refusal::PaymentRequired(e.to_string()),
        PoolError::Reused => Refusal::Conflict(e.to_string()),
        PoolError::TooManyPools
        | PoolError::TooManyProviders
        | PoolError::TooManyTokens
        | PoolError::TooManyPurchases => Refusal::Limited(e.to_string()),
    }
}

fn cmd_err(e: PoolError) -> CommandError {
    match e {
        PoolError::NoPool | PoolError::NoProvider | PoolError::NoToken => CommandError::NotFound(e.to_string()),
        other => CommandError::InvalidArgument(other.to_string()),
    }
}

impl Node {
    /// Routes the pool endpoints; `false` for any other path. A pool route answers itself (now, or
    /// once its payment or upstream call has an answer).
    pub(crate) fn pool_route(&mut self, r: &InboundRequest) -> bool {
        let Some(rest) = r.path.strip_prefix("/__darkmatter__/") else { return false };
        let result = match (rest, r.method) {
            ("pool_buy", Method::Post) => self.on_pool_buy(r),
            ("pool_proxy", Method::Post) => self.on_pool_proxy(r),
            ("pool_buy" | "pool_proxy", _) => Err(Refusal::BadMethod),
            (info, Method::Get) if info.starts_with("pool_info/") => {
                self.pool_info(&info["pool_info/".len()..]).map(|v| Some(wire::encode(&v)))
            }
            (info, _) if info.starts_with("pool_info/") => Err(Refusal::BadMethod),
            _ => return false,
        };
        match result {
            Ok(Some(body)) => self.reply(r.id, 200, body),
            // Answered later, from another input: this request's peer flag must not linger for the
            // next reply, and the later one claims no refund.
            Ok(None) => self.request_from_peer = false,
            Err(refusal) => self.refuse(r.id, refusal),
        }
        true
    }

    fn refuse(&mut self, id: InboundId, refusal: Refusal) {
        let body = wire::encode(&json!({"success": false, "error": refusal.to_string()}));
        self.reply(id, refusal.status(), body);
    }

    fn pool_info(&self, pool_id: &str) -> Result<Value, Refusal> {
        let pool = self.pool_state.pools.get(pool_id).ok_or_else(|| pool_refusal(PoolError::NoPool))?;
        let enabled: Vec<&Provider> = pool.providers.iter().filter(|p| p.enabled).collect();
        let endpoints: Vec<&String> = enabled.iter().flat_map(|p| p.allowed_paths.iter()).collect();
        let prices: Vec<Value> = enabled
            .iter()
            .map(|p| json!({"price_per_call": format_amount(p.price_per_call, pool.decimals), "price_token": pool.asset}))
            .collect();
        let min = enabled.iter().map(|p| p.price_per_call).min().unwrap_or(0);
        let handler = enabled.first().map_or("passthrough", |p| p.handler.name());
        Ok(json!({"pool_id": pool.pool_id, "name": pool.name, "tags": pool.tags, "description": pool.description,
            "handler_type": handler, "provider_count": enabled.len(), "endpoints": endpoints, "prices": prices,
            "created_at": pool.created_at, "owner_wallet": self.wallets.get("solana"),
            "min_purchase": format_amount(min.max(1), pool.decimals), "price_token": pool.asset,
            "decimals": pool.decimals}))
    }

    /// `POST /pool_buy`: a purchase is credited only for a payment the wallet verifies (R-H2).
    fn on_pool_buy(&mut self, r: &InboundRequest) -> Result<Option<Vec<u8>>, Refusal> {
        let b: BuyBody = serde_json::from_slice(&r.body).map_err(|e| Refusal::BadJson(e.to_string()))?;
        let pool = self.pool_state.pools.get(&b.pool_id).ok_or_else(|| pool_refusal(PoolError::NoPool))?;
        let (asset, decimals) = (pool.asset.clone(), pool.decimals);
        let Some(tx) = b.tx_signature.as_deref().map(str::trim).filter(|t| !t.is_empty() && t.len() <= 100) else {
            let to = self.wallets.get("solana").cloned().unwrap_or_default();
            return Err(Refusal::PaymentRequired(format!(
                "Payment required: pay {asset} to {to} and send tx_signature with a pool-buy signature"
            )));
        };
        let conn = self
            .connections
            .get(&b.consumer_agent_id)
            .ok_or_else(|| Refusal::Unauthorized("Consumer not connected".to_owned()))?;
        let (key, payer) = (conn.agent_id.clone(), conn.wallets.get("solana").cloned());
        let stamp = b.timestamp.as_deref().unwrap_or_default();
        let stamp_us = check_fresh(self.now.wall_us, stamp)?;
        let sig = b.dm_signature_hex.as_deref().unwrap_or_default();
        let bytes = v2_bytes(V2_POOL_BUY, &[&b.pool_id, &b.consumer_agent_id, tx, stamp]);
        crypto::verify_hex(&*self.signatures, key.key(), &bytes, sig)
            .map_err(|_| Refusal::Unauthorized("Invalid signature".to_owned()))?;
        self.admit(Some(&b.consumer_agent_id), r.source)?;
        let replay = self.replay.admit(&sig_key("pool-buy", sig), stamp_us, self.now.wall_us)?;
        self.persist(vec![replay]);
        if b.payment_token.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case(&asset)) {
            return Err(Refusal::Invalid(format!("This pool is paid in {asset}")));
        }
        let amount = amount_text(&b.amount).ok_or_else(|| Refusal::Invalid("amount".to_owned()))?;
        parse_amount(&amount, decimals).map_err(|e| Refusal::Invalid(format!("amount: {e}")))?;
        let payer = payer.ok_or_else(|| Refusal::Invalid("The consumer advertised no Solana wallet".to_owned()))?;
        self.pool_state.pools.begin_purchase(tx).map_err(pool_refusal)?;
        let purchase = Purchase {
            inbound: r.id,
            pool_id: b.pool_id.clone(),
            consumer: b.consumer_agent_id.clone(),
            tx_signature: tx.to_owned(),
        };
        let check = PaymentCheck {
            id: CheckId(0),
            credit_key: format!("pool:{}:{}", b.pool_id, tx),
            payer_wallet: payer,
            tx_signature: tx.to_owned(),
            token: asset,
            amount,
            memo: None,
        };
        match self.payments.start(Purpose::PoolBuy(purchase), check) {
            Ok(check) => {
                self.push_check(check);
                Ok(None)
            }
            Err(e) => {
                self.pool_state.pools.abandon_purchase(tx);
                Err(Refusal::Unavailable(e.to_string()))
            }
        }
    }

    /// The wallet's verdict on a purchase's payment: credited, or 402 (503 when it could not say).
    pub(crate) fn on_purchase_verdict(&mut self, purchase: Purchase, verdict: crate::io::PaymentVerdict) {
        use crate::io::PaymentVerdict as V;
        let units = match verdict {
            V::Verified(units) => units,
            V::Refused(why) => {
                self.pool_state.pools.abandon_purchase(&purchase.tx_signature);
                // A transaction another purchase or notice was credited with stays a conflict.
                let refusal = match why.contains("already credited") {
                    true => Refusal::Conflict(why),
                    false => Refusal::PaymentRequired(format!("Payment not verified: {why}")),
                };
                return self.refuse(purchase.inbound, refusal);
            }
            V::Unavailable(why) => {
                self.pool_state.pools.abandon_purchase(&purchase.tx_signature);
                return self.refuse(purchase.inbound, Refusal::Unavailable(format!("Payment not checked: {why}")));
            }
        };
        let token_id = format!("at-{}", self.random_hex(16));
        let now = self.now.iso();
        match self.pool_state.pools.credit(&purchase, units, token_id, &now) {
            Ok((token, changes)) => {
                self.persist(changes);
                let decimals = self.pool_state.pools.get(&purchase.pool_id).map_or(9, |p| p.decimals);
                let asset = self.pool_state.pools.get(&purchase.pool_id).map(|p| p.asset.clone());
                let body = json!({"success": true, "token_id": token.token_id, "pool_id": token.pool_id,
                    "balance": format_amount(token.balance, decimals), "balance_units": token.balance,
                    "payment_token": asset, "credited": format_amount(units, decimals), "credited_units": units,
                    "tx_signature": purchase.tx_signature});
                self.reply(purchase.inbound, 200, wire::encode(&body));
            }
            Err(e) => self.refuse(purchase.inbound, pool_refusal(e)),
        }
    }

    /// `POST /pool_proxy`: a call signed by the token's consumer, reserved, then made by the runtime.
    fn on_pool_proxy(&mut self, r: &InboundRequest) -> Result<Option<Vec<u8>>, Refusal> {
        let b: CallBody = serde_json::from_slice(&r.body).map_err(|e| Refusal::BadJson(e.to_string()))?;
        let token = self.pool_state.pools.token(&b.pool_id, &b.access_token).map_err(pool_refusal)?.clone();
        let conn = self
            .connections
            .get(&token.consumer)
            .ok_or_else(|| Refusal::Unauthorized("Consumer not connected".to_owned()))?;
        let key = conn.agent_id.clone();
        let method = b.method.to_ascii_uppercase();
        let body = b.body.clone().unwrap_or_default().into_bytes();
        let stamp = b.timestamp.as_deref().unwrap_or_default();
        let stamp_us = check_fresh(self.now.wall_us, stamp)?;
        let sig = b.dm_signature_hex.as_deref().unwrap_or_default();
        let bytes = v2_bytes(V2_POOL_CALL, &[&b.pool_id, &b.access_token, &method, &b.path, &sha256_hex(&body), stamp]);
        // Only the consumer the token was sold to can spend it: a token seen by anyone else is useless.
        crypto::verify_hex(&*self.signatures, key.key(), &bytes, sig)
            .map_err(|_| Refusal::Unauthorized("Invalid signature: not this token's consumer".to_owned()))?;
        self.admit(Some(&token.consumer), r.source)?;
        self.admit_peer(&token.consumer)?;
        let replay = self.replay.admit(&sig_key("pool-call", sig), stamp_us, self.now.wall_us)?;
        self.persist(vec![replay]);
        if !matches!(method.as_str(), "GET" | "POST" | "PUT" | "PATCH" | "DELETE") {
            return Err(Refusal::Invalid("method must be GET, POST, PUT, PATCH or DELETE".to_owned()));
        }
        if b.headers.len() > POOL_HEADERS_MAX {
            return Err(Refusal::Invalid(format!("at most {POOL_HEADERS_MAX} headers")));
        }
        if self.pool_state.calls.len() >= POOL_CALLS_IN_FLIGHT_MAX {
            return Err(Refusal::Limited("Too many pool calls in flight".to_owned()));
        }
        let query_ok = |p: &Provider| p.allow_query;
        let any_query = self.pool_state.pools.get(&b.pool_id).is_some_and(|p| p.providers.iter().any(query_ok));
        let path = path::normalise(&b.path, any_query).map_err(|e| Refusal::Invalid(e.to_string()))?;
        let provider = self
            .pool_state
            .pools
            .select(&b.pool_id, &path)
            .filter(|p| p.allow_query || !path.contains('?'))
            .cloned()
            .ok_or_else(|| Refusal::NotFound("No provider available for this path".to_owned()))?;
        let reserved = provider.handler.estimate(provider.price_per_call, &body);
        self.pool_state.pools.reserve(&token.token_id, reserved).map_err(pool_refusal)?;
        let credential = match seal::open(&self.passport, &provider.provider_id, &provider.credential_sealed) {
            Ok(c) => c,
            Err(e) => {
                self.unreserve(&b.pool_id, &token.token_id, &provider.provider_id, reserved);
                return Err(Refusal::BadGateway(e.to_string()));
            }
        };
        let consumer_headers: Vec<(String, String)> = b.headers.into_iter().collect();
        let headers =
            headers::upstream(&consumer_headers, &provider.allowed_headers, &provider.credential_header, &credential);
        self.pool_state.next_call += 1;
        let id = UpstreamId(self.pool_state.next_call);
        let url = format!("{}{}", provider.base_url.trim_end_matches('/'), path);
        let flight = InFlight {
            inbound: r.id,
            pool_id: b.pool_id,
            token_id: token.token_id,
            provider_id: provider.provider_id,
            reserved,
        };
        self.pool_state.calls.insert(id, flight);
        let call = UpstreamCall {
            id,
            method,
            url,
            headers,
            body,
            timeout_ms: POOL_UPSTREAM_TIMEOUT_MS,
            response_bytes_max: POOL_RESPONSE_BYTES_MAX,
        };
        self.push_output(Output::Upstream(call));
        Ok(None)
    }

    fn unreserve(&mut self, pool_id: &str, token_id: &str, provider_id: &str, reserved: u64) {
        let settle = Settle { pool_id, token_id, provider_id, reserved, charge: 0, served: false };
        let now = self.now.iso();
        let changes = self.pool_state.pools.settle(&settle, &now);
        self.persist(changes);
    }

    /// The runtime's answer to upstream call `id`: settle what it costs (nothing unless it succeeded,
    /// by the provider's metering) and answer the consumer.
    pub fn handle_upstream(
        &mut self,
        now: crate::Now,
        id: UpstreamId,
        result: Result<UpstreamResponse, UpstreamError>,
    ) {
        self.now = now;
        let Some(f) = self.pool_state.calls.remove(&id) else { return };
        let Some(pool) = self.pool_state.pools.get(&f.pool_id) else { return };
        let provider = pool.providers.iter().find(|p| p.provider_id == f.provider_id).cloned();
        let decimals = pool.decimals;
        let charge = match (&result, &provider) {
            (Ok(r), Some(p)) if (200..300).contains(&r.status) => p.handler.cost(p.price_per_call, f.reserved, &r.body),
            (Ok(r), Some(p)) if p.charge_client_errors && (400..500).contains(&r.status) => p.price_per_call,
            _ => 0,
        };
        let settle = Settle {
            pool_id: &f.pool_id,
            token_id: &f.token_id,
            provider_id: &f.provider_id,
            reserved: f.reserved,
            charge,
            served: result.is_ok(),
        };
        let iso = self.now.iso();
        let changes = self.pool_state.pools.settle(&settle, &iso);
        self.persist(changes);
        let left = self.pool_state.pools.available(&f.token_id);
        match result {
            Ok(r) => {
                let shown: serde_json::Map<String, Value> =
                    headers::downstream(&r.headers).into_iter().map(|(n, v)| (n, Value::String(v))).collect();
                let body = json!({"success": true, "status_code": r.status, "headers": shown,
                    "body_b64": base64::engine::general_purpose::STANDARD.encode(&r.body),
                    "balance_remaining": format_amount(left, decimals), "balance_remaining_units": left,
                    "charged_units": charge.min(f.reserved)});
                self.reply(f.inbound, 200, wire::encode(&body));
            }
            Err(e) => self.refuse(f.inbound, Refusal::BadGateway(e.to_string())),
        }
    }

    /// A pool command (local only).
    pub(crate) fn cmd_pool(&mut self, id: crate::io::CommandId, c: PoolCommand) -> Result<Option<Value>, CommandError> {
        Ok(Some(match c {
            PoolCommand::Create { name, tags, description, price_token, price_decimals } => {
                self.cmd_pool_create(name, tags, description, price_token, price_decimals)?
            }
            PoolCommand::AddProvider(args) => self.cmd_pool_add_provider(*args)?,
            PoolCommand::SetProvider { pool_id, provider_id, enabled } => {
                let change = self
                    .pool_state
                    .pools
                    .set_provider(&pool_id, &provider_id, |p| p.enabled = enabled)
                    .map_err(cmd_err)?;
                self.persist(vec![change]);
                json!({"success": true, "pool_id": pool_id, "provider_id": provider_id, "enabled": enabled})
            }
            PoolCommand::Revoke { token_id } => {
                let change = self.pool_state.pools.revoke(&token_id).map_err(cmd_err)?;
                self.persist(vec![change]);
                json!({"success": true, "token_id": token_id, "revoked": true})
            }
            PoolCommand::List => self.cmd_pool_list(),
            PoolCommand::Publish { pool_id } => self.cmd_pool_publish(&pool_id)?,
            PoolCommand::Buy { owner, pool_id, amount, tx_signature } => {
                self.cmd_pool_buy(id, &owner, &pool_id, &amount, &tx_signature)?;
                return Ok(None);
            }
            PoolCommand::Call { owner, pool_id, token_id, method, path, headers, body } => {
                let call = ConsumerCall { pool_id, token_id, method, path, headers, body };
                self.cmd_pool_call(id, &owner, call)?;
                return Ok(None);
            }
            PoolCommand::Info { owner, pool_id } => {
                let url = self.owner_url(&owner)?;
                let url = crate::url::endpoint(&url, &format!("pool_info/{pool_id}"));
                self.transmit(Method::Get, url, Vec::new(), WALLET_RPC_TIMEOUT_MS, false, Call::Pool { cmd: id });
                return Ok(None);
            }
        }))
    }

    fn cmd_pool_create(
        &mut self,
        name: String,
        tags: Vec<String>,
        description: String,
        price_token: Option<String>,
        price_decimals: Option<u8>,
    ) -> Result<Value, CommandError> {
        let bad = |m: &str| CommandError::InvalidArgument(m.to_owned());
        let name = name.trim().to_owned();
        if name.is_empty() || name.chars().count() > crate::limits::DISPLAY_NAME_CHARS_MAX {
            return Err(bad("name must be 1 to 100 characters"));
        }
        let (asset, decimals) = match price_token.as_deref().map(str::trim) {
            None | Some("") => ("SOL".to_owned(), 9),
            Some(t) if t.eq_ignore_ascii_case("SOL") => ("SOL".to_owned(), 9),
            Some(mint) => {
                crate::wallet::Pubkey::from_base58(mint)
                    .map_err(|_| bad("price_token must be SOL or a mint address"))?;
                let d = price_decimals.ok_or_else(|| bad("price_decimals is required for a mint"))?;
                if d > crate::limits::WALLET_DECIMALS_MAX {
                    return Err(bad("price_decimals must be at most 18"));
                }
                (mint.to_owned(), d)
            }
        };
        let mut tags: Vec<String> = tags
            .into_iter()
            .map(|t| t.trim().to_ascii_lowercase())
            .filter(|t| !t.is_empty())
            .map(|t| if t.starts_with("pool") { t } else { format!("pool:{t}") })
            .collect();
        if !tags.iter().any(|t| t == "pool") {
            tags.insert(0, "pool".to_owned());
        }
        let pool = Pool {
            pool_id: format!("pool-{}", self.random_hex(6)),
            name,
            tags,
            description,
            asset,
            decimals,
            providers: Vec::new(),
            created_at: self.now.iso(),
            shard_id: None,
        };
        let change = self.pool_state.pools.create(pool.clone()).map_err(cmd_err)?;
        self.persist(vec![change]);
        Ok(json!({"success": true, "pool_id": pool.pool_id, "name": pool.name, "tags": pool.tags,
            "price_token": pool.asset, "decimals": pool.decimals}))
    }

    fn cmd_pool_add_provider(&mut self, a: AddProviderArgs) -> Result<Value, CommandError> {
        let bad = |m: String| CommandError::InvalidArgument(m);
        let pool = self.pool_state.pools.get(&a.pool_id).ok_or_else(|| cmd_err(PoolError::NoPool))?;
        let decimals = pool.decimals;
        crate::url::validate(&a.base_url).map_err(|e| bad(format!("base_url: {e}")))?;
        if !upstream_url_allowed(&a.base_url) {
            return Err(bad("base_url must be https (http only to 127.0.0.1 or localhost)".to_owned()));
        }
        if !headers::valid_name(&a.credential_header) || a.credential_value.is_empty() {
            return Err(bad("credential_header must be a header name and credential_value non-empty".to_owned()));
        }
        if a.allowed_paths.is_empty() || a.allowed_paths.iter().any(|p| path::normalise(p, false).is_err()) {
            return Err(bad("allowed_paths must be one or more paths starting with /".to_owned()));
        }
        let price = |t: &str| parse_amount(t, decimals).map_err(|e| bad(format!("price: {e}")));
        let price_per_call = match a.price_per_call.trim() {
            "0" => 0,
            t => price(t)?,
        };
        let handler = match a.handler.as_deref().unwrap_or("passthrough") {
            "passthrough" => Handler::Passthrough,
            "llm-tokens" => Handler::LlmTokens {
                input_per_1k: price(a.input_per_1k.as_deref().unwrap_or_default())?,
                output_per_1k: price(a.output_per_1k.as_deref().unwrap_or_default())?,
            },
            other => return Err(bad(format!("unknown handler '{other}' (passthrough, llm-tokens)"))),
        };
        if price_per_call == 0 && handler == Handler::Passthrough {
            return Err(bad("price_per_call must be above zero".to_owned()));
        }
        let provider_id = format!("pv-{}", self.random_hex(6));
        let mut nonce = [0u8; seal::NONCE_BYTES];
        // A nonce must never repeat under one key: only the OS source will do, never the seeded one.
        let entropy = self.entropy.clone().ok_or_else(|| bad(seal::SealError::NoEntropy.to_string()))?;
        entropy.fill(&mut nonce).map_err(|_| bad(seal::SealError::NoEntropy.to_string()))?;
        let sealed =
            seal::seal(&self.passport, nonce, &provider_id, &a.credential_value).map_err(|e| bad(e.to_string()))?;
        let provider = Provider {
            provider_id: provider_id.clone(),
            base_url: a.base_url.trim_end_matches('/').to_owned(),
            credential_header: a.credential_header.to_ascii_lowercase(),
            credential_sealed: sealed,
            allowed_paths: a.allowed_paths,
            allow_query: a.allow_query,
            allowed_headers: a.allowed_headers,
            price_per_call,
            handler,
            charge_client_errors: a.charge_client_errors,
            enabled: true,
            calls_served: 0,
            failures: 0,
            added_at: self.now.iso(),
        };
        let change = self.pool_state.pools.add_provider(&a.pool_id, provider).map_err(cmd_err)?;
        self.persist(vec![change]);
        Ok(json!({"success": true, "pool_id": a.pool_id, "provider_id": provider_id}))
    }

    fn cmd_pool_list(&self) -> Value {
        let pools: Vec<Value> = self
            .pool_state
            .pools
            .all()
            .map(|p| {
                let providers: Vec<Value> = p
                    .providers
                    .iter()
                    .map(|v| {
                        json!({"provider_id": v.provider_id, "base_url": v.base_url,
                        "credential_header": v.credential_header, "allowed_paths": v.allowed_paths,
                        "price_per_call": format_amount(v.price_per_call, p.decimals), "handler": v.handler.name(),
                        "enabled": v.enabled, "calls_served": v.calls_served, "failures": v.failures})
                    })
                    .collect();
                let tokens: Vec<Value> = self
                    .pool_state
                    .pools
                    .tokens_of(&p.pool_id)
                    .map(|t| {
                        json!({"token_id": t.token_id, "consumer_agent_id": t.consumer,
                        "balance": format_amount(t.balance, p.decimals), "balance_units": t.balance,
                        "total_deposited_units": t.total_deposited, "total_spent_units": t.total_spent,
                        "calls_made": t.calls_made, "revoked": t.revoked})
                    })
                    .collect();
                json!({"pool_id": p.pool_id, "name": p.name, "tags": p.tags, "description": p.description,
                    "price_token": p.asset, "decimals": p.decimals, "shard_id": p.shard_id,
                    "providers": providers, "tokens": tokens})
            })
            .collect();
        json!({"success": true, "pools": pools})
    }

    fn cmd_pool_publish(&mut self, pool_id: &str) -> Result<Value, CommandError> {
        let info = self.pool_info(pool_id).map_err(|_| cmd_err(PoolError::NoPool))?;
        let pool = self.pool_state.pools.get(pool_id).ok_or_else(|| cmd_err(PoolError::NoPool))?;
        let content = format!(
            "Pool: {}\n{}\npool_id: {}\nowner: {}\nendpoints: {}\nprices: {}\nbuy: POST /__darkmatter__/pool_buy; info: GET /__darkmatter__/pool_info/{}",
            pool.name, pool.description, pool.pool_id, self.me(), info["endpoints"], info["prices"], pool.pool_id
        );
        let args = crate::shards::ShardArgs {
            content,
            tags: pool.tags.clone(),
            trust_threshold: 0.0,
            summary: Some(format!("Pool {} ({})", pool.name, pool.pool_id)),
        };
        let synced = match pool.shard_id.clone() {
            Some(shard) if self.cmd_update_shard(&shard, args.clone()).is_ok() => {
                self.cmd_update_shard(&shard, args)?
            }
            _ => self.cmd_create_shard(args)?,
        };
        let change = self.pool_state.pools.set_shard(pool_id, &synced.shard_id).map_err(cmd_err)?;
        self.persist(vec![change]);
        Ok(json!({"success": true, "pool_id": pool_id, "shard_id": synced.shard_id, "tags": synced.tags}))
    }

    fn owner_url(&self, owner: &str) -> Result<String, CommandError> {
        self.connections
            .get(owner)
            .map(|c| c.url.clone())
            .ok_or_else(|| CommandError::NotFound(format!("Not connected to agent '{owner}'")))
    }

    fn cmd_pool_buy(
        &mut self,
        id: crate::io::CommandId,
        owner: &str,
        pool_id: &str,
        amount: &str,
        tx: &str,
    ) -> Result<(), CommandError> {
        let url = crate::url::endpoint(&self.owner_url(owner)?, "pool_buy");
        let stamp = self.now.iso();
        let me = self.me().to_owned();
        let bytes = v2_bytes(V2_POOL_BUY, &[pool_id, &me, tx, &stamp]);
        let sig = crypto::sign_hex(&*self.signatures, &self.passport, &bytes);
        let body = json!({"pool_id": pool_id, "consumer_agent_id": me, "amount": amount, "tx_signature": tx,
            "timestamp": stamp, "dm_signature_hex": sig});
        self.transmit(Method::Post, url, wire::encode(&body), POOL_UPSTREAM_TIMEOUT_MS, false, Call::Pool { cmd: id });
        Ok(())
    }

    fn cmd_pool_call(&mut self, id: crate::io::CommandId, owner: &str, c: ConsumerCall) -> Result<(), CommandError> {
        let url = crate::url::endpoint(&self.owner_url(owner)?, "pool_proxy");
        let stamp = self.now.iso();
        let method = c.method.to_ascii_uppercase();
        let body_bytes = c.body.clone().unwrap_or_default().into_bytes();
        let bytes =
            v2_bytes(V2_POOL_CALL, &[&c.pool_id, &c.token_id, &method, &c.path, &sha256_hex(&body_bytes), &stamp]);
        let sig = crypto::sign_hex(&*self.signatures, &self.passport, &bytes);
        // 0.5.3's body, plus the signature fields 0.5.3 ignores.
        let body = json!({"pool_id": c.pool_id, "access_token": c.token_id, "method": method, "path": c.path,
            "headers": c.headers, "body": c.body, "timestamp": stamp, "dm_signature_hex": sig});
        // The owner waits for its upstream: give it that long and a little more.
        let timeout = POOL_UPSTREAM_TIMEOUT_MS + 5_000;
        self.transmit(Method::Post, url, wire::encode(&body), timeout, false, Call::Pool { cmd: id });
        Ok(())
    }

    /// The owner's answer to a consumer command: its JSON, with the HTTP status.
    pub(crate) fn on_pool_answer(
        &mut self,
        cmd: crate::io::CommandId,
        result: Result<crate::io::HttpResponse, String>,
    ) {
        let out = match result {
            Ok(r) => {
                let mut v: Value = serde_json::from_slice(&r.body).unwrap_or_else(|_| json!({}));
                if !v.is_object() {
                    v = json!({"answer": v});
                }
                v["http_status"] = json!(r.status);
                Ok(crate::output::CommandOutput::Pool(Box::new(v)))
            }
            Err(e) => Err(CommandError::Peer(format!("pool owner unreachable: {e}"))),
        };
        self.done(cmd, out);
    }
}

/// A consumer's call, as the command gives it.
struct ConsumerCall {
    pool_id: String,
    token_id: String,
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: Option<String>,
}

/// https, or http to this machine (a local upstream in tests, a local model server).
fn upstream_url_allowed(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return true;
    }
    ["http://127.0.0.1", "http://localhost", "http://[::1]"].iter().any(|p| {
        lower.strip_prefix(p).is_some_and(|rest| rest.is_empty() || rest.starts_with(':') || rest.starts_with('/'))
    })
}
