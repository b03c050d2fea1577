import { describe, expect, it } from 'vitest'
import { ConfigError, DEFAULT_PORT, didWebFor, readConfig } from '../src/config.js'

describe('config', () => {
  it('defaults: port 2585, SQLite in the data directory', () => {
    const c = readConfig({ APPVIEW_DATA_DIRECTORY: '/tmp/av' })
    expect(c.port).toBe(DEFAULT_PORT)
    expect(c.port).toBe(2585)
    expect(c.host).toBe('127.0.0.1')
    expect(c.dbUrl).toBe('/tmp/av/appview.sqlite')
    expect(c.plcUrl).toBe('https://plc.directory')
    expect(c.pdsUrls).toEqual([])
    expect(c.devMode).toBe(false)
  })

  it('PostgreSQL URL, relay and PDS sources, identity', () => {
    const c = readConfig({
      APPVIEW_PORT: '3000',
      APPVIEW_DB_URL: 'postgres://u@db:5432/appview',
      APPVIEW_RELAY_URL: 'wss://relay.example/',
      APPVIEW_PDS_URLS: 'https://pds1.example, https://pds2.example',
      APPVIEW_PUBLIC_URL: 'https://api.example',
      APPVIEW_DID: 'did:web:api.example',
      APPVIEW_SIGNING_KEY_K256_PRIVATE_KEY_HEX: 'ab'.repeat(32),
      APPVIEW_DEV_MODE: 'true',
      LOG_LEVEL: 'debug',
    })
    expect(c.port).toBe(3000)
    expect(c.dbUrl).toBe('postgres://u@db:5432/appview')
    expect(c.relayUrl).toBe('wss://relay.example')
    expect(c.pdsUrls).toEqual(['https://pds1.example', 'https://pds2.example'])
    expect(c.did).toBe('did:web:api.example')
    expect(c.devMode).toBe(true)
    expect(c.logLevel).toBe('debug')
  })

  it('names every bad variable', () => {
    try {
      readConfig({ APPVIEW_PORT: 'x', APPVIEW_DB_URL: 'mysql://db', APPVIEW_SIGNING_KEY_K256_PRIVATE_KEY_HEX: 'zz', APPVIEW_DEV_MODE: 'maybe' })
      throw new Error('expected a ConfigError')
    } catch (err) {
      expect(err).toBeInstanceOf(ConfigError)
      const msg = (err as Error).message
      for (const name of ['APPVIEW_PORT', 'APPVIEW_DB_URL', 'APPVIEW_SIGNING_KEY_K256_PRIVATE_KEY_HEX', 'APPVIEW_DEV_MODE']) expect(msg).toContain(name)
    }
  })

  it('backfill bounds: repos and CAR bytes in flight', () => {
    const c = readConfig({ APPVIEW_DATA_DIRECTORY: '/tmp/av', APPVIEW_BACKFILL_CONCURRENCY: '64', APPVIEW_BACKFILL_MAX_BYTES: String(256 * 1024 * 1024) })
    expect(c.backfillConcurrency).toBe(64)
    expect(c.backfillMaxBytes).toBe(256 * 1024 * 1024)
    expect(readConfig({ APPVIEW_DATA_DIRECTORY: '/tmp/av' }).backfillMaxBytes).toBeUndefined()
    // below 1 MiB or not an integer: refused at start-up
    for (const bad of ['1000', '64MiB', '-1']) expect(() => readConfig({ APPVIEW_BACKFILL_MAX_BYTES: bad })).toThrow(/APPVIEW_BACKFILL_MAX_BYTES/)
  })

  it('read workers: a count, 0 for the main thread', () => {
    expect(readConfig({ APPVIEW_DATA_DIRECTORY: '/tmp/av', APPVIEW_READ_WORKERS: '3' }).readWorkers).toBe(3)
    expect(readConfig({ APPVIEW_DATA_DIRECTORY: '/tmp/av', APPVIEW_READ_WORKERS: '0' }).readWorkers).toBe(0)
    expect(readConfig({ APPVIEW_DATA_DIRECTORY: '/tmp/av' }).readWorkers).toBeGreaterThanOrEqual(1)
    for (const bad of ['two', '-1', '1.5']) expect(() => readConfig({ APPVIEW_READ_WORKERS: bad })).toThrow(/APPVIEW_READ_WORKERS/)
  })

  it('did:web from the public URL', () => {
    expect(didWebFor('https://api.example')).toBe('did:web:api.example')
    expect(didWebFor('http://localhost:2585')).toBe('did:web:localhost%3A2585')
  })
})
