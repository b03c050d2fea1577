import net from 'node:net'

/** The dev network's services, one port each from the base: PLC, PDS, relay, AppView, labeler. */
export const DEV_NETWORK_PORT_COUNT = 5

/** Whether `port` can be listened on at 127.0.0.1 right now. */
export function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = net.createServer()
    srv.once('error', () => resolve(false))
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)))
  })
}

/**
 * A random base port with `count` consecutive free ports from it (20000-59999), for a network started in a test
 * or next to the machine's own services. Free now, not reserved: start the network right away.
 */
export async function freePortBase(count = DEV_NETWORK_PORT_COUNT): Promise<number> {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 40000)
    const ok = await Promise.all([...Array(count).keys()].map((i) => portFree(base + i)))
    if (ok.every(Boolean)) return base
  }
  throw new Error(`no ${count} consecutive free ports found`)
}
