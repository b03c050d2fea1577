/**
 * The Jetstream wire shapes of events the test network does not produce (a #sync), and the v2 `time` format.
 */
import { describe, expect, it } from 'vitest'
import { toJetstreamItems, v1Bytes, v2Bytes, wireTime } from '../src/jetstream/events.js'

describe('Jetstream event shapes', () => {
  it('a #sync is a v2 #sync message wrapping the relay event (blocks as $bytes) and is never sent on v1', () => {
    const did = 'did:plc:ewvi7nxzyoun6zhxrhs64oiz'
    const [item, ...rest] = toJetstreamItems({
      seq: 42,
      timeUs: 1_765_000_000_123_456,
      type: '#sync',
      did,
      body: { did, rev: '3l3qo2vutsw2b', blocks: new Uint8Array([1, 2, 3]), time: '2025-12-06T05:46:40.123Z' },
    })
    expect(rest).toEqual([])
    expect(item!.seq).toBe(42 * 1024)
    expect(v1Bytes(item!)).toBeNull()
    expect(JSON.parse(v2Bytes(item!).toString())).toEqual({
      $type: 'message',
      payload: {
        $type: 'network.bsky.jetstream.subscribeEvents#sync',
        seq: 42 * 1024,
        did,
        time: '2025-12-06T05:46:40.123456Z',
        sync: { did, rev: '3l3qo2vutsw2b', blocks: { $bytes: 'AQID' }, time: '2025-12-06T05:46:40.123Z', seq: 42 },
      },
    })
  })

  it('time has exactly six fractional digits, in UTC', () => {
    expect(wireTime(1_725_911_162_329_308)).toBe('2024-09-09T19:46:02.329308Z')
    expect(wireTime(1_725_911_162_000_007)).toBe('2024-09-09T19:46:02.000007Z')
  })
})
