/** Per-thread CPU of a process from /proc (Linux): what the benches split into main thread, workers and the rest. */
import { readdirSync, readFileSync } from 'node:fs'

/** µs per clock tick (USER_HZ is 100 on Linux) */
const TICK_US = 1e6 / 100

export interface ThreadTimes {
  tid: number
  /** the thread's name (`comm`: a worker's name, `node` for V8's platform threads, `libuv-worker`...) */
  name: string
  /** true for the main thread (tid = pid): the event loop */
  main: boolean
  /** user + system CPU µs so far */
  us: number
  /** of which system */
  sysUs: number
}

/** The CPU so far of every thread of `pid` (threads that end while being read are left out). */
export function threadTimes(pid: number = process.pid): ThreadTimes[] {
  const out: ThreadTimes[] = []
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    let stat: string
    try {
      stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8')
    } catch {
      continue // the thread ended
    }
    const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'))
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
    const sysUs = Number(fields[12]) * TICK_US
    out.push({ tid: Number(tid), name, main: Number(tid) === pid, us: Number(fields[11]) * TICK_US + sysUs, sysUs })
  }
  return out
}
