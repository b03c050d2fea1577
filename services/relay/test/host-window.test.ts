/**
 * RELAY_HOST_MAX_PENDING: how many events of one host the relay has in process at once (verifying, or written
 * and waiting for the WAL sync) before it stops reading from that host; the rest waits upstream, nothing is lost.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { RelayServer } from '../src/index.js'
import { holdVerifications, relayNetwork, sleep, waitFor, type FakeAccount } from './helpers.js'

let net: Awaited<ReturnType<typeof relayNetwork>>
let relay: RelayServer
let accounts: FakeAccount[]

beforeAll(async () => {
  net = await relayNetwork({ RELAY_HOST_MAX_PENDING: '2' }, ['first-0', 'first-1', 'first-2'])
  ;({ relay, accounts } = net)
})

afterAll(async () => {
  await net?.close()
})

describe('RELAY_HOST_MAX_PENDING', () => {
  it('takes at most that many events of a host at once; the next ones are read once those are done, none lost', async () => {
    expect(relay.config.hostMaxPending).toBe(2)
    // every verification is held back until released
    const held = holdVerifications(relay, () => true)
    try {
      // one commit of each of three accounts (different accounts: nothing orders them but the window)
      for (const [i, a] of accounts.entries()) await a.emitPost(`held-${i}`)
      const asked = () => held.asked.map((a) => a.did)
      await waitFor(() => held.asked.length >= 2, 4_000, 'two verifications')
      await sleep(300)
      expect(asked()).toEqual([accounts[0]!.did, accounts[1]!.did])
      held.release()
      await net.consumer.waitForText('held-2')
      expect(asked()).toEqual(accounts.map((a) => a.did))
      expect(net.consumer.texts().slice(-3)).toEqual(['held-0', 'held-1', 'held-2'])
    } finally {
      held.restore()
    }
  })
})
