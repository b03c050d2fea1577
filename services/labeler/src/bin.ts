#!/usr/bin/env node
/** Starts the labeler from environment variables (see README.md). */
import { ConfigError, readConfig } from './config.js'
import { LabelerServer } from './server.js'

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
  const labeler = await LabelerServer.create(config)
  const url = await labeler.start()
  labeler.ctx.log.info({ url, did: config.did, labelKey: labeler.labelKey, version: config.version }, 'labeler listening')

  let closing = false
  const shutdown = (signal: string) => {
    if (closing) return
    closing = true
    labeler.ctx.log.info({ signal }, 'shutting down')
    labeler.close().then(
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
  process.stderr.write(`failed to start the labeler: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`)
  process.exit(1)
})
