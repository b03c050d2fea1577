import type { AddressInfo } from 'node:net'
import { Secp256k1Keypair } from '@atproto/crypto'
import { WebSocketServer, type WebSocket } from 'ws'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { encodeErrorFrame, encodeInfoFrame, encodeMessageFrame } from '@stratos/core/stream'
import { firehoseUrl } from '../src/commands/firehose.js'
import { HANDLE, buildRepo, commitEvent as makeCommit, createOp, jsonLines, runCli, startPlc, type RepoFixture } from './helpers.js'

interface WsServer {
  url: string
  /** query strings of every connection */
  connections: URLSearchParams[]
  close(): Promise<void>
}

/** A subscribeRepos endpoint that sends `frames(cursor)` to each connection, then closes it. */
async function startWs(frames: (cursor: string | null) => Uint8Array[], opts: { keepOpen?: boolean } = {}): Promise<WsServer> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0 })
  const connections: URLSearchParams[] = []
  wss.on('connection', (ws: WebSocket, req) => {
    const u = new URL(req.url ?? '/', 'http://x')
    connections.push(u.searchParams)
    if (u.pathname !== '/xrpc/com.atproto.sync.subscribeRepos') {
      ws.close(1008, 'wrong path')
      return
    }
    for (const f of frames(u.searchParams.get('cursor'))) ws.send(f)
    if (!opts.keepOpen) ws.close(1000)
  })
  await new Promise<void>((r) => wss.on('listening', () => r()))
  const { port } = wss.address() as AddressInfo
  return {
    url: `ws://127.0.0.1:${port}`,
    connections,
    close: () =>
      new Promise<void>((r) => {
        for (const c of wss.clients) c.terminate()
        wss.close(() => r())
      }),
  }
}

describe('stratos firehose', () => {
  let fx: RepoFixture
  let plc: Awaited<ReturnType<typeof startPlc>>
  let frames: Uint8Array[]

  beforeAll(async () => {
    fx = await buildRepo()
    plc = await startPlc(fx)
    const evil = await Secp256k1Keypair.create()
    const createdAt = '2024-05-02T00:00:00.000Z'
    const good = await commitEvent(fx, 'first', 1)
    // the same repo, next commit, signed by a key that is not the account's
    const tampered = await commitEvent(fx, 'forged', 3, evil)
    const good2 = await commitEvent(fx, 'second', 4)
    frames = [
      encodeMessageFrame('#commit', good),
      encodeMessageFrame('#identity', { seq: 2, did: fx.did, handle: HANDLE, time: createdAt }),
      encodeMessageFrame('#commit', tampered),
      encodeMessageFrame('#commit', good2),
      encodeMessageFrame('#account', { seq: 5, did: fx.did, active: false, status: 'takendown', time: createdAt }),
    ]
    function commitEvent(f: RepoFixture, text: string, seq: number, signer?: typeof evil) {
      return makeCommit(f, [createOp('app.bsky.feed.post', `3kbbbbbbbb${seq}22`, { $type: 'app.bsky.feed.post', text, createdAt })], seq, signer)
    }
  })
  afterAll(async () => {
    await plc?.close()
  })

  it('prints one JSON line per event with records decoded, and verifies commits', async () => {
    const ws = await startWs(() => frames)
    try {
      const r = await runCli(['firehose', ws.url, '--verify', '--once', '--dev', '--plc', plc.url])
      expect(r.code).toBe(0)
      const lines = jsonLines(r.stdout)
      expect(lines.map((l) => [l.seq, l.type])).toEqual([
        [1, 'commit'],
        [2, 'identity'],
        [3, 'commit'],
        [4, 'commit'],
        [5, 'account'],
      ])
      const [c1, id, bad, c2, acct] = lines as Record<string, any>[]
      expect(c1).toMatchObject({ repo: fx.did, verified: true, since: expect.any(String) })
      expect(c1.ops).toEqual([
        {
          action: 'create',
          path: 'app.bsky.feed.post/3kbbbbbbbb122',
          cid: expect.stringMatching(/^bafyrei/),
          record: { $type: 'app.bsky.feed.post', text: 'first', createdAt: '2024-05-02T00:00:00.000Z' },
        },
      ])
      expect(c1.commit).toMatch(/^bafyrei/)
      expect(id).toEqual({ seq: 2, type: 'identity', did: fx.did, handle: HANDLE, time: '2024-05-02T00:00:00.000Z' })
      expect(bad.verified).toBe(false)
      expect(bad.reason).toBe('bad-signature')
      expect(bad.ops[0].record.text).toBe('forged')
      // the chain continues from the last verified commit
      expect(c2.verified).toBe(true)
      expect(c2.ops[0].record.text).toBe('second')
      expect(acct).toMatchObject({ seq: 5, type: 'account', active: false, status: 'takendown' })
      expect(r.stderr).toContain('connected to')
      expect(r.stderr).toContain('5 events, last seq 5')
    } finally {
      await ws.close()
    }
  })

  it('without --verify adds no verification fields; --limit stops early; --cursor is sent', async () => {
    const ws = await startWs(() => frames, { keepOpen: true })
    try {
      const r = await runCli(['firehose', `${ws.url}/`, '--limit', '2', '--cursor', '0'])
      expect(r.code).toBe(0)
      const lines = jsonLines(r.stdout)
      expect(lines).toHaveLength(2)
      expect(lines[0]).not.toHaveProperty('verified')
      expect(ws.connections[0]!.get('cursor')).toBe('0')
    } finally {
      await ws.close()
    }
  })

  it('reconnects from the last seq seen when the server closes', async () => {
    const ws = await startWs((cursor) => (cursor === null ? frames.slice(0, 2) : frames.filter((_, i) => i + 1 > Number(cursor))))
    try {
      const r = await runCli(['firehose', ws.url, '--limit', '4'])
      expect(r.code).toBe(0)
      expect(jsonLines(r.stdout).map((l) => l.seq)).toEqual([1, 2, 3, 4])
      expect(ws.connections.map((c) => c.get('cursor'))).toEqual([null, '2'])
      expect(r.stderr).toContain('reconnecting from seq 2')
    } finally {
      await ws.close()
    }
  })

  it('reports info frames on stderr and exits 1 on an error frame', async () => {
    const ws = await startWs(() => [encodeInfoFrame('OutdatedCursor', 'too old'), frames[1]!, encodeErrorFrame('FutureCursor', 'Cursor in the future')], {
      keepOpen: true,
    })
    try {
      const r = await runCli(['firehose', ws.url, '--cursor', '1'])
      expect(r.code).toBe(1)
      expect(jsonLines(r.stdout).map((l) => l.type)).toEqual(['identity'])
      expect(r.stderr).toContain('info: OutdatedCursor: too old')
      expect(r.stderr).toContain('the server sent an error: FutureCursor: Cursor in the future')
    } finally {
      await ws.close()
    }
  })

  it('exits 1 when it cannot connect, 2 on a bad URL or cursor', async () => {
    const r = await runCli(['firehose', 'ws://127.0.0.1:1'])
    expect(r.code).toBe(1)
    expect(r.stderr).toContain('cannot connect to ws://127.0.0.1:1/xrpc/com.atproto.sync.subscribeRepos')
    expect((await runCli(['firehose', 'ftp://x'])).code).toBe(2)
    const bad = await runCli(['firehose', 'ws://127.0.0.1:1', '--cursor', 'abc'])
    expect(bad.code).toBe(2)
    expect(bad.stderr).toContain('--cursor must be an integer')
  })

  it('builds the endpoint URL from a host', () => {
    expect(firehoseUrl('relay.example.com')).toBe('ws://relay.example.com/xrpc/com.atproto.sync.subscribeRepos')
    expect(firehoseUrl('https://bsky.network')).toBe('wss://bsky.network/xrpc/com.atproto.sync.subscribeRepos')
    expect(firehoseUrl('ws://h:1/xrpc/com.atproto.sync.subscribeRepos?cursor=5')).toBe('ws://h:1/xrpc/com.atproto.sync.subscribeRepos')
  })
})

