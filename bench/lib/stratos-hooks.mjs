/**
 * Module resolve hook for benches that load a service: `@stratos/core/<area>` → packages/core/src/<area>/index.ts
 * and `@stratos/<service>` → services/<service>/src/index.ts, as vitest's aliases do, so a bench measures the
 * sources (tsx compiles them) rather than a possibly stale dist/. Registered by bench/lib/register.ts.
 */
import { existsSync } from 'node:fs'
import { fileURLToPath, pathToFileURL } from 'node:url'

const ROOT = fileURLToPath(new URL('../../', import.meta.url))
const SERVICES = ['plc', 'pds', 'relay', 'appview']

function sourceFile(specifier) {
  const m = /^@stratos\/([a-z0-9-]+)(?:\/([a-z0-9-]+))?$/.exec(specifier)
  if (!m) return null
  const base = SERVICES.includes(m[1]) ? `services/${m[1]}` : `packages/${m[1]}`
  const file = `${ROOT}${base}/src/${m[2] ? `${m[2]}/` : ''}index.ts`
  return existsSync(file) ? file : null
}

export async function resolve(specifier, context, nextResolve) {
  const file = sourceFile(specifier)
  if (file) return { url: pathToFileURL(file).href, format: 'module', shortCircuit: true }
  return nextResolve(specifier, context)
}
