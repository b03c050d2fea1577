#!/usr/bin/env node
/** The `stratos` executable: wires the process (streams, environment, Ctrl-C) to main(). */
import { createInterface } from 'node:readline/promises'
import { main } from './main.js'
import type { Io } from './util/io.js'

const controller = new AbortController()
let firstSignalAt = 0
/**
 * A Ctrl-C reaches this process twice when it runs under a runner such as `pnpm start`: once from the
 * terminal (the whole process group gets SIGINT) and once forwarded by the runner. Signals within
 * DUPLICATE_WINDOW_MS of the first are that same Ctrl-C; a later one is the user insisting.
 */
const DUPLICATE_WINDOW_MS = 1_000
const onSignal = (signal: NodeJS.Signals) => {
  const now = Date.now()
  if (firstSignalAt > 0) {
    if (now - firstSignalAt < DUPLICATE_WINDOW_MS) return
    process.exit(130)
  }
  firstSignalAt = now
  controller.abort(new Error(`interrupted (${signal})`))
  // commands that follow the signal stop on their own (a service closes its connections and databases,
  // which can take a few seconds on a busy machine); anything else gets a moment, then ends. A second
  // Ctrl-C ends the process at once.
  setTimeout(() => process.exit(130), 10_000).unref()
}
process.on('SIGINT', onSignal)
process.on('SIGTERM', onSignal)

const terminal = process.stdin.isTTY && process.stderr.isTTY
async function askLine(question: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr })
  try {
    return await rl.question(question)
  } finally {
    rl.close()
  }
}

const io: Io = {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  signal: controller.signal,
  confirm: terminal ? async (question) => /^y(es)?$/i.test((await askLine(`${question} [y/N] `)).trim()) : undefined,
  ask: terminal ? askLine : undefined,
}

main(process.argv.slice(2), io).then(
  (code) => {
    process.exitCode = code
    // let stdout drain, then end (open keep-alive sockets must not hold the process)
    process.stdout.write('', () => process.exit(code))
  },
  (err) => {
    process.stderr.write(`stratos: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
    process.exit(1)
  },
)
