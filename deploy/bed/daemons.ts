/**
 * Process management for the local beds (bed.ts, kubernetes/cluster.ts):
 * free loopback ports, daemons logging to `<dir>/<name>.log`, waits that
 * notice a dead daemon, and stopping them, also when this process ends
 * without calling stop().
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Server } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

function listen(port: number): Promise<Server | undefined> {
  return new Promise((res) => {
    const srv = createServer();
    srv.once('error', () => res(undefined));
    srv.listen(port, '127.0.0.1', () => res(srv));
  });
}

/**
 * One free loopback port per name, the preferred one where it is free. All
 * listeners stay open until each name has its port, so none repeats.
 */
export async function freePorts<K extends string>(names: readonly K[], preferred: Partial<Record<K, number>> = {}): Promise<Record<K, number>> {
  const servers: Server[] = [];
  try {
    for (const name of names) {
      const want = preferred[name];
      const srv = (want ? await listen(want) : undefined) ?? (await listen(0));
      if (!srv) throw new Error(`no free loopback port for ${name}`);
      servers.push(srv);
    }
    return Object.fromEntries(names.map((name, i) => [name, (servers[i]!.address() as AddressInfo).port])) as Record<K, number>;
  } finally {
    await Promise.all(servers.map((srv) => new Promise((res) => srv.close(res))));
  }
}

/** A free loopback port: `preferred` if it is free, else any. */
export async function freePort(preferred?: number): Promise<number> {
  return (await freePorts(['port'], { port: preferred })).port;
}

export interface Daemon {
  name: string;
  child: ChildProcess;
  log: string;
  spawnError?: Error;
}

/**
 * Daemons still running, across all beds of this process. They share our
 * process group, so Ctrl-C reaches them too; these hooks cover a crash,
 * process.exit() and a signal sent to this process alone, none of which would
 * run a bed's stop().
 */
const live = new Set<ChildProcess>();
const killLive = () => {
  for (const child of live) child.kill('SIGKILL');
};
const onSignal = (signal: NodeJS.Signals) => {
  // Another handler owns this signal (and its shutdown); the 'exit' hook still runs if it exits.
  if (process.listenerCount(signal) > 1) return;
  killLive();
  // Then die of the signal as if we had never listened.
  process.removeListener(signal, onSignal);
  process.kill(process.pid, signal);
};
let hooked = false;
function track(child: ChildProcess): void {
  // Hooked at the first daemon, so merely importing a bed leaves signals alone.
  // Prepended: a `once` handler is already gone by the time later listeners run,
  // and we would take its signal for unowned.
  if (!hooked) {
    hooked = true;
    process.on('exit', killLive);
    for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.prependListener(signal, onSignal);
  }
  live.add(child);
  child.on('exit', () => live.delete(child));
  child.on('error', () => live.delete(child));
}

export interface DaemonOptions {
  /** The log goes to `<dir>/<name>.log` (appended: a restarted bed keeps the history). */
  dir: string;
  /** The group it joins: what waitFor watches and the bed's stop() ends. */
  daemons: Daemon[];
  /** Added to our environment. */
  env?: NodeJS.ProcessEnv;
  /** Run as this user (we are root), so that our signals reach the daemon itself. */
  user?: { uid: number; gid: number };
  /** Tag of a stderr line when it dies on its own after startup too (a dev bed has no one else to tell). */
  reportAs?: string;
}

export function startDaemon(name: string, cmd: string, args: string[], options: DaemonOptions): Daemon {
  const log = join(options.dir, `${name}.log`);
  const fd = openSync(log, 'a');
  const child = spawn(cmd, args, { env: { ...process.env, ...options.env }, stdio: ['ignore', fd, fd], ...options.user });
  closeSync(fd); // the child has its own copy
  const daemon: Daemon = { name, child, log };
  track(child);
  // Without a listener a failed spawn (say ENOENT) would crash us; waitFor reports it instead.
  child.on('error', (err) => {
    daemon.spawnError = err;
  });
  if (options.reportAs) {
    const tag = options.reportAs;
    child.on('exit', (code, signal) => {
      if (code !== 0 && signal !== 'SIGTERM' && signal !== 'SIGINT' && signal !== 'SIGKILL') {
        process.stderr.write(`[${tag}] ${name} exited (${code ?? signal}); see ${log}\n`);
      }
    });
  }
  options.daemons.push(daemon);
  return daemon;
}

export function exited(d: Daemon): boolean {
  return d.spawnError !== undefined || d.child.exitCode !== null || d.child.signalCode !== null;
}

/** SIGTERM, then SIGKILL after `graceMs`; resolves once it has exited. */
export async function stopDaemon(d: Daemon, graceMs = 5_000): Promise<void> {
  if (exited(d)) return;
  const gone = new Promise((r) => d.child.once('exit', r));
  d.child.kill('SIGTERM');
  const timer = setTimeout(() => d.child.kill('SIGKILL'), graceMs);
  await gone;
  clearTimeout(timer);
}

/** Polls `check`; fails at once when one of `daemons` died instead of waiting out the timeout. */
export async function waitFor(
  what: string,
  check: () => Promise<boolean>,
  { timeoutMs = 60_000, daemons = [] }: { timeoutMs?: number; daemons?: readonly Daemon[] } = {},
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const dead = daemons.find(exited);
    if (dead) {
      const tail = readFileSync(dead.log, 'utf8').trimEnd().split('\n').slice(-10).join('\n');
      const how = dead.spawnError?.message ?? `exit ${dead.child.exitCode ?? dead.child.signalCode}`;
      throw new Error(`${dead.name} stopped (${how}) while waiting for ${what}; ${dead.log}:\n${tail}`);
    }
    if (await check().catch(() => false)) return;
    await sleep(200);
  }
  throw new Error(`${what} not reached within ${timeoutMs / 1000} s`);
}
