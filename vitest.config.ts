import { fileURLToPath } from 'node:url'
import { defineConfig } from 'vitest/config'

const root = fileURLToPath(new URL('.', import.meta.url))

export default defineConfig({
  resolve: {
    alias: [
      { find: /^@stratos\/core\/(.*)$/, replacement: `${root}packages/core/src/$1/index.ts` },
      { find: /^@stratos\/core$/, replacement: `${root}packages/core/src/index.ts` },
      { find: /^@stratos\/(plc|pds|relay|appview|labeler)$/, replacement: `${root}services/$1/src/index.ts` },
      { find: /^@stratos\/(dev-network|cli)$/, replacement: `${root}packages/$1/src/index.ts` },
    ],
  },
  test: {
    include: ['packages/*/test/**/*.test.ts', 'services/*/test/**/*.test.ts'],
    testTimeout: 30_000,
    hookTimeout: 60_000,
    pool: 'forks',
    reporters: ['default'],
  },
})
