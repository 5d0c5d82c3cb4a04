// Starts the pinned Durable Streams reference server on 127.0.0.1 and prints
// one line to stdout: {"url": "http://127.0.0.1:PORT"}. It runs until it is
// sent SIGTERM/SIGINT or its stdin closes (so a crashed parent never leaves
// an orphan server behind).
//
// Options (all optional): --port N (default 0 = any free port),
// --long-poll-timeout MS (default 30000, the server's own default).
import { DurableStreamTestServer } from "@durable-streams/server";

function option(name, fallback) {
  const index = process.argv.indexOf(name);
  if (index === -1 || index + 1 >= process.argv.length) return fallback;
  const value = Number(process.argv[index + 1]);
  if (!Number.isInteger(value) || value < 0) {
    console.error(`launch.mjs: ${name} needs a non-negative integer`);
    process.exit(2);
  }
  return value;
}

const server = new DurableStreamTestServer({
  host: "127.0.0.1",
  port: option("--port", 0),
  longPollTimeout: option("--long-poll-timeout", 30000),
  // Webhook subscriptions (§7) are off by default in the reference server; the
  // subscription tests need them, and nothing else changes when they are on.
  webhooks: true,
});

const url = await server.start();
process.stdout.write(JSON.stringify({ url }) + "\n");

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  // Live readers (SSE) keep connections open; do not wait on them forever.
  const timer = setTimeout(() => process.exit(0), 2000);
  timer.unref();
  try {
    await server.stop();
  } finally {
    process.exit(0);
  }
}

process.on("SIGTERM", stop);
process.on("SIGINT", stop);
if (!process.argv.includes("--ignore-stdin")) {
  process.stdin.on("end", stop);
  process.stdin.on("error", stop);
  process.stdin.resume();
}
