#!/usr/bin/env node
/** The `stratos` executable: wires the process (streams, environment, Ctrl-C) to main(). */
import { createInterface } from 'node:readline/promises'
import { main } from './main.js'
import type { Io } from './util/io.js'

const controller = new AbortController()
let interrupts = 0
const onSignal = (signal: NodeJS.Signals) => {
  interrupts++
  if (interrupts > 1) process.exit(130)
  controller.abort(new Error(`interrupted (${signal})`))
  // commands that follow the signal stop on their own (a service closes its connections and databases,
  // which can take a few seconds on a busy machine); anything else gets a moment, then ends. A second
  // Ctrl-C ends the process at once.
  setTimeout(() => process.exit(130), 10_000).unref()
}
process.on('SIGINT', onSignal)
process.on('SIGTERM', onSignal)

const io: Io = {
  stdout: process.stdout,
  stderr: process.stderr,
  env: process.env,
  signal: controller.signal,
  confirm:
    process.stdin.isTTY && process.stderr.isTTY
      ? async (question) => {
          const rl = createInterface({ input: process.stdin, output: process.stderr })
          try {
            const answer = await rl.question(`${question} [y/N] `)
            return /^y(es)?$/i.test(answer.trim())
          } finally {
            rl.close()
          }
        }
      : undefined,
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
