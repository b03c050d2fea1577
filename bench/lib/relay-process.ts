/**
 * Child process of bench/relay.ts: one relay (services/relay from source) configured from the environment
 * (RELAY_* variables, RELAY_VERIFY_WORKERS included). Prints `{ ready, url, pid }`; a line `crawl <url>` on
 * stdin makes it follow that host (so consumers can connect first); SIGTERM closes it cleanly.
 */
import './register.js'
import { createInterface } from 'node:readline'
import { exitOnSignals } from './child.js'

const { RelayServer, readConfig } = await import('../../services/relay/src/index.js')
const relay = await RelayServer.create(readConfig(process.env))
await relay.start()
await relay.ctx.verifier.ready() // the workers have loaded their code (from source: tsx compiles it first)
process.stdout.write(JSON.stringify({ ready: true, url: relay.url, pid: process.pid, workers: relay.ctx.verifier.workers }) + '\n')

createInterface({ input: process.stdin }).on('line', (line) => {
  const [cmd, arg] = line.trim().split(' ')
  if (cmd === 'crawl' && arg) {
    relay.ctx.hostManager.addConfiguredHosts([arg]).catch((err: unknown) => {
      console.error(err)
      process.exit(1)
    })
  }
})

exitOnSignals(() => relay.close())
