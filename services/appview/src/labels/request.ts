/**
 * The labelers of the request being served, kept in an AsyncLocalStorage so that every HydrationState
 * built while answering it applies them without being handed them through each handler.
 *
 * A thread that answers one request at a time (a read worker) sets them with runSerialWithLabelers
 * instead: a plain variable, no AsyncLocalStorage. Once an AsyncLocalStorage has run, Node 20 calls
 * async_hooks' promise hooks for every promise the thread makes, and a read's hydration awaits a
 * statement at a time.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import type { AcceptedLabeler } from './labels.js'

const storage = new AsyncLocalStorage<AcceptedLabeler[]>()
/** the labelers of the request runSerialWithLabelers is running (undefined: none) */
let serial: AcceptedLabeler[] | undefined

/** labelers accepted by the current request; undefined outside a request */
export function currentLabelers(): AcceptedLabeler[] | undefined {
  return serial ?? storage.getStore()
}

export function runWithLabelers<T>(labelers: AcceptedLabeler[], fn: () => T): T {
  return storage.run(labelers, fn)
}

/**
 * Runs `fn` (one request) with `labelers` as the current ones, for a thread that runs nothing else until
 * it settles: throws if another one is running (two at once would see each other's labelers).
 */
export async function runSerialWithLabelers<T>(labelers: AcceptedLabeler[], fn: () => Promise<T>): Promise<T> {
  if (serial !== undefined) throw new Error('runSerialWithLabelers: another request is running in this thread')
  serial = labelers
  try {
    return await fn()
  } finally {
    serial = undefined
  }
}
