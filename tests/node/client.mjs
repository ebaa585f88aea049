// A Node.js client for ordo, built only from the .proto files in proto/.
//
//   node tests/node/client.mjs <coordinator address> [run id]
//   node tests/node/client.mjs --hash <hex key>...   (routing self-check)
//
// Against a running cluster it: asks the coordinator for the shard map and
// shard addresses (ClusterInfo); submits one transaction of two PUTs (a text
// value and an int value) waiting for WAIT_FOR_APPLIED, then the same request
// id again (exactly-once: a duplicate answer with the same position); routes
// each key to its shard with ordo's partitioner (BLAKE2b-64 of the key's hash
// tag, mod shard_count) and reads it there with Get and min_position = the
// commit's position; checks that every other shard refuses the key with
// FAILED_PRECONDITION; and watches the transaction's key prefix on every
// shard from that position until each shard's progress has passed it.
//
// Every result is one JSON object per line on stdout; the last line is
// {"event": "done"}. Errors go to stderr and the exit code is not 0.

import { randomUUID } from "node:crypto";
import path from "node:path";
import { fileURLToPath } from "node:url";

import grpc from "@grpc/grpc-js";
import protoLoader from "@grpc/proto-loader";

const here = path.dirname(fileURLToPath(import.meta.url));
const PROTO_DIR = path.resolve(here, "..", "..", "proto");
const CALL_TIMEOUT_MS = 15_000;

// ------------------------------------------------------------- BLAKE2b-64
// RFC 7693 BLAKE2b with an 8-byte digest (the digest length is a parameter
// of the hash, so this is not a truncated blake2b512), in BigInt arithmetic.

const MASK64 = (1n << 64n) - 1n;
const IV = [
  0x6a09e667f3bcc908n, 0xbb67ae8584caa73bn, 0x3c6ef372fe94f82bn, 0xa54ff53a5f1d36f1n,
  0x510e527fade682d1n, 0x9b05688c2b3e6c1fn, 0x1f83d9abfb41bd6bn, 0x5be0cd19137e2179n,
];
const SIGMA = [
  [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
  [14, 10, 4, 8, 9, 15, 13, 6, 1, 12, 0, 2, 11, 7, 5, 3],
  [11, 8, 12, 0, 5, 2, 15, 13, 10, 14, 3, 6, 7, 1, 9, 4],
  [7, 9, 3, 1, 13, 12, 11, 14, 2, 6, 5, 10, 4, 0, 15, 8],
  [9, 0, 5, 7, 2, 4, 10, 15, 14, 1, 11, 12, 6, 8, 3, 13],
  [2, 12, 6, 10, 0, 11, 8, 3, 4, 13, 7, 5, 15, 14, 1, 9],
  [12, 5, 1, 15, 14, 13, 4, 10, 0, 7, 6, 3, 9, 2, 8, 11],
  [13, 11, 7, 14, 12, 1, 3, 9, 5, 0, 15, 4, 8, 6, 2, 10],
  [6, 15, 14, 9, 11, 3, 0, 8, 12, 2, 13, 7, 1, 4, 10, 5],
  [10, 2, 8, 4, 7, 6, 1, 5, 15, 11, 9, 14, 3, 12, 13, 0],
];

function rotr(x, n) {
  return ((x >> n) | (x << (64n - n))) & MASK64;
}

function mix(v, a, b, c, d, x, y) {
  v[a] = (v[a] + v[b] + x) & MASK64;
  v[d] = rotr(v[d] ^ v[a], 32n);
  v[c] = (v[c] + v[d]) & MASK64;
  v[b] = rotr(v[b] ^ v[c], 24n);
  v[a] = (v[a] + v[b] + y) & MASK64;
  v[d] = rotr(v[d] ^ v[a], 16n);
  v[c] = (v[c] + v[d]) & MASK64;
  v[b] = rotr(v[b] ^ v[c], 63n);
}

function compress(h, block, counter, last) {
  const m = [];
  for (let i = 0; i < 16; i++) m.push(block.readBigUInt64LE(i * 8));
  const v = h.concat(IV);
  v[12] ^= counter & MASK64;
  v[13] ^= counter >> 64n;
  if (last) v[14] ^= MASK64;
  for (let round = 0; round < 12; round++) {
    const s = SIGMA[round % 10];
    mix(v, 0, 4, 8, 12, m[s[0]], m[s[1]]);
    mix(v, 1, 5, 9, 13, m[s[2]], m[s[3]]);
    mix(v, 2, 6, 10, 14, m[s[4]], m[s[5]]);
    mix(v, 3, 7, 11, 15, m[s[6]], m[s[7]]);
    mix(v, 0, 5, 10, 15, m[s[8]], m[s[9]]);
    mix(v, 1, 6, 11, 12, m[s[10]], m[s[11]]);
    mix(v, 2, 7, 8, 13, m[s[12]], m[s[13]]);
    mix(v, 3, 4, 9, 14, m[s[14]], m[s[15]]);
  }
  for (let i = 0; i < 8; i++) h[i] ^= v[i] ^ v[i + 8];
}

export function blake2b(data, outlen) {
  const h = IV.slice();
  h[0] ^= 0x01010000n ^ BigInt(outlen);
  let counter = 0n;
  let offset = 0;
  // Every block but the last is compressed as it comes; the last one (even
  // if full, even if the input is empty) is compressed with the final flag.
  while (data.length - offset > 128) {
    counter += 128n;
    compress(h, data.subarray(offset, offset + 128), counter, false);
    offset += 128;
  }
  const last = Buffer.alloc(128);
  data.copy(last, 0, offset);
  counter += BigInt(data.length - offset);
  compress(h, last, counter, true);
  const out = Buffer.alloc(64);
  for (let i = 0; i < 8; i++) out.writeBigUInt64LE(h[i], i * 8);
  return out.subarray(0, outlen);
}

// --------------------------------------------------------------- routing

function hashTag(key) {
  const start = key.indexOf("{");
  if (start < 0) return null;
  const end = key.indexOf("}", start + 1);
  if (end < 0 || end === start + 1) return null;
  return key.subarray(start + 1, end);
}

function shardForKey(key, shardCount) {
  if (shardCount === 1) return 0;
  const tag = hashTag(key);
  const digest = blake2b(tag === null ? key : tag, 8);
  return Number(digest.readBigUInt64BE(0) % BigInt(shardCount));
}

// ------------------------------------------------------------------ gRPC

function loadApi() {
  const definition = protoLoader.loadSync(
    ["ordo/v1/coordinator.proto", "ordo/v1/shard.proto"],
    { includeDirs: [PROTO_DIR], keepCase: true, longs: String, defaults: true, oneofs: true },
  );
  return grpc.loadPackageDefinition(definition).ordo.v1;
}

function deadline(ms = CALL_TIMEOUT_MS) {
  return new Date(Date.now() + ms);
}

function unary(client, method, request) {
  return new Promise((resolve, reject) => {
    client[method](request, { deadline: deadline() }, (error, response) => {
      if (error) reject(error);
      else resolve(response);
    });
  });
}

function statusName(code) {
  return Object.keys(grpc.status).find((name) => grpc.status[name] === code) ?? String(code);
}

function emit(object) {
  process.stdout.write(JSON.stringify(object) + "\n");
}

function valueJson(value) {
  if (value == null) return null;
  const kind = value.kind;
  if (kind === "bytes_value") return { bytes_value: value.bytes_value.toString("base64") };
  if (kind === "list_value") return { list_value: value.list_value.items.map(valueJson) };
  return { [kind]: value[kind] };
}

function watchShard(client, shard, prefix, fromPosition) {
  // Changes under the prefix from the position, until this shard reports
  // progress at or past it (every change up to progress is delivered).
  return new Promise((resolve, reject) => {
    const events = [];
    let progress = "0";
    let finished = false;
    const call = client.Watch(
      { prefix, from_position: fromPosition },
      { deadline: deadline() },
    );
    call.on("data", (message) => {
      for (const e of message.events) {
        events.push({
          position: e.position,
          key: e.key.toString("utf8"),
          value: valueJson(e.value),
          request_id: e.request_id,
        });
      }
      progress = message.progress;
      if (!finished && BigInt(progress) >= BigInt(fromPosition)) {
        finished = true;
        resolve({ event: "watch", shard, progress, events });
        call.cancel();
      }
    });
    call.on("error", (error) => {
      if (!finished) {
        finished = true;
        reject(new Error(`Watch on shard ${shard}: ${statusName(error.code)}: ${error.details}`));
      }
    });
    call.on("end", () => {
      if (!finished) {
        finished = true;
        reject(new Error(`Watch on shard ${shard} ended before progress ${fromPosition}`));
      }
    });
  });
}

function hashMode(hexKeys) {
  // Each key's routing hash, for comparing with ordo's own partitioner.
  for (const hex of hexKeys) {
    const key = Buffer.from(hex, "hex");
    emit({ event: "hash", key_hex: hex, blake2b64: blake2b(hashTag(key) ?? key, 8).toString("hex"),
           shard_of_3: shardForKey(key, 3), shard_of_7: shardForKey(key, 7) });
  }
}

async function main() {
  if (process.argv[2] === "--hash") {
    hashMode(process.argv.slice(3));
    return;
  }
  const [address, runArg] = process.argv.slice(2);
  if (!address) {
    process.stderr.write("usage: node client.mjs <coordinator address> [run id]\n");
    process.exit(2);
  }
  const run = runArg ?? randomUUID().replaceAll("-", "").slice(0, 12);
  const api = loadApi();
  const credentials = grpc.credentials.createInsecure();
  const coordinator = new api.CoordinatorService(address, credentials);

  const info = await unary(coordinator, "ClusterInfo", {});
  const shardCount = info.shard_map.shard_count;
  const addresses = [];
  for (const s of info.shards) addresses[s.shard] = s.address;
  emit({ event: "cluster", shard_count: shardCount, partitioner: info.shard_map.partitioner,
         shards: addresses });
  if (info.shard_map.partitioner !== "blake2b64-mod") {
    throw new Error(`unknown partitioner ${info.shard_map.partitioner}`);
  }
  const shards = addresses.map((a) => new api.ShardService(a, credentials));

  // One transaction, two PUTs: a text value and an int value. No hash tag,
  // so the two keys may live on different shards.
  const prefix = `node:${run}:`;
  const textKey = Buffer.from(prefix + "title");
  const intKey = Buffer.from(prefix + "count");
  const requestId = `node-${run}`;
  const request = {
    request_id: requestId,
    wait: "WAIT_FOR_APPLIED",
    txn: {
      success: [
        { type: "OP_TYPE_PUT", key: textKey, value: { text_value: "héllo from node" } },
        { type: "OP_TYPE_PUT", key: intKey, value: { int_value: "-42" } },
      ],
    },
  };
  const committed = await unary(coordinator, "Submit", request);
  emit({ event: "submit", request_id: requestId, position: committed.position,
         duplicate: committed.duplicate, succeeded: committed.result?.succeeded ?? null,
         result_position: committed.result?.position ?? null });
  const again = await unary(coordinator, "Submit", request);
  emit({ event: "resubmit", position: again.position, duplicate: again.duplicate });

  const position = committed.position;
  for (const key of [textKey, intKey]) {
    const owner = shardForKey(key, shardCount);
    emit({ event: "hash", key: key.toString("utf8"),
           blake2b64: blake2b(hashTag(key) ?? key, 8).toString("hex"), shard: owner });
    const reply = await unary(shards[owner], "Get", { key, min_position: position });
    emit({ event: "get", key: key.toString("utf8"), shard: owner, position: reply.position,
           version: reply.item.version, value: valueJson(reply.item.value) });
    const others = {};
    for (let s = 0; s < shardCount; s++) {
      if (s === owner) continue;
      try {
        await unary(shards[s], "Get", { key, min_position: position });
        others[s] = "OK";
      } catch (error) {
        others[s] = statusName(error.code);
      }
    }
    emit({ event: "not_owner", key: key.toString("utf8"), answers: others });
  }

  const watches = await Promise.all(
    shards.map((client, s) => watchShard(client, s, Buffer.from(prefix), position)),
  );
  for (const w of watches) emit(w);

  for (const client of [coordinator, ...shards]) client.close();
  emit({ event: "done" });
}

main().catch((error) => {
  process.stderr.write(`ordo node client failed: ${error.stack ?? error}\n`);
  process.exit(1);
});
