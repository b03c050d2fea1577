import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { HANDLE, runCli, startNetwork } from './helpers.js'

describe('stratos resolve', () => {
  let net: Awaited<ReturnType<typeof startNetwork>>
  beforeAll(async () => {
    net = await startNetwork()
  })
  afterAll(async () => {
    await net?.close()
  })

  it('walks handle → DID → document → PDS → record (JSON)', async () => {
    const uri = `at://${HANDLE}/app.bsky.feed.post/${net.fx.postRkey}`
    const r = await runCli(['resolve', uri, '--json', ...net.flags])
    expect(r.stderr).toBe('')
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout)
    expect(out.handle).toBe(HANDLE)
    expect(out.handleResolution).toMatchObject({ dns: 'skipped', http: net.fx.did, method: 'http' })
    expect(out.did).toBe(net.fx.did)
    expect(out.didDocumentUrl).toBe(`${net.plc.url}/${net.fx.did}`)
    expect(out.didDocument.id).toBe(net.fx.did)
    expect(out.claimedHandle).toBe(HANDLE)
    expect(out.handleVerified).toBe(true)
    expect(out.signingKey).toBe(net.fx.keypair.did())
    expect(out.pds).toBe(net.pds.url)
    expect(out.repo.collections.sort()).toEqual(['app.bsky.actor.profile', 'app.bsky.feed.post', 'app.bsky.graph.follow'])
    expect(out.record.uri).toBe(`at://${net.fx.did}/app.bsky.feed.post/${net.fx.postRkey}`)
    expect(out.record.value.text).toBe('hello world')
    expect(out.record.cid).toMatch(/^bafyrei/)
    // the well-known request went to the handle-resolver base with the handle as Host
    const wk = net.pds.requests.find((q) => q.path === '/.well-known/atproto-did')
    expect(wk?.headers.host).toBe(HANDLE)
  })

  it('prints each step in the human form', async () => {
    const r = await runCli(['resolve', HANDLE, ...net.flags])
    expect(r.code).toBe(0)
    const lines = r.stdout.split('\n')
    expect(lines[0]).toBe(`handle    ${HANDLE}`)
    expect(r.stdout).toContain(`  https   ${net.fx.did}`)
    expect(r.stdout).toContain(`did       ${net.fx.did}`)
    expect(r.stdout).toContain(`  handle  ${HANDLE} (verified)`)
    expect(r.stdout).toContain(`  key     ${net.fx.keypair.did()}`)
    expect(r.stdout).toContain(`  pds     ${net.pds.url}`)
    expect(r.stdout).toMatch(/repo {6}on http:\/\/127\.0\.0\.1:\d+, 3 collections/)
  })

  it('starts from a DID and checks the claimed handle resolves back', async () => {
    const r = await runCli(['resolve', net.fx.did, '--json', ...net.flags])
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout)
    expect(out.handle).toBeUndefined()
    expect(out.claimedHandle).toBe(HANDLE)
    expect(out.handleVerified).toBe(true)
  })

  it('lists a collection for an at:// URI without rkey', async () => {
    const r = await runCli(['resolve', `at://${net.fx.did}/app.bsky.feed.post`, '--json', ...net.flags])
    expect(r.code).toBe(0)
    const out = JSON.parse(r.stdout)
    expect(out.records.map((x: { value: { text: string } }) => x.value.text).sort()).toEqual(['hello world', 'second post'])
  })

  it('fails with exit 1 on a missing record, a handle that does not resolve, an unknown DID', async () => {
    const missing = await runCli(['resolve', `at://${net.fx.did}/app.bsky.feed.post/3kzzzzzzzzz22`, '--json', ...net.flags])
    expect(missing.code).toBe(1)
    const out = JSON.parse(missing.stdout)
    expect(out.error).toMatch(/RecordNotFound/)
    expect(out.pds).toBe(net.pds.url) // the steps before still reported

    const noHandle = await runCli(['resolve', 'nobody.test', ...net.flags])
    expect(noHandle.code).toBe(1)
    expect(noHandle.stderr).toContain('handle nobody.test does not resolve to a DID')

    const unknown = await runCli(['resolve', 'did:plc:zzzzzzzzzzzzzzzzzzzzzzzz', ...net.flags])
    expect(unknown.code).toBe(1)
    expect(unknown.stderr).toContain('DID not found: did:plc:zzzzzzzzzzzzzzzzzzzzzzzz')
  })

  it('reports an unverified handle when the document claims another one', async () => {
    const other = await startNetwork({ fx: net.fx, handle: 'bob.test' })
    try {
      // the well-known of alice.test is served by net.pds, but the document (other.plc) claims bob.test
      const r = await runCli(['resolve', HANDLE, '--json', '--dev', '--plc', other.plc.url, '--handle-resolver', net.pds.url])
      expect(r.code).toBe(0)
      const out = JSON.parse(r.stdout)
      expect(out.claimedHandle).toBe('bob.test')
      expect(out.handleVerified).toBe(false)
    } finally {
      await other.close()
    }
  })

  it('rejects bad input with exit 2', async () => {
    const r = await runCli(['resolve', 'not a handle'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain("not a valid handle or DID: 'not a handle'")
    const r2 = await runCli(['resolve', 'at://alice.test/app.bsky.feed.post/a/b'])
    expect(r2.code).toBe(2)
    expect(r2.stderr).toContain('not a valid at:// URI')
  })

  it('reads the PLC URL from STRATOS_PLC_URL, and the flag overrides it', async () => {
    const viaEnv = await runCli(['resolve', net.fx.did, '--json', '--dev'], { env: { STRATOS_PLC_URL: net.plc.url } })
    expect(viaEnv.code).toBe(0)
    expect(JSON.parse(viaEnv.stdout).didDocumentUrl).toBe(`${net.plc.url}/${net.fx.did}`)
    const overridden = await runCli(['resolve', net.fx.did, '--json', '--dev', '--plc', 'http://127.0.0.1:1'], {
      env: { STRATOS_PLC_URL: net.plc.url },
    })
    expect(overridden.code).toBe(1)
    expect(JSON.parse(overridden.stdout).error).toMatch(/could not fetch DID document/)
  })
})
