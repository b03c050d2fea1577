/** Issue 14 item 4 on the relay: admin password guessing is cut after 10 failures per IP. */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RelayServer } from '../../src/server.js'
import { adminHeaders, relayConfig, startRelay, tmpDir } from '../helpers.js'

describe('relay admin Basic auth brute force', () => {
  const dir = tmpDir()
  let relay: RelayServer
  beforeAll(async () => {
    relay = await startRelay(relayConfig(dir.path, 'http://127.0.0.1:9'))
  })
  afterAll(async () => {
    await relay.close()
    dir.remove()
  })

  it('answers 429 after 10 wrong passwords from one IP, before checking the right one', async () => {
    const url = `${relay.url}/xrpc/com.stratos.relay.admin.listHosts`
    const statuses = await Promise.all(Array.from({ length: 100 }, (_, i) => fetch(url, { headers: adminHeaders(`guess-${i}`) }).then((r) => r.status)))
    expect(statuses.filter((s) => s === 401)).toHaveLength(10)
    expect(statuses.filter((s) => s === 429)).toHaveLength(90)
    expect((await fetch(url, { headers: adminHeaders() })).status).toBe(429)
  })
})
