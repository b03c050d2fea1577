import type { ActorRepo } from './actor-repo.js'

/**
 * Account preferences (app.bsky.actor.getPreferences / putPreferences), kept in the account's own store
 * (table account_pref) as their JSON form, one row per preference in the order they were put.
 */
export type Preference = { $type: string } & Record<string, unknown>

/** Preferences whose $type starts with `namespace.` (e.g. `app.bsky`), in stored order. */
export function getPreferences(repo: ActorRepo, namespace: string): Preference[] {
  const rows = repo.db
    .prepare('SELECT valueJson FROM account_pref WHERE name LIKE ? ORDER BY id ASC')
    .all(`${namespace}.%`) as { valueJson: string }[]
  return rows.map((r) => JSON.parse(r.valueJson) as Preference)
}

/** Replaces every preference of `namespace` with `prefs` (one transaction). */
export function putPreferences(repo: ActorRepo, namespace: string, prefs: Preference[]): void {
  const del = repo.db.prepare('DELETE FROM account_pref WHERE name LIKE ?')
  const ins = repo.db.prepare('INSERT INTO account_pref (name, valueJson) VALUES (?, ?)')
  repo.db.transaction(() => {
    del.run(`${namespace}.%`)
    for (const pref of prefs) ins.run(pref.$type, JSON.stringify(pref))
  })()
}
