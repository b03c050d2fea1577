/** The top-level README documents what the services actually read, and its app example is the file that runs. */
import fs from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import { ROOT } from './helpers.js'

const readme = () => fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8')

function section(text: string, heading: string): string {
  const start = text.indexOf(`\n## ${heading}\n`)
  expect(start, `README section '${heading}'`).toBeGreaterThan(0)
  const end = text.indexOf('\n## ', start + 1)
  return text.slice(start, end === -1 ? undefined : end)
}


describe('README.md', () => {
  it("keeps its first lines: the title, then the two commands", () => {
    expect(readme().startsWith('# Stratos\n\n```sh\nnpm i -g pnpm@10 && pnpm install && pnpm start\npnpm test\n```\n')).toBe(true)
  })

  it('has a configuration table row for every variable each service reads', () => {
    const config = section(readme(), 'Configuration')
    for (const service of ['plc', 'pds', 'relay', 'appview', 'labeler']) {
      const src = fs.readFileSync(path.join(ROOT, 'services', service, 'src', 'config.ts'), 'utf8')
      const names = new Set([...src.matchAll(/['"`]((?:PLC|PDS|RELAY|APPVIEW|LABELER)_[A-Z0-9_]+|LOG_LEVEL)['"`]/g)].map((m) => m[1]!))
      expect(names.size, service).toBeGreaterThan(4)
      for (const name of names) {
        expect(config, `${name} (services/${service}/src/config.ts)`).toMatch(new RegExp(`^\\|[^\\n]*\`${name}\``, 'm'))
      }
    }
  })

  it("shows examples/quickstart.mjs as its 'Build an app on it' code", () => {
    const code = section(readme(), 'Build an app on it').match(/```js\n([\s\S]*?)```/)![1]
    expect(code).toBe(fs.readFileSync(path.join(ROOT, 'examples', 'quickstart.mjs'), 'utf8'))
  })
})
