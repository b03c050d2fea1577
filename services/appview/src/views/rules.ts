/**
 * Rules over a hydrated state (pure): what the viewer may see. Blocks go both ways (a viewer who
 * blocks someone, or is blocked by them, sees neither their content nor their interactions), mutes
 * take content out of feeds and notifications, and inactive accounts are hidden everywhere.
 */
import type { HydrationState } from '../hydration/hydrator.js'

/** The actor is unknown here, or its account is deactivated / taken down / deleted / suspended. */
export function actorHidden(state: HydrationState, did: string): boolean {
  const a = state.actors.get(did)
  return !a || a.upstreamStatus !== null
}

/** A block (direct or through a list) between the viewer and `did`, in either direction. */
export function viewerBlocks(state: HydrationState, did: string): boolean {
  if (!state.viewer || did === state.viewer) return false
  const v = state.actorViewers.get(did)
  return !!(v && (v.blocking || v.blockedBy || v.blockingByList || v.blockedByList))
}

/** The viewer muted `did` (directly or through a muted list). */
export function viewerMutes(state: HydrationState, did: string): boolean {
  if (!state.viewer || did === state.viewer) return false
  const v = state.actorViewers.get(did)
  return !!(v && (v.muted || v.mutedByList))
}

/** A block between two (third-party) actors, in either direction. */
export function blockedPair(state: HydrationState, a: string, b: string): boolean {
  if (a === b) return false
  return state.blockEdges.has(`${a} ${b}`) || state.blockEdges.has(`${b} ${a}`)
}

/** The actor shows up neither as content nor as an interaction for this viewer. */
export function actorInvisible(state: HydrationState, did: string): boolean {
  return actorHidden(state, did) || viewerBlocks(state, did)
}
