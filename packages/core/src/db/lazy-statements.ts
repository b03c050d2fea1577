/**
 * Prepared statements made on first use: `lazyStatements({ get: () => db.prepare(...), ... })` gives an
 * object whose `get` is prepared the first time it is read and kept from then on. A handle opened for a
 * few requests (per-account SQLite files, opened again after a cache evicted them) then prepares only
 * the statements those requests run: each prepare parses and plans SQL, tens of µs.
 */
export function lazyStatements<T extends Record<string, () => unknown>>(makers: T): { readonly [K in keyof T]: ReturnType<T[K]> } {
  const out = {} as Record<string, unknown>
  for (const [name, make] of Object.entries(makers)) {
    Object.defineProperty(out, name, {
      configurable: true,
      get() {
        const value = make()
        Object.defineProperty(out, name, { value })
        return value
      },
    })
  }
  return out as { readonly [K in keyof T]: ReturnType<T[K]> }
}
