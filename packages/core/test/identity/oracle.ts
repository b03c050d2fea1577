/**
 * @atproto/identity as an oracle for DID-document parsing. Its package entry pulls in undici 8, which
 * needs Node 22, so only its pure DID-document module is loaded (by file path; its exports map
 * exposes the entry only).
 */
import { realpathSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'

type DocFn = (doc: unknown) => string | undefined

export interface AtprotoIdentityOracle {
  getKey: DocFn
  getPds: DocFn
  getHandle: DocFn
}

export async function loadIdentityOracle(): Promise<AtprotoIdentityOracle> {
  const pkgDir = realpathSync(fileURLToPath(new URL('../../node_modules/@atproto/identity', import.meta.url)))
  const mod = (await import(pathToFileURL(`${pkgDir}/dist/did/atproto-data.js`).href)) as AtprotoIdentityOracle
  return { getKey: mod.getKey, getPds: mod.getPds, getHandle: mod.getHandle }
}
