import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError, readConfig } from '../src/config.js'

describe('readConfig', () => {
  it('has defaults: 127.0.0.1:2582, ./data/plc/plc.sqlite, the package version', () => {
    const c = readConfig({})
    expect(c.port).toBe(2582)
    expect(c.host).toBe('127.0.0.1')
    expect(c.dbPath).toBe(join(resolve('./data/plc'), 'plc.sqlite'))
    expect(c.version).toBe('0.1.0')
    expect(c.logLevel).toBe('info')
  })

  it('reads every variable', () => {
    const c = readConfig({
      PLC_PORT: '0',
      PLC_HOST: '0.0.0.0',
      PLC_DATA_DIRECTORY: '/var/lib/plc',
      PLC_VERSION: '9.9.9',
      PLC_LOG_LEVEL: 'warn',
      PLC_TRUSTED_PROXIES: '10.0.0.0/8, ::1',
      PLC_MAX_CONNECTIONS: '2000',
      PLC_MAX_CONNECTIONS_PER_IP: '50',
      PLC_REQUEST_TIMEOUT_MS: '30000',
    })
    expect(c).toEqual({
      port: 0,
      host: '0.0.0.0',
      dbPath: '/var/lib/plc/plc.sqlite',
      version: '9.9.9',
      logLevel: 'warn',
      network: { trustedProxies: ['10.0.0.0/8', '::1'], maxConnections: 2000, maxConnectionsPerIp: 50, requestTimeoutMs: 30000 },
    })
    expect(readConfig({ PLC_DB_PATH: ':memory:' }).dbPath).toBe(':memory:')
    expect(readConfig({ PLC_DB_PATH: '/tmp/x/plc.db' }).dbPath).toBe('/tmp/x/plc.db')
  })

  it('fails with messages naming each bad variable', () => {
    let err: unknown
    try {
      readConfig({ PLC_PORT: '80a', PLC_DB_PATH: '/a.db', PLC_DATA_DIRECTORY: '/b', PLC_LOG_LEVEL: 'loud' })
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(ConfigError)
    const message = (err as Error).message
    expect(message).toMatch(/PLC_PORT must be an integer between 0 and 65535, got "80a"/)
    expect(message).toMatch(/either PLC_DATA_DIRECTORY or PLC_DB_PATH, not both/)
    expect(message).toMatch(/PLC_LOG_LEVEL must be one of/)
    expect(() => readConfig({ PLC_PORT: '70000' })).toThrow(/PLC_PORT/)
  })
})

describe('log level', () => {
  it('takes PLC_LOG_LEVEL, then the LOG_LEVEL every service reads', () => {
    expect(readConfig({ PLC_DB_PATH: ':memory:', LOG_LEVEL: 'debug' }).logLevel).toBe('debug')
    expect(readConfig({ PLC_DB_PATH: ':memory:', LOG_LEVEL: 'debug', PLC_LOG_LEVEL: 'warn' }).logLevel).toBe('warn')
  })
})
