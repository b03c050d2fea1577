/** Shapes shared by the API handlers. */
import { InvalidRequestError } from '@stratos/core/xrpc'
import { accountStatus, type Account } from '../accounts/account-store.js'
import type { RelayContext } from '../context.js'
import type { Host } from '../hosts/host-store.js'

export type Handler = (ctx: RelayContext) => void

/** A host as com.atproto.sync.listHosts / getHostStatus show it. */
export function publicHostView(ctx: RelayContext, host: Host) {
  return {
    hostname: host.hostname,
    seq: ctx.slurper.cursorOf(host.id) ?? host.cursor,
    accountCount: ctx.ingester.accountCount(host.id),
    status: ctx.slurper.statusOf(host.id) ?? host.status,
  }
}

const iso = (ms: number) => new Date(ms).toISOString()

/** The admin view of a host (com.stratos.relay.admin.defs#hostView). */
export function adminHostView(ctx: RelayContext, host: Host) {
  const out: Record<string, unknown> = {
    ...publicHostView(ctx, host),
    ssl: host.ssl,
    trusted: ctx.hostManager.isTrusted(host),
    addedBy: host.addedBy,
    createdAt: iso(host.createdAt),
    limits: ctx.hostManager.limitsFor(host),
    usage: ctx.limiter.counts(host.id),
  }
  if (host.lastEventAt) out.lastEventAt = iso(host.lastEventAt)
  if (host.limits) out.overrides = host.limits
  return out
}

/** The admin view of an account (com.stratos.relay.admin.defs#accountView). */
export function accountView(ctx: RelayContext, a: Account) {
  const status = accountStatus(a)
  const out: Record<string, unknown> = {
    did: a.did,
    active: status.active,
    upstreamActive: a.upstreamActive,
    takedown: a.takedown,
    syncStatus: a.syncStatus,
  }
  if (status.status) out.status = status.status
  if (a.upstreamStatus) out.upstreamStatus = a.upstreamStatus
  if (a.hostId !== null) {
    const host = ctx.hosts.getById(a.hostId)
    if (host) out.host = host.hostname
  }
  if (a.rev) out.rev = a.rev
  if (a.commitCid) out.head = a.commitCid
  return out
}

/**
 * An account whose repo may be served (getLatestCommit, getRepo): RepoNotFound, RepoTakendown,
 * RepoSuspended, RepoDeactivated otherwise.
 */
export function servableAccount(ctx: RelayContext, did: string): Account & { rev: string; commitCid: string } {
  const a = ctx.accounts.get(did)
  if (!a || !a.rev || !a.commitCid) throw new InvalidRequestError(`Could not find repo for DID: ${did}`, 'RepoNotFound')
  const { active, status } = accountStatus(a)
  if (!active) {
    if (status === 'takendown') throw new InvalidRequestError(`Repo has been takendown: ${did}`, 'RepoTakendown')
    if (status === 'suspended') throw new InvalidRequestError(`Repo has been suspended: ${did}`, 'RepoSuspended')
    if (status === 'deactivated') throw new InvalidRequestError(`Repo has been deactivated: ${did}`, 'RepoDeactivated')
    throw new InvalidRequestError(`Repo is not available: ${did} (${status ?? 'inactive'})`, 'RepoNotFound')
  }
  return a as Account & { rev: string; commitCid: string }
}

export function pageCursor(raw: unknown): string {
  return typeof raw === 'string' ? raw : ''
}
