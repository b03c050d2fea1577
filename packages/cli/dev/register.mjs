/**
 * Development entry: `node --import tsx --import ./packages/cli/dev/register.mjs packages/cli/src/bin.ts`.
 * Resolves the workspace's @stratos/* packages to their TypeScript sources (as vitest does), so the CLI and
 * every service it starts run from a fresh clone without a build.
 */
import { register } from 'node:module'

register('./hooks.mjs', import.meta.url)
