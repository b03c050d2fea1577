/** Module resolve hook for register.mjs: @stratos/<pkg>[/<area>] → the package's src/ (see vitest.config.ts). */
import { existsSync } from 'node:fs'
import { pathToFileURL } from 'node:url'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('../../../', import.meta.url))
const SERVICES = new Set(['plc', 'pds', 'relay', 'appview', 'labeler'])

function target(specifier) {
  const m = /^@stratos\/([a-z0-9-]+)(?:\/(.+))?$/.exec(specifier)
  if (!m) return undefined
  const [, pkg, sub] = m
  const dir = SERVICES.has(pkg) ? `services/${pkg}` : `packages/${pkg}`
  const file = sub ? `${root}${dir}/src/${sub}/index.ts` : `${root}${dir}/src/index.ts`
  if (existsSync(file)) return file
  // `@stratos/pds/bin` style deep imports of a single file
  if (sub && existsSync(`${root}${dir}/src/${sub}.ts`)) return `${root}${dir}/src/${sub}.ts`
  return undefined
}

export async function resolve(specifier, context, nextResolve) {
  const file = target(specifier)
  if (file) return { url: pathToFileURL(file).href, shortCircuit: true, format: 'module' }
  return nextResolve(specifier, context)
}
