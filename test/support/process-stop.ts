import { readdirSync, readFileSync } from 'node:fs';
import { waitFor } from './wait';

/** The state letter of a /proc/<pid>/stat line (after the command name, which may hold spaces). */
function stateOf(stat: string): string {
  const end = stat.lastIndexOf(')');
  return stat.slice(end + 2, end + 3);
}

function allThreadsStopped(pid: number): boolean {
  const tasks = readdirSync(`/proc/${pid}/task`);
  return tasks.length > 0 && tasks.every((t) => stateOf(readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8')) === 'T');
}

/**
 * SIGSTOPs `pid` and returns once the kernel shows every one of its threads stopped: the
 * signal is delivered asynchronously, and a thread still running could read and act on a
 * command the test sends right after kill() returned.
 */
export async function stopProcess(pid: number): Promise<void> {
  process.kill(pid, 'SIGSTOP');
  await waitFor(`process ${pid} to stop`, () => allThreadsStopped(pid), 5000, 5);
}
