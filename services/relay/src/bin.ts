#!/usr/bin/env node
/** Starts the relay from environment variables (see README.md). */
import { ConfigError, readConfig } from './config.js'
import { RelayServer } from './server.js'

async function main(): Promise<void> {
  let config
  try {
    config = readConfig()
  } catch (err) {
    if (err instanceof ConfigError) {
      process.stderr.write(`${err.message}\n`)
      process.exit(1)
    }
    throw err
  }
  const relay = await RelayServer.create(config)
  const url = await relay.start()
  relay.ctx.log.info({ url, dataDirectory: config.dataDirectory, plc: config.plcUrl, version: config.version }, 'relay listening')

  let closing = false
  const shutdown = (signal: string) => {
    if (closing) return
    closing = true
    relay.ctx.log.info({ signal }, 'shutting down')
    relay.close().then(
      () => process.exit(0),
      (err) => {
        process.stderr.write(`error during shutdown: ${String(err)}\n`)
        process.exit(1)
      },
    )
  }
  process.on('SIGINT', () => shutdown('SIGINT'))
  process.on('SIGTERM', () => shutdown('SIGTERM'))
}

main().catch((err) => {
  process.stderr.write(`failed to start the relay: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exit(1)
})
