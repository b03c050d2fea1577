#!/usr/bin/env node
/** Starts the did:plc directory from environment variables (see README.md). */
import { ConfigError, readConfig } from './config.js'
import { PlcServer } from './server.js'

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
  const server = await PlcServer.create(config)
  const url = await server.start()
  server.app.log.info({ url, db: config.dbPath, version: config.version }, 'did:plc directory listening')

  let closing = false
  const shutdown = (signal: string) => {
    if (closing) return
    closing = true
    server.app.log.info({ signal }, 'shutting down')
    server.close().then(
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
  process.stderr.write(`failed to start the PLC directory: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`)
  process.exit(1)
})
