import type { HandlerOutput } from '@stratos/core/xrpc'

/** Output validation is on in tests (server.ts), off in production. */
export const validatesOutput = (): boolean => process.env.NODE_ENV === 'test'

/**
 * A JSON response body already serialized (the read endpoints splice cached record JSON). Where the server
 * validates output (tests), the text is parsed back so the lexicon check sees exactly what would be sent.
 */
export function jsonText(text: string): HandlerOutput {
  if (validatesOutput()) return { encoding: 'application/json', body: JSON.parse(text) }
  return { encoding: 'application/json; charset=utf-8', body: text }
}
