// Drives the pinned @durable-streams/state package for the Python interop tests.
//
// Reads one JSON command on stdin, prints one JSON result on stdout:
//
//   {"command": "materialize", "url": "..."}
//     reads the stream from the start with @durable-streams/client until up to date and
//     materializes it with the package's MaterializedState (a reset control clears it, as
//     the package's StreamDB does; snapshot markers change nothing); prints
//     {"types": [...], "state": {type: {key: value}}, "messages": n}
//
//   {"command": "write", "url": "...", "collections": {name: {type, primaryKey, required}},
//    "batches": [[op, ...], ...]}
//     builds each op with createStateSchema's helpers (op: {"collection", "op": insert |
//     update | upsert | delete, "value", "key", "oldValue", "headers"}, or {"control": kind}),
//     POSTs each batch as one JSON array (one request) and prints {"events": [...]}.
import { MaterializedState, createStateSchema, isControlEvent } from "@durable-streams/state"
import { stream } from "@durable-streams/client"

function objectSchema(required) {
  // A minimal Standard Schema (the interface createStateSchema validates with): an object
  // holding every required field.
  return {
    "~standard": {
      version: 1,
      vendor: "aio-durable-streams-interop",
      validate(value) {
        if (typeof value !== "object" || value === null || Array.isArray(value)) {
          return { issues: [{ message: "expected an object" }] }
        }
        const missing = required.filter((field) => !(field in value))
        if (missing.length > 0) {
          return { issues: missing.map((field) => ({ message: `missing ${field}` })) }
        }
        return { value }
      },
    },
  }
}

async function materialize({ url }) {
  const res = await stream({ url, live: false, json: true })
  const items = await res.json()
  const state = new MaterializedState()
  for (const event of items) {
    if (isControlEvent(event)) {
      if (event.headers.control === "reset") state.clear()
    } else {
      state.apply(event)
    }
  }
  const out = {}
  for (const type of state.types) out[type] = Object.fromEntries(state.getType(type))
  return { types: state.types, state: out, messages: items.length }
}

async function write({ url, collections, batches }) {
  const definitions = {}
  for (const [name, def] of Object.entries(collections)) {
    definitions[name] = {
      schema: objectSchema(def.required ?? []),
      type: def.type,
      primaryKey: def.primaryKey,
    }
  }
  const schema = createStateSchema(definitions)
  const events = []
  for (const batch of batches) {
    const built = batch.map((op) => {
      if (op.control) {
        return { headers: { control: op.control } }
      }
      const helpers = schema[op.collection]
      const params = {}
      for (const field of ["key", "value", "oldValue", "headers"]) {
        if (op[field] !== undefined) params[field] = op[field]
      }
      return helpers[op.op](params)
    })
    const response = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify(built),
    })
    if (response.status !== 200 && response.status !== 204) {
      throw new Error(`append failed: ${response.status} ${await response.text()}`)
    }
    events.push(...JSON.parse(JSON.stringify(built)))
  }
  return { events }
}

async function main() {
  const chunks = []
  for await (const chunk of process.stdin) chunks.push(chunk)
  const command = JSON.parse(Buffer.concat(chunks).toString("utf8"))
  const handlers = { materialize, write }
  const handler = handlers[command.command]
  if (!handler) throw new Error(`unknown command ${command.command}`)
  process.stdout.write(JSON.stringify(await handler(command)) + "\n")
}

main().catch((error) => {
  process.stderr.write(`${error.stack ?? error}\n`)
  process.exit(1)
})
