// A Solana JSON-RPC endpoint over LiteSVM (a real SVM: System, Token, Token-2022, ATA and Memo programs,
// signature and blockhash checks on), for the wallet tests. Loopback only; prints {"port":N} once listening
// and exits when stdin closes (so a test that dies takes it along).
//
// Methods: the wallet's (getBalance, getAccountInfo, getTokenAccountsByOwner, getLatestBlockhash,
// getBlockHeight, sendTransaction, getSignatureStatuses, getTransaction), requestAirdrop, and two test
// hooks that write accounts directly: dm_setMint {address, decimals, program}, dm_setTokenAccount
// {address, mint, owner, amount, program}.
"use strict";

const http = require("node:http");
const { LiteSVM } = require("litesvm");
const {
  address,
  getBase58Decoder,
  getBase58Encoder,
  getCompiledTransactionMessageDecoder,
  getTransactionDecoder,
  lamports,
} = require("@solana/kit");

const TOKEN = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
const TOKEN_2022 = "TokenzQdBNbLqP5VEhdkAS6EPFLC1PHnBqCXEpPxuEb";
const BODY_MAX = 1 << 20;
// Blocks a blockhash stays valid, as on a real cluster.
const BLOCKHASH_LIFETIME = 150n;

const svm = new LiteSVM();
const b58 = getBase58Decoder(); // bytes -> text
const b58bytes = getBase58Encoder(); // text -> bytes
let height = 1n;
const history = new Map(); // signature -> landed transaction record

function tokenAccountFields(account) {
  if (!account || account.exists === false) return null;
  const owner = String(account.programAddress);
  if ((owner !== TOKEN && owner !== TOKEN_2022) || account.data.length < 165) return null;
  const data = Buffer.from(account.data);
  return {
    mint: b58.decode(data.subarray(0, 32)),
    owner: b58.decode(data.subarray(32, 64)),
    amount: data.readBigUInt64LE(64),
    programId: owner,
  };
}

function getAccount(key) {
  const account = svm.getAccount(address(key));
  return account && account.exists !== false ? account : null;
}

function snapshot(keys) {
  const balances = keys.map((k) => Number(svm.getBalance(address(k)) ?? 0n));
  const tokens = [];
  keys.forEach((k, accountIndex) => {
    const fields = tokenAccountFields(getAccount(k));
    if (!fields) return;
    tokens.push({
      accountIndex,
      mint: fields.mint,
      owner: fields.owner,
      programId: fields.programId,
      uiTokenAmount: { amount: fields.amount.toString() },
    });
  });
  return { balances, tokens };
}

function decodeTransaction(bytes) {
  const tx = getTransactionDecoder().decode(bytes);
  const message = getCompiledTransactionMessageDecoder().decode(tx.messageBytes);
  const signature = b58.decode(Object.values(tx.signatures)[0]);
  return { tx, message, signature, keys: message.staticAccounts.map(String) };
}

function errorOf(result) {
  if (typeof result.err !== "function") return null;
  return { SvmError: String(result.err()) };
}

function sendTransaction([encoded, options = {}]) {
  const bytes = Buffer.from(encoded, "base64");
  const { tx, message, signature, keys } = decodeTransaction(bytes);
  if (!options.skipPreflight) {
    const simulated = svm.simulateTransaction(tx);
    const err = errorOf(simulated);
    if (err) throw rpcError(-32002, `Transaction simulation failed: ${JSON.stringify(err)}`);
  }
  const pre = snapshot(keys);
  const result = svm.sendTransaction(tx);
  const err = errorOf(result);
  if (err && String(result.err()).includes("BlockhashNotFound")) throw rpcError(-32002, "Blockhash not found");
  const post = snapshot(keys);
  height += 1n;
  history.set(signature, {
    slot: Number(height),
    blockTime: Math.floor(Date.now() / 1000),
    bytes,
    version: message.version === "legacy" ? "legacy" : message.version,
    err,
    pre,
    post,
  });
  svm.expireBlockhash(); // the next transaction gets a new blockhash, as on a cluster
  return signature;
}

function getTransaction([signature]) {
  const landed = history.get(signature);
  if (!landed) return null;
  return {
    slot: landed.slot,
    blockTime: landed.blockTime,
    version: landed.version,
    transaction: [landed.bytes.toString("base64"), "base64"],
    meta: {
      err: landed.err,
      fee: 5000,
      preBalances: landed.pre.balances,
      postBalances: landed.post.balances,
      preTokenBalances: landed.pre.tokens,
      postTokenBalances: landed.post.tokens,
      loadedAddresses: { writable: [], readonly: [] },
    },
  };
}

function encodeAccount(account) {
  return {
    lamports: Number(account.lamports),
    owner: String(account.programAddress),
    data: [Buffer.from(account.data).toString("base64"), "base64"],
    executable: account.executable,
    rentEpoch: 0,
    space: account.data.length,
  };
}

function context(value) {
  return { context: { slot: Number(height) }, value };
}

function tokenAccountsByOwner([owner, filter]) {
  const found = [];
  for (const program of [TOKEN, TOKEN_2022]) {
    for (const account of svm.getProgramAccounts(address(program))) {
      const fields = tokenAccountFields(account);
      if (fields && fields.owner === owner && (!filter.mint || fields.mint === filter.mint)) {
        found.push({ pubkey: String(account.address), account: encodeAccount(account) });
      }
    }
  }
  return context(found);
}

function setAccount(key, program, data) {
  svm.setAccount({
    address: address(key),
    data,
    executable: false,
    lamports: lamports(svm.minimumBalanceForRentExemption(BigInt(data.length))),
    programAddress: address(program),
    space: BigInt(data.length),
  });
}

function setMint({ address: key, decimals, program = TOKEN }) {
  const data = Buffer.alloc(82);
  data.writeBigUInt64LE(1n << 40n, 36); // supply
  data[44] = decimals;
  data[45] = 1; // initialized
  setAccount(key, program, data);
  return null;
}

function setTokenAccount({ address: key, mint, owner, amount, program = TOKEN }) {
  const data = Buffer.alloc(165);
  Buffer.from(b58bytes.encode(mint)).copy(data, 0);
  Buffer.from(b58bytes.encode(owner)).copy(data, 32);
  data.writeBigUInt64LE(BigInt(amount), 64);
  data[108] = 1; // initialized
  setAccount(key, program, data);
  return null;
}

function signatureStatuses([signatures]) {
  return context(
    signatures.map((s) => {
      const landed = history.get(s);
      if (!landed) return null;
      return { slot: landed.slot, confirmations: null, err: landed.err, confirmationStatus: "finalized" };
    }),
  );
}

const methods = {
  getBalance: ([key]) => context(Number(svm.getBalance(address(key)) ?? 0n)),
  getAccountInfo: ([key]) => {
    const account = getAccount(key);
    return context(account ? encodeAccount(account) : null);
  },
  getTokenAccountsByOwner: tokenAccountsByOwner,
  getLatestBlockhash: () =>
    context({ blockhash: String(svm.latestBlockhash()), lastValidBlockHeight: Number(height + BLOCKHASH_LIFETIME) }),
  getBlockHeight: () => Number(height),
  sendTransaction,
  getSignatureStatuses: signatureStatuses,
  getTransaction,
  requestAirdrop: ([key, amount]) => {
    const result = svm.airdrop(address(key), lamports(BigInt(amount)));
    if (!result || errorOf(result)) throw rpcError(-32000, "airdrop failed");
    return b58.decode(result.signature());
  },
  dm_setMint: ([spec]) => setMint(spec),
  dm_setTokenAccount: ([spec]) => setTokenAccount(spec),
};

function rpcError(code, message) {
  const e = new Error(message);
  e.rpcCode = code;
  return e;
}

function answer(request) {
  const reply = { jsonrpc: "2.0", id: request.id ?? null };
  const method = methods[request.method];
  if (!method) return { ...reply, error: { code: -32601, message: "Method not found" } };
  try {
    return { ...reply, result: method(request.params || []) };
  } catch (e) {
    return { ...reply, error: { code: e.rpcCode ?? -32603, message: String(e.message || e) } };
  }
}

const server = http.createServer((req, res) => {
  const chunks = [];
  let size = 0;
  req.on("data", (c) => {
    size += c.length;
    if (size > BODY_MAX) req.destroy();
    else chunks.push(c);
  });
  req.on("end", () => {
    let reply;
    try {
      reply = answer(JSON.parse(Buffer.concat(chunks).toString("utf8")));
    } catch (e) {
      reply = { jsonrpc: "2.0", id: null, error: { code: -32700, message: "Parse error" } };
    }
    const body = JSON.stringify(reply, (_, v) => (typeof v === "bigint" ? Number(v) : v));
    res.writeHead(200, { "Content-Type": "application/json", "Content-Length": Buffer.byteLength(body) });
    res.end(body);
  });
});

server.listen(0, "127.0.0.1", () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + "\n");
});
process.stdin.on("end", () => process.exit(0));
process.stdin.resume();
