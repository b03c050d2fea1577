/**
 * The labelers of the request being served, kept in an AsyncLocalStorage so that every HydrationState
 * built while answering it applies them without being handed them through each handler.
 */
import { AsyncLocalStorage } from 'node:async_hooks'
import type { AcceptedLabeler } from './labels.js'

const storage = new AsyncLocalStorage<AcceptedLabeler[]>()

/** labelers accepted by the current request; undefined outside a request */
export function currentLabelers(): AcceptedLabeler[] | undefined {
  return storage.getStore()
}

export function runWithLabelers<T>(labelers: AcceptedLabeler[], fn: () => T): T {
  return storage.run(labelers, fn)
}
