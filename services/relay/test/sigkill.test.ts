/**
 * A relay killed with SIGKILL mid-stream (no clean shutdown: the host cursor may not be saved, the last
 * group-commit batch may be half done) and started again on its data directory: a consumer that resumes
 * from the last seq it received gets every commit the host sent exactly once, with consecutive seqs, and
 * what it had received before the kill is still in the relay's log, unchanged.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { afterAll, describe, expect, it } from 'vitest'
import { SubscriptionClient } from '@stratos/core/stream'
import { FakePds, FakePlc, droppedCounts, tmpDir, waitFor, type FakeAccount } from './helpers.js'

const ROOT = fileURLToPath(new URL('../../../', import.meta.url))
const cleanups: (() => unknown)[] = []
afterAll(async () => {
  for (const c of cleanups.reverse()) await c()
})

function startRelayProcess(env: Record<string, string>): Promise<{ proc: ChildProcess; url: string }> {
  const proc = spawn(
    process.execPath,
    ['--import', 'tsx', '--import', `${ROOT}bench/lib/register.ts`, fileURLToPath(new URL('./fixtures/relay-child.ts', import.meta.url))],
    { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] },
  )
  cleanups.push(() => proc.kill('SIGKILL'))
  return new Promise((resolve, reject) => {
    proc.once('exit', (code) => reject(new Error(`relay process exited (${code}) before listening`)))
    createInterface({ input: proc.stdout! }).once('line', (line) => resolve({ proc, url: (JSON.parse(line) as { url: string }).url }))
  })
}

interface Seen {
  seq: number
  t: string
  key: string
}

describe('relay killed with SIGKILL', () => {
  it('resumes from its cursors: the consumer gets every commit once, with no gap or duplicate', async () => {
    const dir = tmpDir()
    cleanups.push(() => dir.remove())
    const plc = await new FakePlc().start()
    const pds = await new FakePds(plc).start()
    cleanups.push(() => pds.close(), () => plc.close())
    const accounts: FakeAccount[] = []
    for (let i = 0; i < 3; i++) {
      const a = await pds.createAccount()
      await pds.announce(a)
      accounts.push(a)
    }
    const env = {
      RELAY_PORT: '0',
      RELAY_DATA_DIRECTORY: dir.path,
      RELAY_PLC_URL: plc.url,
      RELAY_DEV_MODE: 'true',
      RELAY_CRAWL_HOSTS: pds.url,
      RELAY_VERIFY_WORKERS: '1',
      RELAY_JETSTREAM_ENABLED: 'false',
      RELAY_COLLECTION_BACKFILL: 'false',
      LOG_LEVEL: 'silent',
    }
    let relay = await startRelayProcess(env)

    const seen: Seen[] = []
    const keyOf = (t: string, body: Record<string, unknown>) => (t === '#commit' ? `${body.repo} ${body.rev}` : `${t} ${body.did}`)
    const consumer = new SubscriptionClient({
      url: `${relay.url}/xrpc/com.atproto.sync.subscribeRepos`,
      getCursor: () => seen.at(-1)?.seq ?? 0,
      onEvent: (evt) => {
        seen.push({ seq: evt.seq!, t: evt.t, key: keyOf(evt.t, evt.body) })
      },
      minBackoffMs: 50,
      maxBackoffMs: 200,
    }).start()
    cleanups.push(() => consumer.stop())

    // the host writes all along: before, during and after the kill
    const sent: string[] = accounts.map((a) => `${a.did} ${a.initEvent.rev}`)
    let writing = true
    const writer = (async () => {
      for (let i = 0; writing && i < 150; i++) {
        const a = accounts[i % accounts.length]!
        const evt = await a.emitPost(`post ${i}`)
        sent.push(`${a.did} ${evt.rev}`)
        if (i % 3 === 2) await new Promise((r) => setTimeout(r, 20))
      }
    })()

    await waitFor(() => seen.filter((e) => e.t === '#commit').length >= 30, 60_000, '30 commits at the consumer')
    relay.proc.kill('SIGKILL')
    await new Promise((r) => relay.proc.once('exit', r))
    const before = seen.slice()
    await new Promise((r) => setTimeout(r, 300)) // the host goes on while the relay is down

    relay = await startRelayProcess({ ...env, RELAY_PORT: new URL(relay.url).port })
    await new Promise((r) => setTimeout(r, 500))
    writing = false
    await writer
    await waitFor(() => new Set(seen.map((e) => e.key)).size >= sent.length + 2 * accounts.length, 60_000, 'every commit at the consumer')

    // consecutive seqs, every commit the host sent exactly once
    expect(seen.map((e) => e.seq)).toEqual(Array.from({ length: seen.length }, (_, i) => i + 1))
    const commits = seen.filter((e) => e.t === '#commit').map((e) => e.key)
    expect(new Set(commits).size).toBe(commits.length)
    expect(commits.sort()).toEqual([...sent].sort())
    expect(consumer.stats.duplicates).toBe(0)

    // what the consumer had before the kill is in the restarted relay's log, same seqs, same events
    const replay: Seen[] = []
    const fresh = new SubscriptionClient({
      url: `${relay.url}/xrpc/com.atproto.sync.subscribeRepos`,
      getCursor: () => replay.at(-1)?.seq ?? 0,
      onEvent: (evt) => {
        replay.push({ seq: evt.seq!, t: evt.t, key: keyOf(evt.t, evt.body) })
      },
    }).start()
    cleanups.push(() => fresh.stop())
    await waitFor(() => replay.length >= before.length, 15_000, 'the replay')
    expect(replay.slice(0, before.length)).toEqual(before)
    // events re-read upstream after the restart (the cursor is saved once a second) were recognised as old
    const dropped = await droppedCounts(relay.url)
    expect(Object.keys(dropped).filter((r) => r !== 'rev-not-newer')).toEqual([])
  }, 180_000)
})
