// The official server conformance suite, pointed at the server named by
// CONFORMANCE_TEST_URL (tests/testing/test_server_conformance.py starts
// `python -m durable_streams.testing` and runs this file with vitest).
// CONFORMANCE_LONG_POLL_MS is that server's long-poll timeout.
import { runConformanceTests } from "@durable-streams/server-conformance-tests"

const baseUrl = process.env.CONFORMANCE_TEST_URL
if (!baseUrl) throw new Error("CONFORMANCE_TEST_URL is required")

runConformanceTests({
  baseUrl,
  longPollTimeoutMs: Number(process.env.CONFORMANCE_LONG_POLL_MS ?? "20000"),
})
