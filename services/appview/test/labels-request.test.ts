/**
 * The request's labelers (labels/request.ts): a read worker answers one request at a time and keeps them in a
 * plain variable (runSerialWithLabelers), not in an AsyncLocalStorage, whose promise hooks slow every await of
 * the thread once it has run.
 */
import { describe, expect, it } from 'vitest'
import { currentLabelers, runSerialWithLabelers, runWithLabelers } from '../src/labels/request.js'
import type { AcceptedLabeler } from '../src/labels/labels.js'

const a: AcceptedLabeler[] = [{ did: 'did:plc:labelera', redact: false }]
const b: AcceptedLabeler[] = [{ did: 'did:plc:labelerb', redact: true }]
const tick = () => new Promise((r) => setTimeout(r, 1))

describe('the request labelers', () => {
  it('runSerialWithLabelers: the labelers hold across the awaits of the request, and only during it', async () => {
    expect(currentLabelers()).toBeUndefined()
    const seen: unknown[] = []
    const out = await runSerialWithLabelers(a, async () => {
      seen.push(currentLabelers())
      await tick()
      await Promise.resolve()
      seen.push(currentLabelers())
      return 'done'
    })
    expect(out).toBe('done')
    expect(seen).toEqual([a, a])
    expect(currentLabelers()).toBeUndefined()
  })

  it('runSerialWithLabelers: cleared after a request that throws', async () => {
    await expect(
      runSerialWithLabelers(a, async () => {
        await tick()
        throw new Error('boom')
      }),
    ).rejects.toThrow('boom')
    expect(currentLabelers()).toBeUndefined()
  })

  it('runSerialWithLabelers: refuses a second request while one is running (they would share the variable)', async () => {
    let release!: () => void
    const first = runSerialWithLabelers(a, () => new Promise<void>((r) => (release = r)))
    await expect(runSerialWithLabelers(b, async () => currentLabelers())).rejects.toThrow(/another request is running/)
    expect(currentLabelers()).toBe(a)
    release()
    await first
    expect(await runSerialWithLabelers(b, async () => currentLabelers())).toBe(b)
  })

  it('runWithLabelers (AsyncLocalStorage) still gives each concurrent request its own', async () => {
    const got = await Promise.all(
      [a, b].map((l) =>
        runWithLabelers(l, async () => {
          await tick()
          return currentLabelers()
        }),
      ),
    )
    expect(got).toEqual([a, b])
  })
})
