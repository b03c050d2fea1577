#!/usr/bin/env node
/** Starts the AppView from environment variables (see README.md). */
import { ConfigError, readConfig } from './config.js'
import { AppViewServer } from './server.js'

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
  const server = await AppViewServer.create(config)
  const url = await server.start()
  server.log.info(
    { url, did: server.did, db: config.dbUrl.replace(/\/\/[^@/]*@/, '//***@'), relay: config.relayUrl, pds: config.pdsUrls },
    'AppView listening',
  )

  let closing = false
  const shutdown = (signal: string) => {
    if (closing) return
    closing = true
    server.log.info({ signal }, 'shutting down')
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
  process.stderr.write(`failed to start the AppView: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exit(1)
})
