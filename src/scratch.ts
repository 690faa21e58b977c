/**
 * Scratch space on the worker's host: temporary directories named after the
 * process that made them (`opsflow-<pid>-<purpose>-XXXXXX`), removed when
 * the work is done. A worker that was killed cannot remove its own, nor stop
 * the scratch redis-server it had started on one; the next worker to start
 * on the host does both (`sweepScratch`). Workers that share a temporary
 * directory must see each other's processes (one host, one pid namespace).
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const SCRATCH_NAME = /^opsflow-(\d+)-/;

/** A new directory of this process's own under the temporary directory. */
export async function makeScratchDir(purpose: string): Promise<string> {
  return mkdtemp(join(tmpdir(), `opsflow-${process.pid}-${purpose}-`));
}

/** Runs `fn` in a new scratch directory, removed afterwards whatever happens. */
export async function withScratchDir<T>(purpose: string, fn: (dir: string) => Promise<T>): Promise<T> {
  const dir = await makeScratchDir(purpose);
  try {
    return await fn(dir);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // someone else's process, alive
  }
}

/**
 * Processes (Linux: from /proc) whose command line names a path inside one
 * of `dirs`: a scratch redis-server runs with `--dir` there.
 */
async function processesUsing(dirs: string[]): Promise<number[]> {
  const entries = await readdir('/proc').catch(() => [] as string[]);
  const found: number[] = [];
  for (const entry of entries) {
    if (!/^\d+$/.test(entry) || Number(entry) === process.pid) continue;
    const argv = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (argv.split('\0').some((arg) => dirs.some((dir) => arg === dir || arg.startsWith(`${dir}/`)))) found.push(Number(entry));
  }
  return found;
}

/**
 * Removes the scratch directories of processes that are gone, after
 * killing what still runs on them. Called once as a worker starts, so its
 * own pid's directories (a previous process with the same pid, as in a
 * restarted container) go too.
 */
export async function sweepScratch(): Promise<{ directories: string[]; processes: number[] }> {
  const root = tmpdir();
  const names = await readdir(root).catch(() => [] as string[]);
  const directories = names
    .filter((name) => {
      const pid = Number(SCRATCH_NAME.exec(name)?.[1] ?? NaN);
      return Number.isInteger(pid) && (pid === process.pid || !isRunning(pid));
    })
    .map((name) => join(root, name));
  if (!directories.length) return { directories, processes: [] };
  const processes = await processesUsing(directories);
  for (const pid of processes) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // gone meanwhile, or not ours to stop
    }
  }
  for (const dir of directories) await rm(dir, { recursive: true, force: true });
  return { directories, processes };
}
