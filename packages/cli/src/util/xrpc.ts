/**
 * Plain XRPC over fetch, for calls where the @atproto/api client does not fit: streamed bodies (repo
 * export, blobs), and this project's own admin lexicons (relay), which that client's schema set lacks.
 */
import { XRPCError } from '@atproto/api'
import { CliError } from './command.js'

export type QueryValue = string | number | boolean | undefined | readonly (string | number)[]

export function basicAuth(password: string, user = 'admin'): string {
  return `Basic ${Buffer.from(`${user}:${password}`, 'utf8').toString('base64')}`
}

export function xrpcUrl(service: string, nsid: string, params: Record<string, QueryValue> = {}): string {
  const url = new URL(`/xrpc/${nsid}`, service.endsWith('/') ? service : `${service}/`)
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined) continue
    if (Array.isArray(v)) for (const item of v) url.searchParams.append(k, String(item))
    else url.searchParams.set(k, String(v))
  }
  return url.toString()
}

/** An XRPC call that did not succeed: HTTP status plus the `{error, message}` body when there was one. */
export class XrpcCallError extends CliError {
  constructor(
    readonly service: string,
    readonly nsid: string,
    readonly status: number,
    readonly error: string | undefined,
    readonly errorMessage: string | undefined,
  ) {
    super(`${nsid} on ${service} failed: ${describeStatus(status, error, errorMessage)}`)
  }
}

function describeStatus(status: number, error?: string, message?: string): string {
  const parts = [status > 0 ? `HTTP ${status}` : 'no response']
  if (error) parts.push(error)
  let out = parts.join(' ')
  if (message && message !== error) out += `: ${message}`
  return out
}

async function readError(res: Response): Promise<{ error?: string; message?: string }> {
  try {
    const text = await res.text()
    const json = JSON.parse(text) as { error?: unknown; message?: unknown }
    return {
      error: typeof json.error === 'string' ? json.error : undefined,
      message: typeof json.message === 'string' ? json.message : text.slice(0, 300) || undefined,
    }
  } catch {
    return {}
  }
}

export interface XrpcRequest {
  method?: 'GET' | 'POST'
  params?: Record<string, QueryValue>
  body?: unknown
  headers?: Record<string, string>
  timeoutMs?: number
  signal?: AbortSignal
}

function connectionError(service: string, nsid: string, err: unknown): CliError {
  const cause = (err as { cause?: { code?: string; message?: string } })?.cause
  const why = cause?.code ?? cause?.message ?? (err as Error)?.message ?? String(err)
  if ((err as Error)?.name === 'TimeoutError') return new CliError(`${nsid} on ${service}: timed out`, 1, { cause: err })
  return new CliError(`cannot reach ${service} (${why})`, 1, { cause: err })
}

/** Sends the request; returns the Response when it is 2xx, throws XrpcCallError otherwise. */
export async function xrpcFetch(service: string, nsid: string, req: XrpcRequest = {}): Promise<Response> {
  const headers: Record<string, string> = { ...req.headers }
  let body: string | undefined
  if (req.body !== undefined) {
    body = JSON.stringify(req.body)
    headers['content-type'] = 'application/json'
  }
  const signals: AbortSignal[] = []
  if (req.signal) signals.push(req.signal)
  if (req.timeoutMs) signals.push(AbortSignal.timeout(req.timeoutMs))
  let res: Response
  try {
    res = await fetch(xrpcUrl(service, nsid, req.params), {
      method: req.method ?? (req.body !== undefined ? 'POST' : 'GET'),
      headers,
      body,
      signal: signals.length === 0 ? undefined : signals.length === 1 ? signals[0] : AbortSignal.any(signals),
    })
  } catch (err) {
    throw connectionError(service, nsid, err)
  }
  if (!res.ok) {
    const { error, message } = await readError(res)
    throw new XrpcCallError(service, nsid, res.status, error, message)
  }
  return res
}

/** A call whose answer is JSON (or empty, for procedures without output). */
export async function xrpcJson<T = Record<string, unknown>>(service: string, nsid: string, req: XrpcRequest = {}): Promise<T> {
  const res = await xrpcFetch(service, nsid, { timeoutMs: 30_000, ...req })
  const text = await res.text()
  if (text.length === 0) return {} as T
  try {
    return JSON.parse(text) as T
  } catch {
    throw new CliError(`${nsid} on ${service} answered with something that is not JSON`)
  }
}

/** Errors thrown by @atproto/api clients, turned into a one-line message with the service named. */
export function fromAgentError(service: string, nsid: string, err: unknown): unknown {
  if (err instanceof XRPCError) {
    if (err.status === 1 /* Unknown: no HTTP response */) return connectionError(service, nsid, err.cause ?? err)
    if (err.status === 2 /* InvalidResponse: the body does not match the schema */) {
      return new CliError(`${nsid} on ${service} answered with an invalid response: ${err.message}`)
    }
    return new XrpcCallError(service, nsid, err.status, err.error, err.message)
  }
  return err
}
